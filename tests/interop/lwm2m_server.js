#!/usr/bin/env node
// Test harness: Telefonica's lwm2m-node-lib as an independent LwM2M server.
//
//   node lwm2m_server.js PORT        (0: the OS picks a free port)
//
// Prints one JSON line per event on stdout:
//   {"event":"listening","port":N}
//   {"event":"registration","endpoint":..,"lifetime":..,"version":..,"binding":..,"links":..}
//   {"event":"update","endpoint":..,"links":..}   {"event":"deregistration","endpoint":..}
//   {"event":"notification","id":ID,"value":..}
//   {"event":"result","id":ID,"ok":true,"value":..,"response":{code,contentFormat,payloadHex}}
//   {"event":"result","id":ID,"ok":false,"error":..}
// and reads one JSON command per line on stdin:
//   {"id":1,"op":"read","endpoint":"ep","path":"/3/0/17","accept":"text/plain"}
//   {"id":2,"op":"write","endpoint":"ep","path":"/1/0/1","value":"120","format":"text/plain"}
//   {"id":3,"op":"execute","endpoint":"ep","path":"/3/0/4","value":""}
//   {"id":4,"op":"observe","endpoint":"ep","path":"/3303/0/5700"}
// "accept" and "format" are optional: without them the library's own defaults
// apply (no Accept option on reads; Content-Format 1541 on writes).
// Commands run one at a time, in order.
'use strict';

const readline = require('readline');
const coap = require('coap');
const lwm2m = require('lwm2m-node-lib');

const server = lwm2m.server;

// node-coap only sends and parses the formats it has been told about, and the
// library tells it only of 1541. An answer in any other format (the node's
// SenML CBOR when no Accept is given) makes node-coap throw from its socket
// handler and the whole process dies; so register the LwM2M 1.1 formats here.
coap.registerFormat('application/senml+json', 110);
coap.registerFormat('application/senml+cbor', 112);
coap.registerFormat('application/vnd.oma.lwm2m+tlv', 11542);
coap.registerFormat('application/vnd.oma.lwm2m+json', 11543);

const config = {
  port: Number(process.argv[2] || 0),
  lifetimeCheckInterval: 1000,
  udpWindow: 100,
  defaultType: 'Device',
  logLevel: process.env.LWM2M_LOG_LEVEL || 'FATAL',
  ipProtocol: 'udp4',
  serverProtocol: 'udp4',
};

let libDefaults = {}; // what start() left in the config: restored when a command names no format

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// The library hands back only the payload as a UTF-8 string; to report what
// really came back (code, Content-Format, bytes) tap the responses node-coap sees.
let lastResponse = null;
const agentRequest = coap.Agent.prototype.request;
coap.Agent.prototype.request = function (...args) {
  const req = agentRequest.apply(this, args);
  req.on('response', (res) => {
    const option = res.options.find((o) => o.name === 'Content-Format');
    lastResponse = {
      code: res.code,
      contentFormat: option === undefined ? null : String(option.value),
      payloadHex: Buffer.from(res.payload || []).toString('hex'),
    };
  });
  return req;
};

function deviceId(endpoint) {
  return new Promise((resolve, reject) => {
    server.getDevice(endpoint, (error, device) => (error ? reject(error) : resolve(device.id)));
  });
}

function splitPath(path) {
  const parts = path.split('/').filter((s) => s !== '');
  if (parts.length !== 3 || parts.some((s) => !/^\d+$/.test(s))) {
    throw new Error(`path ${JSON.stringify(path)}: this library only addresses resources, /obj/inst/res`);
  }
  return parts;
}

function call(fn, ...args) {
  return new Promise((resolve, reject) => {
    fn(...args, (error, value) => (error ? reject(error) : resolve(value)));
  });
}

async function run(cmd) {
  const id = await deviceId(cmd.endpoint);
  const [obj, inst, res] = splitPath(cmd.path);
  // the library reads these two settings from its config at every request
  config.defaultAcceptFormat = cmd.accept || libDefaults.defaultAcceptFormat;
  config.writeFormat = cmd.format || libDefaults.writeFormat;
  switch (cmd.op) {
    case 'read':
      return call(server.read, id, obj, inst, res);
    case 'write':
      return call(server.write, id, obj, inst, res, String(cmd.value));
    case 'execute':
      return call(server.execute, id, obj, inst, res, cmd.value || '');
    case 'observe':
      return call(server.observe, id, obj, inst, res, (value) => emit({ event: 'notification', id: cmd.id, value }));
    default:
      throw new Error(`unknown op ${JSON.stringify(cmd.op)}: read, write, execute or observe`);
  }
}

function describe(error) {
  return error && (error.message || error.name || String(error));
}

async function serve(lines) {
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (error) {
      emit({ event: 'result', id: null, ok: false, error: `bad command line ${JSON.stringify(line)}: ${error.message}` });
      continue;
    }
    lastResponse = null;
    try {
      const value = await run(cmd);
      emit({ event: 'result', id: cmd.id, ok: true, value, response: lastResponse });
    } catch (error) {
      emit({ event: 'result', id: cmd.id, ok: false, error: describe(error), code: error && error.code, response: lastResponse });
    }
  }
}

server.start(config, (error, serverInfo) => {
  if (error) {
    emit({ event: 'error', error: describe(error) });
    process.exit(1);
  }
  // with port 0 the library does not know its own port, which its proxied
  // device-management requests need: tell it
  config.port = serverInfo.server._sock.address().port;
  libDefaults = { defaultAcceptFormat: config.defaultAcceptFormat, writeFormat: config.writeFormat };
  server.setHandler(serverInfo, 'registration', (endpoint, lifetime, version, binding, payload, callback) => {
    emit({ event: 'registration', endpoint, lifetime, version, binding, links: payload });
    callback();
  });
  server.setHandler(serverInfo, 'updateRegistration', (device, payload, callback) => {
    emit({ event: 'update', endpoint: device.name, links: payload });
    callback();
  });
  server.setHandler(serverInfo, 'unregistration', (device, callback) => {
    emit({ event: 'deregistration', endpoint: device.name });
    callback();
  });
  // setHandler('unregistration') restarts the lifetime check with an undefined
  // interval (a 1 ms busy timer); start it again at the configured pace
  server.getRegistry().checkLifetime(config.lifetimeCheckInterval, (device, callback) => {
    emit({ event: 'deregistration', endpoint: device.name, reason: 'lifetime expired' });
    callback();
  });
  emit({ event: 'listening', port: config.port });
  serve(readline.createInterface({ input: process.stdin })).then(() => process.exit(0));
});
