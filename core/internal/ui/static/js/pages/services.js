// Services: registered worker services, a service's tasks and a task's code history.

import { get } from '../api.js';
import { h, replace, badge, fmtTime, fmtAgo, table, empty, message } from '../dom.js';

const short = (hash) => (hash && hash.length > 12 ? hash.slice(0, 12) + '…' : hash || '');

export function mount(ctx) {
  const { id, task } = ctx.params;
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const tasks = h('section', { class: 'card', testid: 'service-tasks', hidden: !id });
  const history = h('section', { class: 'card', testid: 'task-history', hidden: !task });
  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Services'), h('p', { class: 'muted' }, 'Worker services, their tasks and each task’s code versions.')),
    h('section', { class: 'card' }, list), tasks, history);

  ctx.every(0, async () => {
    const ss = await get('/api/services');
    if (ctx.stopped) return false;
    replace(list, ss.length
      ? table(['Service', 'Version', 'Base URL', 'Tasks', 'Registered', 'Updated'], ss.map((sv) => h('tr', { testid: 'service-row', class: sv.id === id ? 'selected' : '', dataset: { serviceId: sv.id } },
        h('td', {}, h('a', { href: '#/services/' + encodeURIComponent(sv.id), testid: 'service-link' }, sv.id)),
        h('td', { class: 'mono' }, sv.version),
        h('td', { class: 'mono small' }, sv.baseUrl),
        h('td', {}, String((sv.tasks || []).length)),
        h('td', { title: fmtTime(sv.registeredAt) }, fmtAgo(sv.registeredAt)),
        h('td', { title: fmtTime(sv.updatedAt) }, fmtAgo(sv.updatedAt)))), { testid: 'services-table' })
      : empty('No services registered yet.', 'services-empty'));
    return false;
  });

  if (id) {
    get('/api/services/' + encodeURIComponent(id) + '/tasks').then((ts) => {
      if (ctx.stopped) return;
      replace(tasks, h('h2', {}, 'Tasks of ', h('span', { class: 'mono' }, id)), ts.length
        ? table(['Task', 'Code', 'Next', 'Retries', 'Timeout', 'Heartbeat', 'Concurrency', 'Priority', ''], ts.map((t) => h('tr', { testid: 'service-task-row', class: t.id === task ? 'selected' : '', dataset: { task: t.id } },
          h('td', { class: 'mono' }, t.id, t.removedInVersion ? h('div', {}, badge('removed in ' + t.removedInVersion, 'task-removed')) : null,
            t.pausedAt ? h('div', { title: 'paused since ' + fmtTime(t.pausedAt) + ': its runs wait until it is resumed' }, badge('paused', 'task-paused')) : null,
            t.description ? h('div', { class: 'muted small' }, t.description) : null),
          h('td', {}, 'v' + t.codeVersion + ' ', h('span', { class: 'mono muted small', title: t.codeHash }, short(t.codeHash))),
          h('td', { class: 'mono small' }, (t.allowedNext || []).join(', ') || '—'),
          h('td', {}, t.retries + ' · ' + t.retryBackoff),
          h('td', {}, t.timeout + ' s'),
          h('td', {}, t.heartbeatIntervalMs / 1000 + ' s'),
          h('td', {}, t.concurrency ? String(t.concurrency) : 'unlimited'),
          h('td', {}, String(t.priority)),
          h('td', {}, h('a', { href: '#/services/' + encodeURIComponent(id) + '/' + encodeURIComponent(t.id), testid: 'task-history-link', dataset: { task: t.id } }, 'Code history')))), { testid: 'service-tasks-table' })
        : empty('This service has no tasks.'));
    }).catch((err) => replace(tasks, message('error', err.message, 'service-tasks-error')));
  }

  if (task) {
    get('/api/tasks/' + encodeURIComponent(task) + '/history').then((hs) => {
      if (ctx.stopped) return;
      replace(history, h('h2', {}, 'Code history of ', h('span', { class: 'mono' }, task)), hs.length
        ? table(['Version', 'Code hash', 'Service version', 'Recorded'], hs.map((x) => h('tr', { testid: 'history-row', dataset: { version: String(x.codeVersion) } },
          h('td', {}, 'v' + x.codeVersion), h('td', { class: 'mono small' }, x.codeHash), h('td', { class: 'mono' }, x.serviceVersion),
          h('td', {}, fmtTime(x.recordedAt)))), { testid: 'history-table' })
        : empty('No history.'));
    }).catch((err) => replace(history, message('error', err.message, 'task-history-error')));
  }
}
