// Overview: queue statistics, recent pipeline runs and failing tasks, refreshed every 3 s.

import { get } from '../api.js';
import { h, replace, badge, runLink, fmtAgo, fmtDuration, fmtTime, table, empty } from '../dom.js';

const STATS = [
  ['pending', 'Pending'], ['dispatching', 'Dispatching'], ['running', 'Running'], ['waiting', 'Waiting'],
  ['completed', 'Completed'], ['failed', 'Failed'], ['cancelled', 'Cancelled'], ['skipped', 'Skipped'], ['dlq', 'Dead letters'],
];

// runDuration is how long a pipeline run took, or has been running.
export function runDuration(r) {
  const start = new Date(r.createdAt).getTime();
  const end = r.completedAt ? new Date(r.completedAt).getTime() : Date.now();
  return fmtDuration(end - start);
}

// runsTable lists pipeline runs.
export function runsTable(runs, testid) {
  if (!runs.length) return empty('No pipeline runs yet.', testid + '-empty');
  return table(['Run', 'Pipeline', 'Status', 'Started', 'Duration', 'Error'],
    runs.map((r) => h('tr', { testid: 'run-row', dataset: { runId: r.id, state: r.status } },
      h('td', {}, runLink(r.id)),
      h('td', {}, h('a', { href: '#/pipelines/' + encodeURIComponent(r.pipelineId) }, r.pipelineId)),
      h('td', {}, badge(r.status, 'run-row-status')),
      h('td', { title: fmtTime(r.createdAt) }, fmtAgo(r.createdAt)),
      h('td', {}, runDuration(r)),
      h('td', { class: 'error-cell' }, r.error || ''))),
    { testid });
}

export function mount(ctx) {
  const stats = h('div', { class: 'stats', testid: 'queue-stats' });
  const recent = h('div', {});
  const failing = h('div', {});
  const failedRuns = h('div', {});
  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), h('p', { class: 'muted' }, 'Queue, recent runs and failing tasks. Refreshes every 3 seconds.')),
    h('section', { class: 'card' }, h('h2', {}, 'Queue'), stats),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', {}, 'Failing tasks'), h('p', { class: 'muted small' }, 'Open dead-letter entries, by task.'), failing),
      h('section', { class: 'card' }, h('h2', {}, 'Recently failed runs'), failedRuns)),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Recent pipeline runs'), h('a', { href: '#/pipelines' }, 'Pipelines →')), recent),
  );

  ctx.every(3000, async () => {
    const [status, runs, dlq, failed] = await Promise.all([
      get('/api/queue/status'),
      get('/api/runs?limit=15'),
      get('/api/dlq?state=open&limit=500'),
      get('/api/runs?status=failed&limit=5'),
    ]);
    if (ctx.stopped) return false;
    replace(stats, STATS.map(([k, label]) => h('div', { class: 'stat stat-' + k, testid: 'stat-' + k },
      h('div', { class: 'stat-value', testid: 'stat-value' }, String(status[k] ?? 0)),
      h('div', { class: 'stat-label' }, label))),
    h('div', { class: 'stat stat-oldest', testid: 'stat-oldest' },
      h('div', { class: 'stat-value small-value' }, status.oldestPending ? fmtAgo(status.oldestPending) : '—'),
      h('div', { class: 'stat-label' }, 'Oldest pending')));

    replace(recent, runsTable(runs.items || [], 'recent-runs'));

    const groups = new Map();
    for (const e of dlq.items || []) {
      const g = groups.get(e.taskId) || { taskId: e.taskId, count: 0, last: e };
      g.count++;
      if (new Date(e.failedAt) > new Date(g.last.failedAt)) g.last = e;
      groups.set(e.taskId, g);
    }
    const rows = [...groups.values()].sort((a, b) => b.count - a.count || a.taskId.localeCompare(b.taskId));
    replace(failing, rows.length
      ? table(['Task', 'Open', 'Last failure', 'Last error'], rows.map((g) => h('tr', { testid: 'failing-task', dataset: { task: g.taskId } },
        h('td', {}, h('a', { href: '#/dlq?taskId=' + encodeURIComponent(g.taskId) + '&state=open' }, g.taskId)),
        h('td', { testid: 'failing-task-count' }, String(g.count)),
        h('td', { title: fmtTime(g.last.failedAt) }, fmtAgo(g.last.failedAt)),
        h('td', { class: 'error-cell' }, (g.last.errorCode ? g.last.errorCode + ': ' : '') + (g.last.error || '')))), { testid: 'failing-tasks' })
      : empty('Nothing in the dead letter queue.', 'failing-tasks-empty'));

    const fr = failed.items || [];
    replace(failedRuns, fr.length
      ? h('ul', { class: 'plain-list', testid: 'failed-runs' }, fr.map((r) => h('li', { testid: 'failed-run', dataset: { runId: r.id } },
        runLink(r.id), ' ', h('span', { class: 'muted' }, r.pipelineId + ' · ' + fmtAgo(r.completedAt || r.createdAt)),
        r.error ? h('div', { class: 'error-text small' }, r.error) : null)))
      : empty('No failed runs.', 'failed-runs-empty'));
    return true;
  });
}
