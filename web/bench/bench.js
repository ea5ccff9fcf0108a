// Time to first token and decode tokens/s of strata (wasm CPU, WebGPU) and wllama
// (llama.cpp in wasm, CPU, one thread: no cross-origin isolation here) on the same GGUF,
// measured the same way on the page: from the call to the first streamed piece, then the
// remaining tokens over the time after it. Results go to `window.__bench`.
import { load } from '../pkg/index.js';

const q = new URLSearchParams(location.search);
const model = new URL(q.get('model'), location.href).href;
const n = Number(q.get('n') ?? 32);
const prompt = q.get('prompt') ?? 'The history of the printing press begins in';
const runs = (q.get('runs') ?? 'strata-wasm,strata-webgpu,wllama').split(',');
const results = { done: false, model, n, prompt, userAgent: navigator.userAgent, runs: {} };
window.__bench = results;
const log = (s) => (document.getElementById('log').textContent += s + '\n');

async function timeStream(iterable, countTokens) {
  const t0 = performance.now();
  let first = null;
  let text = '';
  for await (const piece of iterable) {
    first ??= performance.now();
    text += piece;
  }
  const end = performance.now();
  const tokens = countTokens(text);
  return { ttftMs: first - t0, decodeTokensPerS: (tokens - 1) / ((end - first) / 1e3), tokens, text };
}

async function strata(backend) {
  const t0 = performance.now();
  const m = await load(model, { backend, contextLength: 512 });
  const loadMs = performance.now() - t0;
  const r = await timeStream(m.generate(prompt, { maxTokens: n, temperature: 0 }), () => m.lastStats.tokens.length);
  const s = m.lastStats;
  await m.dispose();
  return { loadMs, ...r, engine: { ttftMs: s.timeToFirstTokenMs, decodeTokensPerS: s.decodeTokensPerS, promptTokens: s.promptTokens }, backend: m.info.backendName };
}

async function wllama() {
  const { Wllama } = await import('/vendor/@wllama/wllama/esm/index.js');
  const w = new Wllama({ default: '/vendor/@wllama/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
  const t0 = performance.now();
  await w.loadModelFromUrl(model, { n_ctx: 512, n_threads: 1, n_gpu_layers: 0, useCache: false });
  const loadMs = performance.now() - t0;
  let chunks = 0;
  const stream = await w.createCompletion({ prompt, max_tokens: n, temperature: 0, stream: true });
  async function* pieces() {
    for await (const c of stream) {
      chunks++;
      yield c.choices?.[0]?.text ?? '';
    }
  }
  const r = await timeStream(pieces(), () => chunks);
  await w.exit();
  return { loadMs, ...r, backend: 'wllama (llama.cpp wasm, 1 thread, CPU)', multiThread: crossOriginIsolated };
}

for (const run of runs) {
  try {
    log(`${run}…`);
    const r = run === 'wllama' ? await wllama() : await strata(run.replace('strata-', ''));
    results.runs[run] = r;
    log(`${run}: load ${r.loadMs.toFixed(0)} ms, TTFT ${r.ttftMs.toFixed(0)} ms, decode ${r.decodeTokensPerS.toFixed(2)} tok/s, ${r.tokens} tokens: ${JSON.stringify(r.text)}`);
  } catch (e) {
    results.runs[run] = { error: e?.message ?? String(e) };
    log(`${run}: ${e?.message ?? e}`);
  }
}
results.done = true;
