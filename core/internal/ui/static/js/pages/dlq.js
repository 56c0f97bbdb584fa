// Dead letters: filter by task, pipeline and state; show an entry's attempts; retry one, or
// every open entry matching the filter.

import { get, post, query } from '../api.js';
import { h, replace, badge, message, fmtTime, fmtAgo, runLink, table, empty } from '../dom.js';
import { objectButton } from '../storage.js';

function errorText(err) {
  return (err.code ? err.code + ': ' : '') + err.message;
}

// confirmBar asks before an action: resolves true on "yes".
function confirmBar(slot, text) {
  return new Promise((resolve) => {
    const done = (v) => {
      slot.replaceChildren();
      resolve(v);
    };
    replace(slot, h('div', { class: 'confirm', testid: 'confirm-bar', role: 'alertdialog' },
      h('span', {}, text),
      h('button', { type: 'button', class: 'primary', testid: 'confirm-yes', onclick: () => done(true) }, 'Yes, retry'),
      h('button', { type: 'button', testid: 'confirm-no', onclick: () => done(false) }, 'No')));
  });
}

export function mount(ctx) {
  const f = { taskId: ctx.query.get('taskId') || '', pipelineId: ctx.query.get('pipelineId') || '', state: ctx.query.has('state') ? ctx.query.get('state') : 'open' };
  const taskIn = h('input', { id: 'dlq-task', testid: 'dlq-filter-task', value: f.taskId, placeholder: 'any task' });
  const pipeIn = h('input', { id: 'dlq-pipeline', testid: 'dlq-filter-pipeline', value: f.pipelineId, placeholder: 'any pipeline' });
  const stateIn = h('select', { id: 'dlq-state', testid: 'dlq-filter-state' },
    [['open', 'open (not retried)'], ['retried', 'retried'], ['', 'all']].map(([v, l]) => h('option', { value: v, selected: v === f.state }, l)));
  const filter = h('form', { class: 'filters', testid: 'dlq-filter' },
    h('div', {}, h('label', { for: 'dlq-task' }, 'Task'), taskIn),
    h('div', {}, h('label', { for: 'dlq-pipeline' }, 'Pipeline'), pipeIn),
    h('div', {}, h('label', { for: 'dlq-state' }, 'State'), stateIn),
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'primary', testid: 'dlq-apply' }, 'Apply')));
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = query({ taskId: taskIn.value.trim(), pipelineId: pipeIn.value.trim() });
    const state = stateIn.value;
    location.hash = '#/dlq' + (q ? q + '&' : '?') + 'state=' + encodeURIComponent(state);
  });

  const confirmSlot = h('div', {});
  const msg = h('div', { testid: 'dlq-message', class: 'dlq-message', 'aria-live': 'polite' });
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const detail = h('section', { class: 'card', testid: 'dlq-detail', hidden: true });
  const retryAll = h('button', { type: 'button', testid: 'dlq-retry-all' }, 'Retry all matching');
  const more = h('button', { type: 'button', testid: 'dlq-more', hidden: true }, 'Load more');
  let items = [];
  let cursor = '';
  let shown = '';

  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letter queue'),
      h('p', { class: 'muted' }, 'Task runs that failed for good, with every attempt’s error. A retry queues a new run with the same input at the task’s current code version; in a pipeline run it takes the failed task’s place and the run continues.')),
    h('section', { class: 'card' }, filter, h('div', { class: 'actions' }, retryAll), confirmSlot, msg),
    detail,
    h('section', { class: 'card' }, list, h('div', { class: 'actions' }, more)));

  const listParams = () => ({ taskId: f.taskId, pipelineId: f.pipelineId, state: f.state, limit: 50 });

  async function load(append) {
    const page = await get('/api/dlq' + query({ ...listParams(), cursor: append ? cursor : '' }));
    if (ctx.stopped) return;
    items = append ? items.concat(page.items || []) : page.items || [];
    cursor = page.nextCursor || '';
    more.hidden = !cursor;
    draw();
  }

  function draw() {
    replace(list, items.length
      ? table(['Failed', 'Task', 'Pipeline run', 'Error', 'Attempts', 'Code', 'State', ''],
        items.map((e) => h('tr', { testid: 'dlq-row', class: shown === e.id ? 'selected' : '', dataset: { dlqId: e.id, task: e.taskId, runId: e.pipelineRunId || '', state: e.retriedAt ? 'retried' : 'open' } },
          h('td', { title: fmtTime(e.failedAt) }, fmtAgo(e.failedAt)),
          h('td', { class: 'mono' }, e.taskId),
          h('td', {}, e.pipelineRunId ? [runLink(e.pipelineRunId, 'dlq-run-link'), h('div', { class: 'muted small' }, e.pipelineId || '')] : h('span', { class: 'muted' }, 'standalone')),
          h('td', { class: 'error-cell' }, h('span', { class: 'mono' }, e.errorCode || ''), ' ', e.error),
          h('td', {}, String(e.attempts)),
          h('td', {}, 'v' + e.codeVersion),
          h('td', {}, e.retriedAt
            ? h('span', {}, badge('retried', 'dlq-state'), h('div', { class: 'muted small mono' }, '→ ' + (e.retryRunId || '')))
            : badge('open', 'dlq-state')),
          h('td', {}, h('div', { class: 'row-actions' },
            h('button', { type: 'button', class: 'link-button', testid: 'dlq-show', onclick: () => show(e.id) }, 'Attempts'),
            e.retriedAt ? null : h('button', { type: 'button', testid: 'dlq-retry', onclick: () => retryOne(e) }, 'Retry'))))),
        { testid: 'dlq-table' })
      : empty('No dead-letter entries match.', 'dlq-empty'));
  }

  async function show(id) {
    shown = id;
    draw();
    detail.hidden = false;
    replace(detail, h('p', { class: 'muted' }, 'Loading…'));
    try {
      const e = await get('/api/dlq/' + encodeURIComponent(id));
      if (ctx.stopped || shown !== id) return;
      replace(detail,
        h('div', { class: 'card-head' }, h('h2', {}, 'Entry ', h('span', { class: 'mono', testid: 'dlq-detail-id' }, e.id)),
          h('button', { type: 'button', class: 'link-button', testid: 'dlq-detail-close', onclick: () => { shown = ''; detail.hidden = true; draw(); } }, 'Close')),
        h('dl', { class: 'meta' },
          h('dt', {}, 'Task'), h('dd', { class: 'mono' }, e.taskId + ' (v' + e.codeVersion + ', ' + (e.codeHash || '') + ')'),
          h('dt', {}, 'Task run'), h('dd', { class: 'mono' }, e.taskRunId),
          e.pipelineRunId ? [h('dt', {}, 'Pipeline run'), h('dd', {}, runLink(e.pipelineRunId), ' ', h('span', { class: 'muted' }, e.pipelineId || ''))] : null,
          h('dt', {}, 'Failed'), h('dd', {}, fmtTime(e.failedAt)),
          h('dt', {}, 'Final error'), h('dd', { class: 'error-text', testid: 'dlq-detail-error' }, (e.errorCode ? e.errorCode + ': ' : '') + e.error),
          h('dt', {}, 'Input'), h('dd', {}, objectButton(e.inputPath, e.inputPath, 'dlq-open-input')),
          e.retriedAt ? [h('dt', {}, 'Retried'), h('dd', {}, fmtTime(e.retriedAt) + ' as ', h('span', { class: 'mono' }, e.retryRunId || ''))] : null),
        h('h3', {}, 'Attempts'),
        table(['Attempt', 'Code', 'Error', 'At'], (e.attemptHistory || []).map((a) => h('tr', { testid: 'dlq-attempt-row', dataset: { attempt: String(a.attempt) } },
          h('td', {}, String(a.attempt)), h('td', { class: 'mono' }, a.errorCode || ''),
          h('td', { class: 'error-cell', testid: 'dlq-attempt-error' }, a.error), h('td', {}, fmtTime(a.timestamp)))), { testid: 'dlq-attempts' }));
    } catch (err) {
      replace(detail, message('error', errorText(err), 'dlq-detail-error-message'));
    }
  }

  async function retryOne(e) {
    if (!(await confirmBar(confirmSlot, `Retry ${e.taskId} (${e.id})?`))) return;
    try {
      const res = await post('/api/dlq/' + encodeURIComponent(e.id) + '/retry');
      replace(msg, message('ok', `Retried ${e.taskId}: new task run ${res.newRunId}` + (e.pipelineRunId ? ` in pipeline run ${e.pipelineRunId}.` : '.'), 'dlq-retry-ok'),
        e.pipelineRunId ? h('p', {}, runLink(e.pipelineRunId, 'dlq-retried-run')) : null);
    } catch (err) {
      replace(msg, message('error', 'Retry of ' + e.id + ' failed: ' + errorText(err), 'dlq-retry-error'));
    }
    await load(false);
    if (shown === e.id) show(e.id);
  }

  retryAll.addEventListener('click', async () => {
    const scope = [f.taskId ? 'task ' + f.taskId : '', f.pipelineId ? 'pipeline ' + f.pipelineId : ''].filter(Boolean).join(' and ') || 'every task and pipeline';
    if (!(await confirmBar(confirmSlot, `Retry every open entry of ${scope}?`))) return;
    retryAll.disabled = true;
    let retried = 0;
    const failed = [];
    try {
      for (let round = 0; round < 100; round++) {
        const res = await post('/api/dlq/retry-all', { taskId: f.taskId, pipelineId: f.pipelineId });
        retried += res.retried || 0;
        failed.push(...(res.failed || []));
        replace(msg, message('info', `Retried ${retried} so far…`, 'dlq-retry-all-progress'));
        if (!res.more) break;
      }
      replace(msg, message(failed.length ? 'error' : 'ok', `Retried ${retried} ${retried === 1 ? 'entry' : 'entries'}` + (failed.length ? `; ${failed.length} could not be retried.` : '.'), 'dlq-retry-all-ok'),
        failed.length ? h('ul', { class: 'error-list', testid: 'dlq-retry-all-failed' }, failed.map((x) => h('li', {}, x.dlqId + ': ' + x.code + ' — ' + x.error))) : null);
    } catch (err) {
      replace(msg, message('error', `Retry all stopped after ${retried}: ` + errorText(err), 'dlq-retry-all-error'));
    } finally {
      retryAll.disabled = false;
    }
    await load(false);
  });

  more.addEventListener('click', () => load(true).catch((err) => ctx.showError(err)));
  ctx.every(0, async () => {
    await load(false);
    return false;
  });
}
