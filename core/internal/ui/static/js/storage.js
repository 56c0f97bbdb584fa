// The object viewer: GET /api/storage/{path} with the API key, shown in a side panel (a plain
// link could not carry the Authorization header). JSON is pretty-printed, text shown as is,
// binary offered as a download.

import { get } from './api.js';
import { h, replace, encodePath, message, fmtBytes } from './dom.js';

let panel = null;
let objectURL = null;

function ensurePanel() {
  if (panel) return panel;
  panel = h('aside', { class: 'drawer', testid: 'storage-panel', hidden: true, 'aria-label': 'Stored object' });
  document.body.appendChild(panel);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !panel.hidden) closeObject();
  });
  return panel;
}

// closeObject hides the viewer.
export function closeObject() {
  if (!panel) return;
  panel.hidden = true;
  if (objectURL) URL.revokeObjectURL(objectURL);
  objectURL = null;
}

// openObject fetches the object at path and shows it.
export async function openObject(path, title) {
  const p = ensurePanel();
  const head = h('div', { class: 'drawer-head' },
    h('h2', {}, title || 'Stored object'),
    h('button', { type: 'button', class: 'link-button', testid: 'storage-close', onclick: closeObject }, 'Close'));
  const body = h('div', { class: 'drawer-body', testid: 'storage-body' }, h('p', { class: 'muted' }, 'Loading ' + path + '…'));
  replace(p, head, body);
  p.hidden = false;
  p.dataset.path = path;
  try {
    const obj = await get('/api/storage/' + encodePath(path));
    if (p.dataset.path !== path) return;
    const meta = h('dl', { class: 'meta', testid: 'storage-meta' },
      h('dt', {}, 'Path'), h('dd', { class: 'mono', testid: 'storage-path' }, obj.path),
      h('dt', {}, 'Backend'), h('dd', {}, obj.backend),
      h('dt', {}, 'Type'), h('dd', {}, obj.contentType + ' (' + obj.encoding + ')'),
      h('dt', {}, 'Size'), h('dd', {}, fmtBytes(obj.size)));
    let content;
    if (obj.encoding === 'base64') {
      const bin = atob(obj.content || '');
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      if (objectURL) URL.revokeObjectURL(objectURL);
      objectURL = URL.createObjectURL(new Blob([bytes], { type: obj.contentType || 'application/octet-stream' }));
      const name = String(obj.path).split('/').pop() || 'object';
      content = h('p', {}, 'Binary content. ',
        h('a', { href: objectURL, download: name, testid: 'storage-download', class: 'button' }, 'Download ' + name));
    } else {
      const text = obj.encoding === 'json' ? JSON.stringify(obj.content, null, 2) : String(obj.content);
      content = h('pre', { class: 'code', testid: 'storage-content', dataset: { encoding: obj.encoding } }, text);
    }
    replace(body, meta, content);
  } catch (err) {
    if (p.dataset.path !== path) return;
    replace(body, message('error', 'Could not read ' + path + ': ' + err.message, 'storage-error'));
  }
}

// objectButton is a button that opens path in the viewer.
export function objectButton(label, path, testid) {
  return h('button', {
    type: 'button', class: 'chip', testid: testid || 'open-object', dataset: { path }, title: path,
    onclick: () => openObject(path, label),
  }, label);
}
