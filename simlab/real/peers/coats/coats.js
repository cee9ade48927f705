// The Node.js coats of experiments/callbacks_vs_coroutines.py: callbacks, and
// promises awaited by async functions, on the one event loop.
//
// Usage: node coats.js callbacks|promises pending N
//          N operations each waiting on its own timer of an hour: a setTimeout
//          callback closing over its request's state, or an async function
//          suspended on a promise that the timer resolves;
//        node coats.js callbacks|promises hops C K MS
//          warm up, print READY, wait for a line on stdin, then rounds of C concurrent
//          requests each passing K times through the loop (setImmediate: a
//          callback hands the next one to the loop; an async function awaits a
//          promise that the loop resolves) until MS milliseconds have passed;
//          print DONE with the rounds and the wall time, and hold until stopped.
'use strict';

const HOUR_MS = 3600 * 1000;
const [style, mode, ...rest] = process.argv.slice(2);
const args = rest.map(Number);
let sink = 0;

function seconds(t0) {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function hold() {
  setInterval(() => {}, HOUR_MS);
}

// One request's K hops, then done(): each hop is a callback the loop runs next turn.
function chainCallbacks(k, done) {
  if (k === 0) return done(k);
  setImmediate(() => chainCallbacks(k - 1, done));
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function chainPromises(k) {
  for (let i = 0; i < k; i++) await tick();
  return k;
}

function roundCallbacks(c, k, done) {
  let left = c;
  for (let i = 0; i < c; i++) {
    chainCallbacks(k, (x) => {
      sink += x;
      if (--left === 0) done();
    });
  }
}

async function roundPromises(c, k) {
  const all = [];
  for (let i = 0; i < c; i++) all.push(chainPromises(k));
  for (const x of await Promise.all(all)) sink += x;
}

const round = style === 'callbacks'
  ? (c, k) => new Promise((resolve) => roundCallbacks(c, k, resolve))
  : roundPromises;

function pending(n) {
  const t0 = process.hrtime.bigint();
  const held = [];
  for (let i = 0; i < n; i++) {
    const state = { i }; // what a real operation carries: its own request's state
    if (style === 'callbacks') {
      held.push(setTimeout(() => { sink += state.i; }, HOUR_MS));
    } else {
      held.push((async () => {
        await new Promise((resolve) => setTimeout(resolve, HOUR_MS));
        sink += state.i;
      })());
    }
  }
  process.stdout.write(`READY {"create_s": ${seconds(t0)}}\n`);
  hold();
}

async function rounds(c, k, ms) {
  const t0 = process.hrtime.bigint();
  let done = 0;
  while (seconds(t0) * 1000 < ms) {
    await round(c, k);
    done++;
  }
  return [done, seconds(t0)];
}

async function hops(c, k, ms) {
  // The callbacks' hops are all callbacks; the promise around a whole round
  // (one per round of c x k hops) only tells this loop the round is over.
  await rounds(c, k, ms); // warm-up: the JIT at work
  process.stdout.write('READY {"create_s": 0}\n');
  // The measurer reads the CPU count, then sends a line: the rounds start after it.
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  const [done, wall] = await rounds(c, k, ms);
  process.stdout.write(`DONE {"rounds": ${done}, "wall_s": ${wall}}\n`);
  hold();
}

if (!['callbacks', 'promises'].includes(style)) throw new Error(`unknown style ${style}`);
if (mode === 'pending') pending(args[0]);
else if (mode === 'hops') hops(...args);
else throw new Error(`unknown mode ${mode}`);
