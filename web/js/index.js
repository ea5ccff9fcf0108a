// strata in the browser: the main-thread API. The engine runs in a Web Worker
// (worker.js), so the page never freezes while a model loads or generates.
//
//   import { load } from 'strata-web';
//   const model = await load(url, { onProgress: (p) => console.log(p.phase, p.loaded, p.total) });
//   for await (const piece of model.generate('The capital of France is', { maxTokens: 32 })) out.textContent += piece;
export { cachedModels, deleteCachedModel } from './model_cache.js';

let seq = 0;

/** A model loaded in its own worker. */
export class Model {
  constructor(worker, info) {
    this._worker = worker;
    this._handlers = new Map();
    this._busy = false;
    /** `{backend: 'webgpu' | 'wasm', backendName, adapter, fallbackReason, model, memory}` */
    this.info = info;
    /** Tokens and timings of the last finished generation. */
    this.lastStats = null;
    worker.onmessage = ({ data }) => this._handlers.get(data.id)?.(data);
    worker.onerror = (e) => {
      for (const h of this._handlers.values()) h({ type: 'error', message: `the strata worker failed: ${e.message}` });
    };
  }

  /** Completion of `prompt`: an async iterator of text pieces. */
  generate(prompt, options = {}) {
    return this._stream({ op: 'generate', prompt: String(prompt), options });
  }

  /** The assistant's reply to `messages` (`[{role, content}]`), with the model's chat template. */
  chat(messages, options = {}) {
    return this._stream({ op: 'chat', messages, options });
  }

  /** Stops the running generation after the current token. */
  abort() {
    this._worker.postMessage({ op: 'abort' });
  }

  /** Frees the model and ends its worker. */
  async dispose() {
    if (!this._worker) return;
    this.abort();
    await request(this._worker, this._handlers, { op: 'dispose' }).catch(() => {});
    this._worker.terminate();
    this._worker = null;
  }

  _stream(req) {
    if (!this._worker) throw new Error('this model was disposed');
    if (this._busy) throw new Error('a generation is already running: abort() it or wait for it');
    this._busy = true;
    const id = ++seq;
    const queue = [];
    let done = false;
    let error = null;
    let wake = null;
    const options = { ...req.options };
    this._handlers.set(id, (m) => {
      if (m.type === 'text') queue.push(m.text);
      else {
        if (m.type === 'error') error = new Error(m.message);
        else this.lastStats = m.value;
        done = true;
        this._busy = false;
        this._handlers.delete(id);
      }
      wake?.();
      wake = null;
    });
    this._worker.postMessage({ ...req, id, options });
    const model = this;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          if (queue.length) return { value: queue.shift(), done: false };
          if (error) throw error;
          if (done) return { value: undefined, done: true };
          await new Promise((r) => (wake = r));
        }
      },
      // `break` out of `for await`: stop generating.
      async return() {
        if (!done) model.abort();
        while (!done) await new Promise((r) => (wake = r));
        return { value: undefined, done: true };
      },
    };
  }
}

function request(worker, handlers, msg, onProgress) {
  const id = ++seq;
  return new Promise((resolve, reject) => {
    handlers.set(id, (m) => {
      if (m.type === 'progress') return onProgress?.({ loaded: m.loaded, total: m.total, phase: m.phase });
      handlers.delete(id);
      if (m.type === 'error') reject(new Error(m.message));
      else resolve(m.value);
    });
    worker.postMessage({ ...msg, id });
  });
}

/**
 * Loads a GGUF model in a new worker. `source`: a URL (downloaded once into OPFS and
 * resumed if cut), a `File`/`Blob`, or an `ArrayBuffer`.
 * Options: `backend` ('auto' | 'webgpu' | 'wasm'), `contextLength`, `maxMemory` (bytes of
 * resident weights; the rest stream from the file), `cache` (default true),
 * `onProgress({loaded, total, phase})` with phase 'download' | 'cached' | 'weights'.
 */
export async function load(source, options = {}) {
  const { onProgress, cache = true, ...engineOptions } = options;
  if (typeof source !== 'string' && !(source instanceof URL) && !(source instanceof Blob) && !(source instanceof ArrayBuffer) && !ArrayBuffer.isView(source)) {
    throw new TypeError('load(source): source must be a URL, a File/Blob or an ArrayBuffer');
  }
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) source = new Blob([source]);
  if (source instanceof URL) source = source.href;
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'strata' });
  const handlers = new Map();
  worker.onmessage = ({ data }) => handlers.get(data.id)?.(data);
  worker.onerror = (e) => {
    const message = `the strata worker failed to start: ${e.message || 'see the console'}`;
    for (const h of handlers.values()) h({ type: 'error', message });
  };
  try {
    const info = await request(worker, handlers, { op: 'load', source, cache, options: engineOptions }, onProgress);
    return new Model(worker, info);
  } catch (e) {
    worker.terminate();
    throw e;
  }
}
