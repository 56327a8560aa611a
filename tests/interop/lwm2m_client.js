#!/usr/bin/env node
// Test harness: Telefonica's lwm2m-node-lib as an independent LwM2M client.
//
//   node lwm2m_client.js HOST PORT ENDPOINT OBJECTS_JSON [LWM2M_VERSION]
//
// OBJECTS_JSON maps instances to resource values, e.g.
//   '{"/3/0": {"0": "Telefonica", "17": "lib client"}, "/3303/0": {"5700": "21.5"}}'
// LWM2M_VERSION is what the client announces (lwm2m=...), "1.0" unless given.
//
// Prints one JSON line per event on stdout:
//   {"event":"registered","location":"rd/1"}   {"event":"error","error":..}
//   {"event":"read","path":..,"value":..}  {"event":"write","path":..,"value":..}
//   {"event":"execute","path":..,"args":..}
//   {"event":"result","id":ID,"ok":true}   {"event":"result","id":ID,"ok":false,"error":..}
// and reads one JSON command per line on stdin:
//   {"id":1,"op":"set","path":"/3303/0/5700","value":"22.5"}  (observers are notified)
//   {"id":2,"op":"update"}   {"id":3,"op":"deregister"}
'use strict';

const readline = require('readline');
const lwm2m = require('lwm2m-node-lib');

const client = lwm2m.client;
const [host, port, endpoint, objectsJson, version = '1.0'] = process.argv.slice(2);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function fail(message) {
  emit({ event: 'error', error: message });
  process.exit(1);
}

if (!host || !port || !endpoint || !objectsJson) {
  fail('usage: lwm2m_client.js HOST PORT ENDPOINT OBJECTS_JSON [LWM2M_VERSION]');
}

function call(fn, ...args) {
  return new Promise((resolve, reject) => {
    fn(...args, (error, value) => (error ? reject(error) : resolve(value)));
  });
}

function describe(error) {
  return error && (error.message || error.name || String(error));
}

async function createObjects(objects) {
  for (const [uri, resources] of Object.entries(objects)) {
    await call(client.registry.create, uri);
    for (const [resource, value] of Object.entries(resources)) {
      await call(client.registry.setResource, uri, resource, String(value));
    }
  }
}

function setHandlers(serverInfo) {
  client.setHandler(serverInfo, 'read', (type, inst, res, value, callback) => {
    emit({ event: 'read', path: `/${type}/${inst}/${res}`, value });
    callback(null, value);
  });
  client.setHandler(serverInfo, 'write', (type, inst, res, value, callback) => {
    emit({ event: 'write', path: `/${type}/${inst}/${res}`, value });
    callback(null);
  });
  client.setHandler(serverInfo, 'execute', (type, inst, res, args, callback) => {
    emit({ event: 'execute', path: `/${type}/${inst}/${res}`, args });
    callback(null);
  });
}

async function run(cmd, state) {
  switch (cmd.op) {
    case 'set': {
      const cut = cmd.path.lastIndexOf('/');
      return call(client.registry.setResource, cmd.path.slice(0, cut), cmd.path.slice(cut + 1), String(cmd.value));
    }
    case 'update':
      state.device = await call(client.update, state.device);
      setHandlers(state.device.serverInfo);
      return undefined;
    case 'deregister':
      return call(client.unregister, state.device);
    default:
      throw new Error(`unknown op ${JSON.stringify(cmd.op)}: set, update or deregister`);
  }
}

async function main() {
  let objects;
  try {
    objects = JSON.parse(objectsJson);
  } catch (error) {
    fail(`OBJECTS_JSON is not JSON: ${error.message}`);
  }
  const logLevel = process.env.LWM2M_LOG_LEVEL || 'FATAL'; // logops writes to stdout
  client.init({
    logLevel,
    client: {
      lifetime: '300',
      version,
      logLevel,
      ipProtocol: 'udp4',
      serverProtocol: 'udp4',
    },
  });
  await createObjects(objects);
  const state = {};
  try {
    state.device = await call(client.register, host, Number(port), '', endpoint);
  } catch (error) {
    fail(`register to ${host}:${port} failed: ${describe(error)}`);
  }
  setHandlers(state.device.serverInfo);
  emit({ event: 'registered', location: state.device.location });

  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
      await run(cmd, state);
      emit({ event: 'result', id: cmd.id, ok: true });
    } catch (error) {
      emit({ event: 'result', id: cmd && cmd.id, ok: false, error: describe(error) });
    }
  }
  process.exit(0);
}

main().catch((error) => fail(describe(error)));
