// The conformance cases, in a worker (the engine reads the model Blob with FileReaderSync).
import init, { loaderCases, opCases, modelCase } from './pkg/strata_web_conformance.js';

const post = (key, value) => self.postMessage({ key, value });

async function section(name, f) {
  try {
    post(name, await f());
  } catch (e) {
    post('error', `${name}: ${e?.message ?? e}`);
  }
}

self.onmessage = async ({ data: p }) => {
  try {
    await init();
  } catch (e) {
    post('error', `loading the wasm module: ${e?.message ?? e}`);
    post('done', true);
    return;
  }
  await section('loader', () => JSON.parse(loaderCases()));
  if (p.ops !== null) await section('ops', async () => JSON.parse(await opCases(p.ops)));
  if (p.model) {
    let blob = null;
    await section('fetch', async () => {
      const resp = await fetch(p.model);
      if (!resp.ok) throw new Error(`${p.model}: HTTP ${resp.status}`);
      blob = await resp.blob();
      return { bytes: blob.size };
    });
    for (const backend of blob ? p.backends : []) {
      await section(`model_${backend}`, async () => {
        const name = p.model.split('/').pop();
        const load = JSON.stringify({ backend, contextLength: 256 });
        const gen = JSON.stringify({ maxTokens: p.n, temperature: 0 });
        return JSON.parse(await modelCase(blob, name, load, p.prompt, gen));
      });
    }
  }
  post('done', true);
};
