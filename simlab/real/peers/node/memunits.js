// The Node.js units of `simlab measure memory --runtime node`, held until the lab stops the process.
//
// Usage: node memunits.js connection|callback|promise N
//   connection: an http server holding N idle keep-alive connections (it prints
//               "PORT p" and the lab opens them);
//   callback:   N pending setTimeout callbacks, each a closure over its own object;
//   promise:    N async functions suspended on a pending promise (an awaiting task).
// Once all N exist it prints READY {"create_s": ...}, the time taken to create them.
'use strict';

const http = require('node:http');

const [kind, nText] = process.argv.slice(2);
const n = Number(nText);
const HOUR_MS = 3600 * 1000;

function ready(t0) {
  const createS = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`READY {"create_s": ${createS}}\n`);
}

// Until the lab stops the process: a timer keeps the loop alive when nothing else would.
function hold() {
  setInterval(() => {}, HOUR_MS);
}

if (kind === 'connection') {
  const sockets = [];
  let t0 = null;
  const server = http.createServer({ keepAliveTimeout: 0 }, (req, res) => res.end());
  server.on('connection', (socket) => {
    t0 ??= process.hrtime.bigint();
    sockets.push(socket);
    if (sockets.length === n) {
      ready(t0);
      hold();
    }
  });
  server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
    process.stdout.write(`PORT ${server.address().port}\n`);
  });
} else if (kind === 'callback') {
  const t0 = process.hrtime.bigint();
  const timers = [];
  for (let k = 0; k < n; k++) {
    const state = { k }; // what a real callback closes over: its own request's state
    timers.push(setTimeout(() => state.k, HOUR_MS));
  }
  ready(t0);
  hold();
} else if (kind === 'promise') {
  const gate = new Promise(() => {}); // never settles
  const t0 = process.hrtime.bigint();
  const waiting = [];
  for (let k = 0; k < n; k++) {
    waiting.push((async () => { await gate; return k; })());
  }
  ready(t0);
  hold();
} else {
  throw new Error(`unknown unit ${kind}`);
}
