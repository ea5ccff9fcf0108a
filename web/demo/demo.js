// The demo page: pick a model (URL, local file, or one cached in OPFS), load it with a
// progress bar, then chat with streamed tokens. Uses the npm package as built in web/pkg.
import { load, cachedModels } from '../pkg/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('model-url').value = params.get('model') ? new URL(params.get('model'), location.href).href : '';

let model = null;
let history = [];

function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

const mib = (n) => (n / 1048576).toFixed(1) + ' MiB';

async function refreshCached() {
  const list = await cachedModels().catch(() => []);
  const sel = $('cached');
  sel.length = 1;
  for (const m of list.filter((m) => m.complete)) {
    const o = new Option(`${decodeURIComponent(m.url.split('/').pop())} (${mib(m.bytes)})`, m.url);
    sel.add(o);
  }
}

function showInfo(info) {
  const a = info.adapter;
  const rows = [
    `<b>${info.model.name}</b> — ${info.model.architecture}, ${info.model.layers} layers, ${mib(info.model.bytes)}`,
    `backend <b>${info.backend === 'webgpu' ? 'WebGPU' : 'wasm CPU'}</b> (${info.backendName})`,
  ];
  if (a) rows.push(`adapter: ${a.name || a.device_type} · f16 ${a.shader_f16 ? 'yes' : 'no'} · subgroups ${a.subgroups ? 'yes' : 'no'} · max binding ${mib(a.max_storage_buffer_binding_size)}`);
  if (info.fallbackReason) rows.push(`fell back to wasm: ${info.fallbackReason}`);
  if (info.memory.streamedLayers) rows.push(`${info.memory.streamedLayers} of ${info.memory.layers} layers stream from the file`);
  if (!info.model.chatTemplate) rows.push('no chat template: plain completion');
  const el = $('info');
  el.innerHTML = rows.map((r) => `<div>${r}</div>`).join('');
  el.hidden = false;
}

function setBusy(loading, generating) {
  $('load').disabled = loading || generating;
  $('prompt').disabled = !model || loading;
  $('send').disabled = !model || loading || generating;
  $('stop').disabled = !generating;
}

$('load').onclick = async () => {
  const file = $('model-file').files[0];
  const source = file || $('cached').value || $('model-url').value.trim();
  if (!source) return status('Enter a model URL, pick a file, or a cached model.', true);
  await model?.dispose();
  model = null;
  history = [];
  $('messages').replaceChildren();
  $('info').hidden = true;
  setBusy(true, false);
  status('Loading…');
  const bar = $('progress');
  bar.hidden = false;
  bar.value = 0;
  const label = { download: 'Downloading', cached: 'Found in cache', weights: 'Loading weights' };
  try {
    model = await load(source, {
      backend: $('backend').value,
      onProgress: ({ loaded, total, phase }) => {
        bar.value = total ? loaded / total : 0;
        status(`${label[phase] || phase}… ${mib(loaded)} / ${mib(total)}`);
      },
    });
    showInfo(model.info);
    status('Ready.');
    $('prompt').focus();
  } catch (e) {
    status(e.message, true);
  } finally {
    bar.hidden = true;
    setBusy(false, false);
    refreshCached();
  }
};

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

$('composer').onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || !model) return;
  $('prompt').value = '';
  bubble('user', text);
  history.push({ role: 'user', content: text });
  const out = bubble('assistant running', '');
  const options = { maxTokens: Number($('max-tokens').value) || 128, temperature: Number($('temperature').value) };
  setBusy(false, true);
  let reply = '';
  try {
    const stream = model.info.model.chatTemplate ? model.chat(history, options) : model.generate(text, options);
    for await (const piece of stream) {
      reply += piece;
      out.textContent = reply;
      out.scrollIntoView({ block: 'end' });
    }
    const s = model.lastStats;
    $('speed').textContent = `${s.tokens.length} tokens · first token ${s.timeToFirstTokenMs.toFixed(0)} ms · ${s.decodeTokensPerS.toPrecision(2)} tok/s · stop: ${s.stop}`;
    history.push({ role: 'assistant', content: reply.trim() });
  } catch (e) {
    out.classList.add('error');
    out.textContent = e.message;
    history.pop();
  } finally {
    out.classList.remove('running');
    out.dataset.done = '1';
    setBusy(false, false);
  }
};

$('prompt').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
};
$('stop').onclick = () => model?.abort();
setBusy(false, false);
refreshCached();
