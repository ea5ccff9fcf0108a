// Runs the conformance worker and publishes its results as `window.__strata` for the
// driver (web/driver/tests/browser.rs), which reads them over WebDriver.
const q = new URLSearchParams(location.search);
const params = {
  model: q.get('model'),
  prompt: q.get('prompt') ?? 'The capital of France is',
  n: Number(q.get('n') ?? 8),
  ops: q.get('ops') === 'none' ? null : (q.get('ops') ?? ''),
  backends: (q.get('backends') ?? 'webgpu,wasm').split(',').filter(Boolean),
};
const results = { done: false, errors: [], userAgent: navigator.userAgent };
window.__strata = results;
const log = document.getElementById('log');
const line = (text, cls) => {
  const s = document.createElement('div');
  s.textContent = text;
  if (cls) s.className = cls;
  log.append(s);
};

const worker = new Worker(new URL('./conformance_worker.js', import.meta.url), { type: 'module' });
worker.onerror = (e) => {
  results.errors.push(`worker: ${e.message}`);
  results.done = true;
  line(`worker failed: ${e.message}`, 'fail');
};
worker.onmessage = ({ data: { key, value } }) => {
  if (key === 'done') {
    results.done = true;
    line('done');
    return;
  }
  if (key === 'error') {
    results.errors.push(value);
    line(value, 'fail');
    return;
  }
  results[key] = value;
  if (value && value.passed !== undefined) line(`${key}: ${value.passed} passed, ${value.failed} failed${value.unsupported ? `, ${value.unsupported} unsupported` : ''}`, value.failed ? 'fail' : 'pass');
  else line(`${key}: ${JSON.stringify(value).slice(0, 400)}`);
};
worker.postMessage(params);
