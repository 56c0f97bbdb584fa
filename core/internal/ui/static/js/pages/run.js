// Run detail: the run's DAG coloured by task state, its tasks with progress, code changes,
// inputs and outputs, a timeline of attempts and each task's attempts with their errors.
// Refreshes every second while the run is running. The run is read without its map nodes'
// items (items=false): a map node shows its items counted by state, and its detail pages
// through them (GET /api/runs/{id}/maps/{task}/items), each linking to the item's task run.

import { get, post } from '../api.js';
import { h, replace, badge, message, fmtTime, fmtDuration, table, empty, runLink } from '../dom.js';
import { render as renderDAG, legend, mapDone } from '../dag.js';
import { objectButton } from '../storage.js';
import { runDuration } from './overview.js';

const ms = (t) => (t ? new Date(t).getTime() : null);

// attemptsOf lists a task run's attempts, oldest first: the earlier ones from previousAttempts
// (which record only when each ended) and the current one. A run that failed for good also
// lists its last attempt in previousAttempts; the current attempt stands for it.
export function attemptsOf(tr, now) {
  const out = [];
  const active = ['dispatching', 'running'].includes(tr.status);
  const final = ['completed', 'failed', 'cancelled', 'skipped'].includes(tr.status);
  const earlier = [...(tr.previousAttempts || [])]
    .filter((a) => !(final && a.attempt === tr.attempt))
    .sort((x, y) => x.attempt - y.attempt);
  for (const a of earlier) {
    const end = ms(a.timestamp);
    out.push({ attempt: a.attempt, state: 'failed', error: a.error, errorCode: a.errorCode, start: null, end, ended: a.timestamp });
  }
  const started = ms(tr.startedAt);
  out.push({
    attempt: tr.attempt, state: tr.status, current: true, error: tr.error, errorCode: tr.errorCode,
    start: started, end: ms(tr.completedAt) || (active ? now : started), started: tr.startedAt, ended: tr.completedAt,
  });
  return out;
}

function pct(v) {
  return Math.max(0, Math.min(100, v)).toFixed(3) + '%';
}

function timeline(run, tasks, now) {
  const t0 = ms(run.createdAt);
  let t1 = ms(run.completedAt) || now;
  const rows = tasks.map((tr) => ({ tr, attempts: attemptsOf(tr, now) }));
  for (const r of rows) for (const a of r.attempts) if (a.end && a.end > t1) t1 = a.end;
  const span = Math.max(t1 - t0, 1);
  const body = rows.map(({ tr, attempts }) => {
    const track = h('div', { class: 'tl-track' });
    for (const a of attempts) {
      if (a.start === null && a.end !== null && !a.current) {
        // An earlier attempt: only its end is known, so it is a mark where it failed.
        const mark = h('div', {
          class: 'tl-mark state-failed', testid: 'timeline-mark', dataset: { task: tr.taskId, attempt: String(a.attempt) },
          title: `${tr.taskId} · attempt ${a.attempt} failed at ${fmtTime(a.ended)}` + (a.error ? ' · ' + a.error : ''),
        }, '✕' + a.attempt);
        mark.style.left = pct(((a.end - t0) / span) * 100);
        track.appendChild(mark);
        continue;
      }
      if (a.start === null) continue;
      const bar = h('div', {
        class: 'tl-bar state-' + a.state, testid: 'timeline-bar',
        dataset: { task: tr.taskId, attempt: String(a.attempt), state: a.state },
        title: `${tr.taskId} · attempt ${a.attempt} · ${a.state}` + (a.end && a.start ? ' · ' + fmtDuration(a.end - a.start) : '') + (a.error ? ' · ' + a.error : ''),
      }, '#' + a.attempt);
      bar.style.left = pct(((a.start - t0) / span) * 100);
      bar.style.width = 'max(4px, ' + pct((((a.end || a.start) - a.start) / span) * 100) + ')';
      track.appendChild(bar);
    }
    return h('div', { class: 'tl-row' + (tr.supersededBy ? ' superseded' : ''), testid: 'timeline-row', dataset: { task: tr.taskId } },
      h('div', { class: 'tl-label', title: tr.id }, tr.taskId, tr.supersededBy ? h('span', { class: 'muted small' }, ' (replaced)') : null),
      track);
  });
  return h('div', { class: 'timeline', testid: 'timeline' },
    h('div', { class: 'tl-axis' }, h('span', {}, fmtTime(run.createdAt)), h('span', {}, fmtDuration(t1 - t0) + (run.completedAt ? '' : ' so far'))),
    body);
}

export function taskOutputs(tr) {
  const out = [];
  if (tr.inputPath) out.push(objectButton('input', tr.inputPath, 'open-input'));
  if (tr.outputPath) out.push(objectButton('output', tr.outputPath, 'open-output'));
  for (const [k, a] of Object.entries(tr.assets || {})) out.push(objectButton('asset: ' + k, a.path, 'open-asset'));
  if (tr.logsPath) out.push(objectButton('logs', tr.logsPath, 'open-logs'));
  return h('div', { class: 'chips' }, out);
}

export function progressCell(tr) {
  // A completed task is done whatever its worker last reported.
  const p = tr.status === 'completed' ? 100 : Math.max(0, Math.min(100, tr.progress || 0));
  const bar = h('div', { class: 'progress-fill' });
  bar.style.width = p + '%';
  return h('div', { class: 'progress', testid: 'task-progress', dataset: { progress: String(p) }, title: tr.progressMessage || '' },
    h('div', { class: 'progress-track' }, bar), h('span', { class: 'small' }, p + '%' + (tr.progressMessage ? ' · ' + tr.progressMessage : '')));
}

export function codeCell(tr) {
  return h('span', {}, 'v' + tr.codeVersion, ' ',
    tr.codeChanged ? h('span', { class: 'badge changed', testid: 'code-changed', dataset: { task: tr.taskId } }, 'changed from v' + tr.previousCodeVersion) : null);
}

// mapCounts shows a map node's items counted by state; with onFilter, each count is a button
// that lists the items in that state (filter names the one listed now).
function mapCounts(m, onFilter, filter) {
  const d = mapDone(m);
  const states = ['pending', 'dispatching', 'running', 'completed', 'failed', 'cancelled'];
  const chip = (st) => {
    const label = st + ' ' + ((m.counts || {})[st] || 0);
    if (!onFilter) return h('span', { class: 'badge state-' + st, testid: 'map-count', dataset: { state: st, count: String((m.counts || {})[st] || 0) } }, label);
    return h('button', {
      type: 'button', class: 'badge state-' + st + (filter === st ? ' selected' : ''), testid: 'map-count',
      dataset: { state: st, count: String((m.counts || {})[st] || 0) }, onclick: () => onFilter(filter === st ? '' : st),
    }, label);
  };
  return h('div', { class: 'map-counts', testid: 'map-counts', dataset: { task: m.taskId, total: d ? String(d.total) : '' } },
    h('span', { class: 'small' }, d ? d.total + ' items' : 'items unknown until ' + m.map.over + ' completes'),
    d ? states.filter((st) => onFilter || (m.counts || {})[st]).map(chip) : null);
}

// mapProgress is a map node's progress: the share of its items that ended.
function mapProgress(m) {
  const d = mapDone(m);
  const p = d && d.total ? Math.floor((d.done * 100) / d.total) : d ? 100 : 0;
  const bar = h('div', { class: 'progress-fill' });
  bar.style.width = p + '%';
  return h('div', { class: 'progress', testid: 'map-progress', dataset: { progress: String(p) } },
    h('div', { class: 'progress-track' }, bar), h('span', { class: 'small' }, d ? d.done + '/' + d.total + ' items ended' : 'no items yet'));
}

// mapDetail is a map node's detail: its declaration, its items counted by state and a page of
// its items (view: {status, page, cursors}), each linking to its task run.
function mapDetail(m, cur, view, on) {
  const page = view.page;
  const rows = page ? page.items.map((it) => h('tr', { testid: 'map-item-row', dataset: { index: String(it.itemIndex), state: it.status, runId: it.runId } },
    h('td', {}, String(it.itemIndex)),
    h('td', {}, h('a', { href: '#/task-runs/' + encodeURIComponent(it.runId), class: 'mono', testid: 'map-item-link' }, it.runId)),
    h('td', {}, badge(it.status, 'map-item-state')),
    h('td', {}, String(it.attempt)),
    h('td', {}, fmtTime(it.startedAt)),
    h('td', {}, fmtTime(it.completedAt)),
    h('td', { class: 'error-cell' }, it.error ? (it.errorCode ? it.errorCode + ': ' : '') + it.error : ''))) : [];
  return h('div', {},
    h('div', { class: 'card-head' }, h('h2', {}, 'Map node ', h('span', { class: 'mono' }, m.taskId)), badge(m.status, 'task-detail-status')),
    h('dl', { class: 'meta' },
      h('dt', {}, 'Items'), h('dd', {}, 'one task run per element of ', h('span', { class: 'mono' }, m.map.items || '(the whole output)'), ' in the output of ',
        h('span', { class: 'mono' }, m.map.over), ' (at most ' + m.map.maxItems + ')'),
      h('dt', {}, 'Map row'), h('dd', { class: 'mono' }, m.mapRunId),
      cur && cur.error ? h('dt', {}, 'Error') : null,
      cur && cur.error ? h('dd', { class: 'error-text', testid: 'map-error' }, (cur.errorCode ? cur.errorCode + ': ' : '') + cur.error) : null,
      // The map row never goes to a worker: it has no input of its own (its items have).
      cur ? h('dt', {}, 'Objects') : null, cur ? h('dd', {}, taskOutputs({ ...cur, inputPath: '' })) : null),
    mapCounts(m, on.filter, view.status),
    h('h3', {}, 'Items' + (view.status ? ' (' + view.status + ')' : '')),
    !page ? h('p', { class: 'muted' }, 'Loading…')
      : page.items.length ? table(['Item', 'Task run', 'State', 'Attempt', 'Started', 'Ended', 'Error'], rows, { testid: 'map-items-table' })
        : empty(view.status ? 'No item is ' + view.status + '.' : 'No items yet.', 'map-items-empty'),
    h('div', { class: 'actions' },
      view.cursors.length ? h('button', { type: 'button', class: 'link-button', testid: 'map-items-first', onclick: on.first }, '← First page') : null,
      page && page.nextCursor ? h('button', { type: 'button', class: 'link-button', testid: 'map-items-next', onclick: on.next }, 'Next page →') : null));
}

function taskDetail(taskId, all, now) {
  const runs = all.filter((t) => t.taskId === taskId);
  if (!runs.length) return empty('No task run for ' + taskId + '.', 'task-detail-empty');
  const rows = [];
  for (const tr of runs) {
    for (const a of attemptsOf(tr, now)) {
      rows.push(h('tr', { testid: 'attempt-row', dataset: { attempt: String(a.attempt), state: a.state, runId: tr.id } },
        h('td', { class: 'mono' }, tr.id, tr.supersededBy ? h('div', { class: 'muted small' }, 'replaced by ' + tr.supersededBy) : null),
        h('td', {}, String(a.attempt)),
        h('td', {}, badge(a.state, 'attempt-state')),
        h('td', {}, fmtTime(a.started)),
        h('td', {}, a.ended ? fmtTime(a.ended) : a.current && ['dispatching', 'running'].includes(a.state) ? 'running…' : '—'),
        h('td', { class: 'mono' }, a.errorCode || ''),
        h('td', { class: 'error-cell', testid: 'attempt-error' }, a.error || '')));
    }
  }
  const cur = runs.find((t) => !t.supersededBy) || runs[runs.length - 1];
  return h('div', {},
    h('div', { class: 'card-head' }, h('h2', {}, 'Task ', h('span', { class: 'mono' }, taskId)), badge(cur.status, 'task-detail-status')),
    h('dl', { class: 'meta' },
      h('dt', {}, 'Task run'), h('dd', { class: 'mono' }, cur.id),
      h('dt', {}, 'Code'), h('dd', {}, codeCell(cur), ' ', h('span', { class: 'mono muted small' }, cur.codeHash || '')),
      h('dt', {}, 'Progress'), h('dd', {}, progressCell(cur)),
      h('dt', {}, 'Objects'), h('dd', {}, taskOutputs(cur))),
    h('h3', {}, 'Attempts'),
    table(['Task run', 'Attempt', 'Result', 'Started', 'Ended', 'Code', 'Error'], rows, { testid: 'attempts-table' }));
}

export function mount(ctx) {
  const id = ctx.params.id;
  let selected = ctx.query.get('task') || '';
  let last = '';
  let run = null;
  let cancelArmed = false;
  // The items listed for the selected map node: a state filter, the cursors of the pages
  // before this one, and the page shown.
  let items = { task: '', status: '', cursors: [], page: null };
  const mapOfTask = (taskId) => (run && run.maps ? run.maps.find((m) => m.taskId === taskId) : null);
  // The child run of sub-pipeline node taskId, once it started.
  const childOfTask = (taskId) => (run && run.children ? run.children.find((c) => c.taskId === taskId) || null : null);
  const itemsURL = () => '/api/runs/' + encodeURIComponent(id) + '/maps/' + encodeURIComponent(items.task) + '/items?limit=50' +
    (items.status ? '&status=' + encodeURIComponent(items.status) : '') +
    (items.cursors.length ? '&cursor=' + encodeURIComponent(items.cursors[items.cursors.length - 1]) : '');
  const loadItems = async () => {
    if (!selected || !mapOfTask(selected)) return;
    if (items.task !== selected) items = { task: selected, status: '', cursors: [], page: null };
    const want = itemsURL();
    const page = await get(want);
    if (!ctx.stopped && want === itemsURL()) items.page = page;
  };
  const itemsAction = (change) => async () => {
    change();
    items.page = null;
    draw(true);
    await loadItems();
    draw(true);
  };
  const itemsOn = {
    filter: (st) => itemsAction(() => {
      items.status = st;
      items.cursors = [];
    })(),
    next: itemsAction(() => items.cursors.push(items.page.nextCursor)),
    first: itemsAction(() => {
      items.cursors = [];
    }),
  };
  const head = h('div', { class: 'page-head' });
  const summary = h('section', { class: 'card', testid: 'run-summary' }, h('p', { class: 'muted' }, 'Loading…'));
  const dag = h('section', { class: 'card' });
  const changes = h('section', { class: 'card', testid: 'code-changes' });
  const tasks = h('section', { class: 'card' });
  const detail = h('section', { class: 'card', testid: 'task-detail', hidden: true });
  const tl = h('section', { class: 'card' });
  const actionMsg = h('div', { testid: 'run-action-result' });
  ctx.view.append(h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Overview')), head, actionMsg, summary, dag, detail, tasks, changes, tl);

  const select = (taskId) => {
    selected = selected === taskId ? '' : taskId;
    draw(true);
    if (selected) detail.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    if (selected && mapOfTask(selected)) {
      loadItems().then(() => draw(true), (err) => ctx.showError(err));
    }
  };

  const cancel = async (btn) => {
    btn.disabled = true;
    try {
      await post('/api/runs/' + encodeURIComponent(id) + '/cancel');
      replace(actionMsg, message('ok', 'The run was cancelled.', 'cancel-ok'));
    } catch (err) {
      replace(actionMsg, message('error', (err.code ? err.code + ': ' : '') + err.message, 'cancel-error'));
    }
    last = '';
    await load();
  };

  function draw(force) {
    if (!run) return;
    const now = Date.now();
    const current = (run.tasks || []).filter((t) => !t.supersededBy);
    const all = [...(run.tasks || [])].sort((a, b) => ms(a.createdAt) - ms(b.createdAt) || a.id.localeCompare(b.id));
    const states = {};
    for (const t of current) {
      states[t.taskId] = { status: t.status, progress: t.progress, codeChanged: t.codeChanged, map: mapOfTask(t.taskId), child: childOfTask(t.taskId) };
    }

    replace(head, h('h1', {}, 'Run ', h('span', { class: 'mono', testid: 'run-id' }, run.id), ' ', badge(run.status, 'run-status')),
      run.status === 'running'
        ? h('button', {
          type: 'button', class: 'danger', testid: 'cancel-run', dataset: { armed: String(cancelArmed) }, onclick: (ev) => {
            if (cancelArmed) return cancel(ev.currentTarget);
            cancelArmed = true;
            setTimeout(() => {
              cancelArmed = false;
              draw();
            }, 5000);
            draw();
          },
        }, cancelArmed ? 'Click again to cancel the run' : 'Cancel run')
        : null);

    replace(summary, h('dl', { class: 'meta' },
      h('dt', {}, 'Pipeline'), h('dd', {}, h('a', { href: '#/pipelines/' + encodeURIComponent(run.pipelineId), testid: 'run-pipeline' }, run.pipelineId)),
      // Sub-pipelines: the parent run whose node this run stands for, and the child runs of its
      // own sub-pipeline nodes.
      run.parentRunId ? h('dt', {}, 'Parent run') : null,
      run.parentRunId ? h('dd', { testid: 'run-parent' }, runLink(run.parentRunId, 'run-parent-link'), ' (node ', h('span', { class: 'mono' }, run.parentTaskId || ''), ')') : null,
      run.children && run.children.length ? h('dt', {}, 'Sub-pipeline runs') : null,
      run.children && run.children.length
        ? h('dd', { testid: 'run-children' }, h('ul', { class: 'plain-list' }, run.children.map((c) => h('li', { testid: 'run-child', dataset: { task: c.taskId, state: c.status } },
          h('span', { class: 'mono' }, c.taskId), ' → ', c.pipelineId, ': ', runLink(c.runId, 'run-child-link'), ' ', badge(c.status)))))
        : null,
      h('dt', {}, 'Failure mode'), h('dd', {}, run.failureMode),
      h('dt', {}, 'Priority'), h('dd', {}, String(run.priority)),
      h('dt', {}, 'Started'), h('dd', {}, fmtTime(run.createdAt)),
      h('dt', {}, 'Finished'), h('dd', {}, fmtTime(run.completedAt)),
      h('dt', {}, 'Duration'), h('dd', {}, runDuration(run)),
      // A run with a deadline (timeoutMs): when the sweep fails it if it is still running.
      run.deadline ? h('dt', {}, 'Deadline') : null,
      run.deadline ? h('dd', { testid: 'run-deadline' }, fmtTime(run.deadline) + ' (timeout ' + fmtDuration(run.timeoutMs) + ')') : null,
      h('dt', {}, 'Input'), h('dd', {}, objectButton(run.inputPath, run.inputPath, 'open-run-input'))),
    run.error ? message('error', (run.errorCode ? run.errorCode + ': ' : '') + run.error, 'run-error') : null);

    replace(dag, h('div', { class: 'card-head' }, h('h2', {}, 'Graph'), h('span', { class: 'muted small' }, 'Click a task for its attempts.')),
      h('div', { class: 'dag-wrap' }, renderDAG(run.snapshot || { tasks: {} }, { states, onSelect: select, selected, testid: 'run-dag' })),
      legend());

    const changed = current.filter((t) => t.codeChanged);
    const compared = current.some((t) => t.previousCodeVersion !== undefined && t.previousCodeVersion !== null);
    replace(changes, h('h2', {}, 'Code changes since the previous run'),
      changed.length
        ? h('ul', { class: 'plain-list', testid: 'code-changes-list' }, changed.map((t) => h('li', { testid: 'code-change', dataset: { task: t.taskId } },
          h('span', { class: 'mono' }, t.taskId), ': v' + t.previousCodeVersion + ' → v' + t.codeVersion)))
        : empty(compared ? 'No task changed code version since the previous run of this pipeline.' : 'This is the first run of this pipeline: nothing to compare.', 'code-changes-none'));

    replace(tasks, h('h2', {}, 'Tasks'), current.length
      ? table(['Task', 'State', 'Attempt', 'Progress', 'Code', 'Started', 'Finished', 'Objects', ''],
        current.slice().sort((a, b) => a.taskId.localeCompare(b.taskId)).map((t) => h('tr', { testid: 'task-row', dataset: { task: t.taskId, state: t.status }, class: selected === t.taskId ? 'selected' : '' },
          h('td', { class: 'mono' }, t.taskId),
          h('td', {}, badge(t.status, 'task-state'), mapOfTask(t.taskId) ? mapCounts(mapOfTask(t.taskId)) : null,
            childOfTask(t.taskId) ? h('div', { class: 'small', testid: 'task-child' }, 'child run ', runLink(childOfTask(t.taskId).runId), ' ', badge(childOfTask(t.taskId).status)) : null,
            t.error ? h('div', { class: 'error-text small', testid: 'task-error' }, (t.errorCode ? t.errorCode + ': ' : '') + t.error) : null),
          h('td', {}, String(t.attempt)),
          h('td', {}, mapOfTask(t.taskId) ? mapProgress(mapOfTask(t.taskId)) : progressCell(t)),
          h('td', {}, codeCell(t)),
          h('td', {}, fmtTime(t.startedAt)),
          h('td', {}, fmtTime(t.completedAt)),
          h('td', {}, taskOutputs(mapOfTask(t.taskId) ? { ...t, inputPath: '' } : t)),
          h('td', {}, h('button', { type: 'button', class: 'link-button', testid: 'show-attempts', dataset: { task: t.taskId }, onclick: () => select(t.taskId) }, mapOfTask(t.taskId) ? 'Items' : 'Attempts')))),
        { testid: 'task-table' })
      : empty('No task runs.'));

    replace(tl, h('h2', {}, 'Timeline of attempts'), all.length ? timeline(run, all, now) : empty('Nothing ran yet.'));

    detail.hidden = !selected;
    if (selected) {
      const m = mapOfTask(selected);
      replace(detail, m ? mapDetail(m, current.find((t) => t.taskId === selected), items, itemsOn) : taskDetail(selected, all, now),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'link-button', testid: 'task-detail-close', onclick: () => select(selected) }, 'Close')));
    }
    return force;
  }

  async function load() {
    // Without the map nodes' items: their counts are in maps, their pages read apart.
    const r = await get('/api/runs/' + encodeURIComponent(id) + '?items=false');
    if (ctx.stopped) return false;
    run = r;
    if (selected && mapOfTask(selected) && (r.status === 'running' || !items.page)) await loadItems();
    if (ctx.stopped) return false;
    const text = JSON.stringify(r) + JSON.stringify(items.page);
    // Redraw when something changed, and every second while running (durations move).
    if (text !== last || r.status === 'running') draw();
    last = text;
    return r.status === 'running';
  }

  ctx.every(1000, load);
}
