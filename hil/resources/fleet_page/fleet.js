// The live fleet page: batches of changed rows arrive as server-sent events
// (FLEET, a few a second however many nodes report) and are applied in one
// animation frame, cell by cell where the text changed. Plain JavaScript, no
// build step. window.fleetStats says how well the page keeps up.
"use strict";
(() => {
  const ENDPOINT = 0, STATE = 1, SERVICES = 2, READINGS = 3, VALUE = 4, PATH = 5, TIME = 6,
    ERRORS = 7, ERROR = 8, REPORTING = 9;
  const KEPT_ERRORS = 200;
  const collator = new Intl.Collator(undefined, { numeric: true });
  const tbody = document.querySelector("#nodes tbody");
  const errorList = document.getElementById("errors");
  const link = document.getElementById("link");
  const rows = new Map(); // endpoint -> { tr, cells, text }
  let order = []; // endpoints, in the table's order
  let pending = [];
  let frame = 0;

  const stats = window.fleetStats = {
    batches: 0, // FLEET events received
    applied: 0, // of them, applied to the page
    frames: 0, // animation frames that applied some
    rowUpdates: 0,
    lastSeq: -1,
    applyMs: 0, // time spent applying, in total
    applyMsMax: 0,
    lagMs: 0, // from the gateway's batch to the page showing it, last one
    lagMsMax: 0,
    totals: null,
  };

  const pad = (n) => (n < 10 ? "0" : "") + n;
  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const d = new Date(seconds * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function shown(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
    return String(value);
  }

  function newRow(endpoint) {
    const tr = document.createElement("tr");
    const cells = [];
    for (const kind of ["", "state", "num", "num", "num", "", "", "num err"]) {
      const td = document.createElement("td");
      if (kind) td.className = kind;
      tr.appendChild(td);
      cells.push(td);
    }
    tr.dataset.endpoint = endpoint;
    const row = { tr, cells, text: new Array(cells.length).fill(null), stateClass: "" };
    rows.set(endpoint, row);
    return row;
  }

  function set(row, i, text) {
    if (row.text[i] !== text) {
      row.cells[i].textContent = text;
      row.text[i] = text;
      return 1;
    }
    return 0;
  }

  function update(row, n) {
    const state = n[STATE] === "registered" && n[REPORTING] ? "reporting" : n[STATE];
    if (row.stateClass !== state) {
      row.cells[1].className = "state " + state;
      row.stateClass = state;
    }
    let changed = set(row, 0, n[ENDPOINT]) + set(row, 1, state) + set(row, 2, String(n[SERVICES])) +
      set(row, 3, String(n[READINGS])) + set(row, 4, shown(n[VALUE])) + set(row, 5, n[PATH] || "–") +
      set(row, 6, clock(n[TIME])) + set(row, 7, n[ERRORS] ? String(n[ERRORS]) : "");
    if (row.cells[7].title !== (n[ERROR] || "")) row.cells[7].title = n[ERROR] || "";
    stats.rowUpdates += changed;
  }

  function addErrors(errors) {
    for (const [t, endpoint, text] of errors) {
      const li = document.createElement("li");
      li.textContent = `${clock(t)} ${endpoint}: ${text}`;
      errorList.insertBefore(li, errorList.firstChild);
    }
    while (errorList.childElementCount > KEPT_ERRORS) errorList.lastChild.remove();
  }

  function showTotals(t) {
    for (const key of ["nodes", "registered", "deployed", "reporting", "readings", "errors"]) {
      const el = document.getElementById("t-" + key);
      const text = String(t[key]);
      if (el.textContent !== text) el.textContent = text;
    }
    document.getElementById("t-rate").textContent = t.rate.toFixed(1);
    document.getElementById("errors-total").classList.toggle("bad", t.errors > 0);
    stats.totals = t;
  }

  function apply() {
    frame = 0;
    const started = performance.now();
    const batches = pending;
    pending = [];
    if (!batches.length) return;
    const latest = new Map(); // the newest state of each node over these batches
    for (const b of batches) for (const n of b.nodes) latest.set(n[ENDPOINT], n);
    const fresh = [];
    for (const [endpoint, n] of latest) {
      let row = rows.get(endpoint);
      if (!row) {
        row = newRow(endpoint);
        fresh.push(endpoint);
      }
      update(row, n);
    }
    if (fresh.length) {
      order = order.concat(fresh).sort(collator.compare);
      const all = document.createDocumentFragment();
      for (const endpoint of order) all.appendChild(rows.get(endpoint).tr);
      tbody.appendChild(all);
    }
    for (const b of batches) if (b.errors.length) addErrors(b.errors);
    const last = batches[batches.length - 1];
    showTotals(last.totals);
    document.getElementById("window").textContent = String(last.window);
    const spent = performance.now() - started;
    stats.applied += batches.length;
    stats.frames += 1;
    stats.lastSeq = last.seq;
    stats.applyMs += spent;
    stats.applyMsMax = Math.max(stats.applyMsMax, spent);
    stats.lagMs = Date.now() - last.now * 1000;
    stats.lagMsMax = Math.max(stats.lagMsMax, stats.lagMs);
  }

  function setLink(kind, text) {
    link.className = "link " + kind;
    link.textContent = text;
  }

  const interval = new URLSearchParams(location.search).get("interval");
  const source = new EventSource("api/fleet/events" + (interval ? "?interval=" + encodeURIComponent(interval) : ""));
  source.addEventListener("FLEET", (event) => {
    pending.push(JSON.parse(event.data));
    stats.batches += 1;
    if (!frame) frame = requestAnimationFrame(apply);
  });
  source.onopen = () => setLink("live", "live");
  source.onerror = () => setLink("down", "reconnecting…"); // EventSource tries again by itself
})();
