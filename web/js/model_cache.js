// Model bytes for the engine, as a Blob that is never copied whole into the wasm heap:
// the engine reads it slice by slice. URLs are downloaded once into the Origin Private
// File System (OPFS) and resumed with HTTP range requests when a download is cut; where
// OPFS is missing the Cache API holds them, and failing that the Blob lives in memory.

const DIR = 'strata-models';
const RETRIES = 3;

async function modelsDir() {
  if (!navigator.storage?.getDirectory) return null;
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(DIR, { create: true });
  } catch {
    return null; // e.g. private browsing
  }
}

/** A file name for a URL: its SHA-256 (URLs are long and hold any character). */
async function keyOf(url) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function baseName(url) {
  try {
    return decodeURIComponent(new URL(url, self.location.href).pathname.split('/').pop()) || 'model.gguf';
  } catch {
    return 'model.gguf';
  }
}

async function readMeta(dir, key) {
  try {
    const f = await (await dir.getFileHandle(key + '.json')).getFile();
    return JSON.parse(await f.text());
  } catch {
    return null;
  }
}

async function writeMeta(dir, key, meta) {
  const h = await dir.getFileHandle(key + '.json', { create: true });
  const w = await h.createWritable();
  await w.write(JSON.stringify(meta));
  await w.close();
}

function mib(n) {
  return (n / 1048576).toFixed(1) + ' MiB';
}

/** Throws a clear error when the origin's storage quota cannot hold `need` more bytes. */
async function checkQuota(need) {
  const est = await navigator.storage?.estimate?.();
  if (est && est.quota !== undefined && est.usage !== undefined && est.quota - est.usage < need) {
    throw new Error(`storage quota exceeded: the download needs ${mib(need)}, this origin has ${mib(est.quota - est.usage)} of ${mib(est.quota)} left (free space, or load without caching: {cache: false})`);
  }
}

function quotaError(e, need) {
  if (e?.name === 'QuotaExceededError') {
    return new Error(`storage quota exceeded while saving the model (${mib(need)} still to write): ${e.message}`);
  }
  return e;
}

/** Total size from a 206's Content-Range ("bytes a-b/total") or a 200's Content-Length. */
function totalOf(resp, have) {
  const range = resp.headers.get('Content-Range');
  if (range) {
    const total = Number(range.split('/').pop());
    if (Number.isFinite(total)) return total;
  }
  const len = Number(resp.headers.get('Content-Length'));
  return Number.isFinite(len) && resp.headers.get('Content-Length') !== null ? have + len : NaN;
}

/** One download attempt into the OPFS file, from the bytes it already holds. */
async function downloadInto(url, handle, meta, onProgress) {
  const have = (await handle.getFile()).size;
  const headers = {};
  if (have > 0) {
    headers.Range = `bytes=${have}-`;
    if (meta.etag) headers['If-Range'] = meta.etag;
  }
  const resp = await fetch(url, { headers });
  if (!resp.ok) throw new Error(`downloading ${url}: HTTP ${resp.status} ${resp.statusText}`);
  // 206: the rest of the same file. 200: the server sent it all (no range support, or
  // the file changed): start over.
  let at = resp.status === 206 ? have : 0;
  const total = totalOf(resp, at);
  meta.total = total;
  meta.etag = resp.headers.get('ETag') || meta.etag || null;
  if (Number.isFinite(total)) await checkQuota(total - at);
  const access = await handle.createSyncAccessHandle();
  try {
    access.truncate(at);
    const reader = resp.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      try {
        access.write(value, { at });
      } catch (e) {
        throw quotaError(e, (total || at) - at);
      }
      at += value.byteLength;
      onProgress({ loaded: at, total: Number.isFinite(total) ? total : at, phase: 'download' });
    }
    access.flush();
  } finally {
    access.close();
  }
  if (Number.isFinite(total) && at !== total) throw new Error(`downloading ${url}: got ${at} of ${total} bytes`);
  meta.total = at;
  meta.complete = true;
}

/**
 * The model at `url` as a Blob (a File in OPFS), downloading or resuming as needed.
 * `onProgress({loaded, total, phase: 'download' | 'cached'})`.
 */
async function cachedInOpfs(dir, url, onProgress) {
  const key = await keyOf(url);
  const handle = await dir.getFileHandle(key, { create: true });
  const meta = (await readMeta(dir, key)) || { url, total: null, etag: null, complete: false };
  let file = await handle.getFile();
  if (meta.complete && file.size === meta.total) {
    onProgress({ loaded: file.size, total: file.size, phase: 'cached' });
    return file;
  }
  let lastError;
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    try {
      await downloadInto(url, handle, meta, onProgress);
      await writeMeta(dir, key, meta);
      return await handle.getFile();
    } catch (e) {
      lastError = e;
      await writeMeta(dir, key, meta).catch(() => {});
      // Only a cut connection is worth retrying (the next attempt resumes).
      if (!(e instanceof TypeError) && !/got \d+ of \d+ bytes/.test(e.message)) break;
    }
  }
  throw lastError;
}

async function cachedInCacheApi(url, onProgress) {
  const cache = await caches.open(DIR);
  let resp = await cache.match(url);
  if (!resp) {
    const blob = await fetchBlob(url, onProgress);
    try {
      await cache.put(url, new Response(blob));
    } catch (e) {
      throw quotaError(e, blob.size);
    }
    return blob;
  }
  const blob = await resp.blob();
  onProgress({ loaded: blob.size, total: blob.size, phase: 'cached' });
  return blob;
}

async function fetchBlob(url, onProgress) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`downloading ${url}: HTTP ${resp.status} ${resp.statusText}`);
  const total = Number(resp.headers.get('Content-Length')) || 0;
  const reader = resp.body.getReader();
  const parts = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.byteLength;
    onProgress({ loaded, total: total || loaded, phase: 'download' });
  }
  return new Blob(parts);
}

/**
 * The model bytes for `source` (a URL string or URL, a Blob/File, an ArrayBuffer or a typed
 * array) as `{blob, name, cached}`. `cache: false` skips OPFS / the Cache API.
 */
export async function openModel(source, { cache = true, onProgress = () => {} } = {}) {
  if (source instanceof Blob) return { blob: source, name: source.name || 'model.gguf', cached: false };
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return { blob: new Blob([source]), name: 'model.gguf', cached: false };
  const url = new URL(String(source), self.location.href).href;
  if (cache) {
    const dir = await modelsDir();
    if (dir && typeof FileSystemFileHandle !== 'undefined' && 'createSyncAccessHandle' in FileSystemFileHandle.prototype) {
      return { blob: await cachedInOpfs(dir, url, onProgress), name: baseName(url), cached: true };
    }
    if (self.caches) return { blob: await cachedInCacheApi(url, onProgress), name: baseName(url), cached: true };
  }
  return { blob: await fetchBlob(url, onProgress), name: baseName(url), cached: false };
}

/** Models downloaded into OPFS: `[{url, bytes, complete}]`. */
export async function cachedModels() {
  const dir = await modelsDir();
  if (!dir) return [];
  const out = [];
  for await (const [name] of dir.entries()) {
    if (!name.endsWith('.json')) continue;
    const meta = await readMeta(dir, name.slice(0, -5));
    if (meta) out.push({ url: meta.url, bytes: meta.total, complete: !!meta.complete });
  }
  return out;
}

/** Removes a downloaded model (and a partial download) from OPFS. */
export async function deleteCachedModel(url) {
  const dir = await modelsDir();
  if (!dir) return;
  const key = await keyOf(new URL(String(url), self.location.href).href);
  for (const name of [key, key + '.json']) await dir.removeEntry(name).catch(() => {});
}
