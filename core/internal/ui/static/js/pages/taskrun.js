// Task run detail (#/task-runs/ID): one task run, such as an item of a map node, with its
// state, code, progress, objects and attempts, linked to its pipeline run. Refreshes every
// second until the run has ended.

import { get } from '../api.js';
import { h, replace, badge, fmtTime, table } from '../dom.js';
import { attemptsOf, taskOutputs, progressCell, codeCell } from './run.js';

const FINAL = ['completed', 'failed', 'cancelled', 'skipped'];

export function mount(ctx) {
  const id = ctx.params.id;
  const head = h('div', { class: 'page-head' });
  const body = h('section', { class: 'card', testid: 'task-run-detail' }, h('p', { class: 'muted' }, 'Loading…'));
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Overview'));
  ctx.view.append(crumbs, head, body);
  let last = '';

  function draw(tr) {
    const now = Date.now();
    if (tr.pipelineRunId) {
      replace(crumbs, h('a', { href: '#/runs/' + encodeURIComponent(tr.pipelineRunId) + '?task=' + encodeURIComponent(tr.taskId), testid: 'task-run-pipeline' },
        '← Run ' + tr.pipelineRunId));
    }
    replace(head, h('h1', {}, 'Task run ', h('span', { class: 'mono', testid: 'task-run-id' }, tr.id), ' ', badge(tr.status, 'task-run-status')));
    const rows = attemptsOf(tr, now).map((a) => h('tr', { testid: 'attempt-row', dataset: { attempt: String(a.attempt), state: a.state } },
      h('td', {}, String(a.attempt)),
      h('td', {}, badge(a.state, 'attempt-state')),
      h('td', {}, fmtTime(a.started)),
      h('td', {}, a.ended ? fmtTime(a.ended) : a.current && ['dispatching', 'running'].includes(a.state) ? 'running…' : '—'),
      h('td', { class: 'mono' }, a.errorCode || ''),
      h('td', { class: 'error-cell', testid: 'attempt-error' }, a.error || '')));
    replace(body,
      h('dl', { class: 'meta' },
        h('dt', {}, 'Task'), h('dd', { class: 'mono', testid: 'task-run-task' }, tr.taskId),
        h('dt', {}, 'Pipeline run'), h('dd', { class: 'mono' }, tr.pipelineRunId || 'none (standalone)'),
        h('dt', {}, 'Code'), h('dd', {}, codeCell(tr)),
        h('dt', {}, 'Progress'), h('dd', {}, progressCell(tr)),
        h('dt', {}, 'Created'), h('dd', {}, fmtTime(tr.createdAt)),
        h('dt', {}, 'Objects'), h('dd', {}, taskOutputs(tr))),
      h('h3', {}, 'Attempts'),
      table(['Attempt', 'Result', 'Started', 'Ended', 'Code', 'Error'], rows, { testid: 'attempts-table' }));
  }

  ctx.every(1000, async () => {
    const tr = await get('/api/task-runs/' + encodeURIComponent(id));
    if (ctx.stopped) return false;
    const text = JSON.stringify(tr);
    if (text !== last || !FINAL.includes(tr.status)) draw(tr);
    last = text;
    return !FINAL.includes(tr.status);
  });
}
