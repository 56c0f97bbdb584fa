// Small DOM helpers. Every piece of text from the server goes through textContent or
// setAttribute, never through innerHTML, so it cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

// append adds children (nodes, strings, numbers, arrays; null and false are skipped).
function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// setAttrs applies attributes: on* functions become listeners, "testid" becomes data-testid,
// "dataset" an object of data-* values, false/null attributes are left out.
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'testid') {
      el.setAttribute('data-testid', v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== null && dv !== undefined) el.dataset[dk] = dv;
    } else if (k === 'value' && 'value' in el) {
      el.value = v;
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
}

// h creates an HTML element: h('a', {href: '#/'}, 'text', child).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s creates an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// encodePath encodes each segment of a storage path for a URL.
export function encodePath(path) {
  return String(path).split('/').map(encodeURIComponent).join('/');
}

// fmtTime formats an RFC 3339 time for people, or '—'.
export function fmtTime(v) {
  if (!v) return '—';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// fmtAgo formats how long ago a time was: "3 s ago", "5 min ago".
export function fmtAgo(v) {
  if (!v) return '—';
  const ms = Date.now() - new Date(v).getTime();
  if (Number.isNaN(ms)) return String(v);
  if (ms < 0) return 'in ' + fmtDuration(-ms);
  return fmtDuration(ms) + ' ago';
}

// fmtDuration formats milliseconds: "850 ms", "12.3 s", "4 min 2 s", "2 h 5 min".
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 3600000) return Math.floor(ms / 60000) + ' min ' + Math.floor((ms % 60000) / 1000) + ' s';
  return Math.floor(ms / 3600000) + ' h ' + Math.floor((ms % 3600000) / 60000) + ' min';
}

// fmtBytes formats a size in bytes: "512 B", "3.4 KiB", "12.0 MiB".
export function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' MiB';
  return (n / 1024 / 1024 / 1024).toFixed(1) + ' GiB';
}

// badge is a coloured state label.
export function badge(state, testid) {
  return h('span', { class: 'badge state-' + String(state).replace(/[^a-z-]/g, ''), testid: testid || 'state-badge', dataset: { state } }, state);
}

// runLink links to a pipeline run's detail page.
export function runLink(id, testid) {
  return h('a', { href: '#/runs/' + encodeURIComponent(id), testid: testid || 'run-link', class: 'mono' }, id);
}

// message is a status line: kind is "ok", "error" or "info".
export function message(kind, text, testid) {
  return h('div', { class: 'message message-' + kind, testid: testid || 'message', role: kind === 'error' ? 'alert' : 'status' }, text);
}

// table builds a table from header labels and rows (arrays of cells or <tr> elements).
export function table(headers, rows, attrs) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows)));
}

// empty is a placeholder row or block for an empty listing.
export function empty(text, testid) {
  return h('p', { class: 'empty', testid: testid || 'empty' }, text);
}
