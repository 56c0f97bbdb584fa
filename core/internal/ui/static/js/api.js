// The API client: every call carries the stored API key; a 401 asks for a key (once for all
// the calls waiting on it), stores it and retries.

const KEY_STORAGE = 'pipeweave.apiKey';

// ApiError is an error answer of the API: {error, code, details} with its HTTP status.
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || 'HTTP ' + status);
    this.status = status;
    this.code = (body && body.code) || 'HTTP_' + status;
    this.details = body ? body.details : undefined;
    this.body = body;
  }
}

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage disabled: the key lives as long as the page.
  }
  memoryKey = key;
  updateForgetButton();
}

let memoryKey = storedKey();
let pendingPrompt = null;

// A login URL (`pipeweave dev` prints http://127.0.0.1:3000/ui/#key=<key>, as Jupyter does with
// its token) carries the key in the fragment, which the browser never sends to a server: store
// it and take it out of the address bar and the history at once.
function keyFromHash() {
  const m = /^#key=([^&]*)/.exec(location.hash);
  if (!m) return;
  let key = '';
  try {
    key = decodeURIComponent(m[1]).trim();
  } catch {
    // A malformed escape: ignore the key.
  }
  history.replaceState(history.state, '', location.pathname + location.search);
  if (key) storeKey(key);
}
keyFromHash();

function updateForgetButton() {
  const b = document.querySelector('[data-testid="forget-key"]');
  if (b) b.hidden = !memoryKey;
}

// forgetKey removes the stored key; the next call that needs one asks again.
export function forgetKey() {
  storeKey('');
}

// askForKey shows the key form and resolves with what the user enters. Concurrent callers
// share one prompt. refused says the previous key was not accepted.
function askForKey(refused) {
  if (pendingPrompt) return pendingPrompt;
  const box = document.getElementById('key-prompt');
  const form = box.querySelector('form');
  const input = box.querySelector('input');
  const err = box.querySelector('[data-testid="key-error"]');
  err.hidden = !refused;
  err.textContent = refused ? 'That key was refused (401). Check it and try again.' : '';
  input.value = '';
  box.hidden = false;
  input.focus();
  pendingPrompt = new Promise((resolve) => {
    const onSubmit = (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      form.removeEventListener('submit', onSubmit);
      box.hidden = true;
      pendingPrompt = null;
      resolve(key);
    };
    form.addEventListener('submit', onSubmit);
  });
  return pendingPrompt;
}

// request calls the API and returns the decoded JSON body; error answers throw ApiError. A
// FormData body is sent as multipart/form-data (the browser sets the boundary); any other
// body as JSON.
export async function request(method, path, body) {
  for (;;) {
    const key = memoryKey;
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = 'Bearer ' + key;
    const init = { method, headers, cache: 'no-store' };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    } else if (method !== 'GET' && method !== 'HEAD') {
      // The orchestrator refuses a mutating request that is not JSON (415), even an empty one.
      headers['Content-Type'] = 'application/json';
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      // Another call may have stored a new key meanwhile: retry with it first.
      if (memoryKey && memoryKey !== key) continue;
      const refused = Boolean(key);
      if (refused) storeKey('');
      storeKey(await askForKey(refused));
      continue;
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text.slice(0, 500), code: 'HTTP_' + resp.status };
      }
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);

// uploadTemp stores a file as a temporary upload (POST /api/upload/temp, field "file") and
// returns {uploadId, storagePath, filename, size, mimeType, expiresAt}.
export function uploadTemp(file) {
  const form = new FormData();
  form.append('file', file, file.name);
  return request('POST', '/api/upload/temp', form);
}

// query builds "?a=1&b=2" from the non-empty values of params.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}

export function initKeyControls(onForget) {
  updateForgetButton();
  const b = document.querySelector('[data-testid="forget-key"]');
  b.addEventListener('click', () => {
    forgetKey();
    onForget();
  });
}
