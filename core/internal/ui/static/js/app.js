// The dashboard's entry point: a hash router (#/runs/ID …) that mounts one page at a time and
// stops the page's refresh timers when another page is shown.

import { initKeyControls } from './api.js';
import { startMaintenanceBanner, refreshMaintenance } from './maintenance.js';
import { h, replace, message } from './dom.js';
import * as overview from './pages/overview.js';
import * as pipelines from './pages/pipelines.js';
import * as run from './pages/run.js';
import * as taskrun from './pages/taskrun.js';
import * as dlq from './pages/dlq.js';
import * as services from './pages/services.js';
import * as schedules from './pages/schedules.js';
import * as webhooks from './pages/webhooks.js';

// routes: [pattern, page, nav]; :name captures one path segment.
const routes = [
  ['/', overview, 'overview'],
  ['/pipelines', pipelines, 'pipelines'],
  ['/pipelines/:id', pipelines, 'pipelines'],
  ['/runs/:id', run, 'pipelines'],
  ['/task-runs/:id', taskrun, 'pipelines'],
  ['/schedules', schedules, 'schedules'],
  ['/schedules/:id', schedules, 'schedules'],
  ['/dlq', dlq, 'dlq'],
  ['/services', services, 'services'],
  ['/services/:id', services, 'services'],
  ['/services/:id/:task', services, 'services'],
  ['/webhooks', webhooks, 'webhooks'],
];

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, page, nav] of routes) {
    const want = pattern.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((w, i) => {
      if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(parts[i]);
      else if (w !== parts[i]) ok = false;
    });
    if (ok) return { page, nav, params };
  }
  return null;
}

// Ctx is what a page gets: where to draw, the route's parameters, and timers that stop when
// the page is left.
class Ctx {
  constructor(view, params, query) {
    this.view = view;
    this.params = params;
    this.query = query;
    this.stopped = false;
    this.timers = new Set();
  }

  // every runs fn now and then again interval ms after each run ends, while fn returns true
  // and the page is shown. An error is shown in the page's error slot and polling goes on.
  every(interval, fn) {
    const tick = async () => {
      if (this.stopped) return;
      let again = true;
      try {
        again = await fn();
        this.clearError();
      } catch (err) {
        this.showError(err);
      }
      setLive(this.liveCount());
      if (!this.stopped && again !== false) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          tick();
        }, interval);
        this.timers.add(t);
        this.live = interval;
      } else {
        this.live = 0;
      }
      setLive(this.liveCount());
    };
    tick();
  }

  liveCount() {
    return this.stopped ? 0 : this.live || 0;
  }

  errorSlot() {
    let slot = this.view.querySelector('[data-testid="page-error"]');
    if (!slot) {
      slot = h('div', { testid: 'page-error', class: 'page-error' });
      this.view.prepend(slot);
    }
    return slot;
  }

  showError(err) {
    if (this.stopped) return;
    replace(this.errorSlot(), message('error', (err && err.message) || String(err), 'page-error-message'));
  }

  clearError() {
    const slot = this.view.querySelector('[data-testid="page-error"]');
    if (slot) slot.replaceChildren();
  }

  stop() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

function setLive(interval) {
  const el = document.querySelector('[data-testid="refresh-state"]');
  if (!el) return;
  el.hidden = !interval;
  el.textContent = interval ? 'live · every ' + (interval >= 1000 ? interval / 1000 + ' s' : interval + ' ms') : '';
}

let current = null;

function show() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const m = match(path);
  if (current) current.stop();
  setLive(0);
  const view = document.getElementById('view');
  view.replaceChildren();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', Boolean(m && a.dataset.nav === m.nav));
  if (!m) {
    view.appendChild(h('section', { class: 'card' }, h('h1', {}, 'Not found'),
      h('p', { testid: 'not-found' }, 'No page at ' + path + '. '), h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  current = new Ctx(view, m.params, new URLSearchParams(qs || ''));
  try {
    m.page.mount(current);
  } catch (err) {
    current.showError(err);
  }
  view.focus({ preventScroll: true });
}

initKeyControls(() => show());
window.addEventListener('hashchange', () => {
  show();
  refreshMaintenance();
});
show();
startMaintenanceBanner();
