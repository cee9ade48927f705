// simlab's /work in Node.js: one event loop per process, callbacks all the way.
//
// Usage: node server.js PORT PROCESSES BACKLOG (the backend's port in
// SIMLAB_BACKEND_PORT). With PROCESSES > 1 the cluster module forks that many
// workers, which share the port. Node times a connection's first request headers
// from accept; the load generator holds idle connections for the whole run, so
// that timeout is an hour, and idle keep-alive connections are never closed.
//
// The CPU burn spins on this thread's CPU time where Node offers it
// (process.threadCpuUsage, Node >= 23.9), else on the process's (process.cpuUsage):
// the loop's thread does nearly all of a Node process's work.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const net = require('node:net');

const [port, processes, backlog] = process.argv.slice(2).map(Number);
const HOUR_MS = 3600 * 1000;
const MAX_CPU_MS = 60000;
const MAX_IO_MS = 600000;
const MAX_CALLS = 1000;
// Decimal numbers only: Number() would take "", " ", "0x10" and "Infinity".
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const cpuUsage = process.threadCpuUsage ? () => process.threadCpuUsage() : () => process.cpuUsage();

class BadRequest extends Error {}

function number(text, name, high) {
  if (!NUMBER.test(text)) throw new BadRequest(`${name} must be a number`);
  const value = Number(text);
  if (value < 0 || value > high) throw new BadRequest(`${name} must be between 0 and ${high}`);
  return value;
}

// Validates a query as simlab/real/protocol.py's parse_work does.
function parseWork(query) {
  const params = new Map(new URLSearchParams(query)); // the last value of a key wins
  for (const key of params.keys()) {
    if (!['cpu_ms', 'io_ms', 'calls', 'fanout'].includes(key)) {
      throw new BadRequest(`unknown parameter ${key}`);
    }
  }
  const calls = params.has('calls') ? number(params.get('calls'), 'calls', MAX_CALLS) : 0;
  if (!Number.isInteger(calls)) throw new BadRequest('calls must be an integer');
  const fanout = params.get('fanout') ?? 'sequential';
  if (fanout !== 'sequential' && fanout !== 'parallel') {
    throw new BadRequest('fanout must be sequential or parallel');
  }
  let io = (params.get('io_ms') ?? '0').split(',').map((x) => number(x, 'io_ms', MAX_IO_MS));
  if (io.length === 1) io = new Array(calls).fill(io[0]);
  else if (io.length !== calls) throw new BadRequest('io_ms must be one value or one per call');
  const cpuMs = params.has('cpu_ms') ? number(params.get('cpu_ms'), 'cpu_ms', MAX_CPU_MS) : 0;
  return { cpuMs, delaysUs: io.map((ms) => Math.trunc(ms * 1000)), parallel: fanout === 'parallel' };
}

let sink = 0;
function burnCpu(ms) {
  if (ms <= 0) return;
  const used = () => { const u = cpuUsage(); return u.user + u.system; };
  const end = used() + ms * 1000;
  let x = 0;
  while (used() < end) {
    for (let i = 0; i < 100; i++) x += i;
  }
  sink = x;
}

// One connection to the backend per process, shared by every request: calls are
// matched to their answers by id, so any number may be in flight at once.
class Backend {
  constructor(backendPort) {
    this.port = backendPort;
    this.socket = null;
    this.pending = new Map();
    this.nextId = 0;
    this.buffer = '';
  }

  connect() {
    if (this.socket) return this.socket;
    const socket = net.connect({ host: '127.0.0.1', port: this.port, noDelay: true });
    socket.setEncoding('latin1');
    socket.on('data', (data) => {
      this.buffer += data;
      let nl;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const id = Number(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
        const done = this.pending.get(id);
        this.pending.delete(id);
        if (done) done.resolve();
      }
    });
    const fail = (err) => {
      this.socket = null;
      this.buffer = '';
      for (const done of this.pending.values()) done.reject(err ?? new Error('backend closed'));
      this.pending.clear();
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
    this.socket = socket;
    return socket;
  }

  send(delays) {
    const socket = this.connect();
    const answers = delays.map((d) => {
      const id = this.nextId++;
      return { line: `${id} ${d}\n`, done: new Promise((resolve, reject) => this.pending.set(id, { resolve, reject })) };
    });
    socket.write(answers.map((a) => a.line).join(''));
    return Promise.all(answers.map((a) => a.done));
  }

  async call(delaysUs, parallel) {
    if (parallel) return this.send(delaysUs); // all written at once, then all awaited
    for (const d of delaysUs) await this.send([d]);
  }
}

function reply(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function serve() {
  const backend = new Backend(Number(process.env.SIMLAB_BACKEND_PORT));
  const server = http.createServer({
    maxHeaderSize: 64 * 1024,
    keepAliveTimeout: 0, // 0: idle keep-alive connections are never closed
    headersTimeout: HOUR_MS,
    requestTimeout: 0, // 0: a request (once its headers are in) may take as long as it needs
  }, async (req, res) => {
    if (req.method !== 'GET') return reply(res, 405, 'only GET is served\n');
    const q = req.url.indexOf('?');
    if ((q < 0 ? req.url : req.url.slice(0, q)) !== '/work') return reply(res, 404, 'only /work is served\n');
    let work;
    try {
      work = parseWork(q < 0 ? '' : req.url.slice(q + 1));
    } catch (err) {
      if (err instanceof BadRequest) return reply(res, 400, `${err.message}\n`);
      throw err;
    }
    const t0 = process.hrtime.bigint();
    burnCpu(work.cpuMs);
    try {
      await backend.call(work.delaysUs, work.parallel);
    } catch (err) {
      return reply(res, 502, `backend: ${err.message}\n`);
    }
    const serviceUs = (process.hrtime.bigint() - t0) / 1000n;
    reply(res, 200, 'ok\n', { 'x-service-us': String(serviceUs) });
  });
  server.listen({ host: '127.0.0.1', port, backlog });
}

if (processes > 1 && cluster.isPrimary) {
  for (let k = 0; k < processes; k++) cluster.fork();
  // A worker that dies takes the peer with it: the lab sees a crash, not a quiet restart.
  cluster.on('exit', () => process.exit(1));
} else {
  serve();
}
