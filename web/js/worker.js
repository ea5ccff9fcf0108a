// The engine's Web Worker: loads the wasm module, the model and generates, one token per
// step, yielding to the event loop between steps so text streams out and abort() lands.
// Protocol (index.js): {id, op, ...} in; {id, type: 'progress' | 'text' | 'result' | 'error'} out.
import init, { loadEngine } from './strata_web.js';
import { openModel } from './model_cache.js';

// The wasm module is built with SIMD128 (every current browser has it); say so plainly
// where it is missing rather than failing to compile.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

let ready = null;
let engine = null;
let running = false;
let aborted = false;

const post = (m) => self.postMessage(m);

// A macrotask boundary without setTimeout's clamping: lets 'abort' messages in.
function yieldNow() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => resolve();
    ch.port2.postMessage(null);
  });
}

function start() {
  if (!WebAssembly.validate(SIMD_PROBE)) {
    throw new Error('this browser lacks WebAssembly SIMD128, which strata needs (Chrome 91+, Firefox 89+, Safari 16.4+)');
  }
  return init();
}

async function load(m) {
  const progress = (p) => post({ id: m.id, type: 'progress', ...p });
  const { blob, name } = await openModel(m.source, { cache: m.cache, onProgress: progress });
  engine?.free();
  engine = null;
  engine = await loadEngine(blob, name, JSON.stringify(m.options || {}), (loaded, total) => progress({ loaded, total, phase: 'weights' }));
  return JSON.parse(engine.info());
}

async function generate(m) {
  if (!engine) throw new Error('no model loaded');
  if (running) throw new Error('a generation is already running: abort() it or wait for it');
  running = true;
  aborted = false;
  try {
    const opts = JSON.stringify(m.options || {});
    if (m.op === 'chat') engine.beginChat(JSON.stringify(m.messages), opts);
    else engine.begin(m.prompt, opts);
    for (;;) {
      if (aborted) {
        engine.cancel();
        break;
      }
      const piece = await engine.step();
      if (piece === undefined) break;
      if (piece) post({ id: m.id, type: 'text', text: piece });
      await yieldNow();
    }
    return JSON.parse(engine.stats());
  } finally {
    running = false;
  }
}

self.onmessage = async ({ data: m }) => {
  if (m.op === 'abort') {
    aborted = true;
    return;
  }
  try {
    ready ??= start();
    await ready;
    let value;
    if (m.op === 'load') value = await load(m);
    else if (m.op === 'generate' || m.op === 'chat') value = await generate(m);
    else if (m.op === 'dispose') {
      engine?.free();
      engine = null;
      value = null;
    } else throw new Error(`unknown request ${m.op}`);
    post({ id: m.id, type: 'result', value });
  } catch (e) {
    post({ id: m.id, type: 'error', message: e?.message ?? String(e) });
  }
};
