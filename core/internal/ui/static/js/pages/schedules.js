// Schedules: every schedule with what it fires, its cron expression and time zone, its next
// fire times and its last run; a schedule's page adds its latest handled slots.

import { get } from '../api.js';
import { h, replace, badge, message, table, empty, fmtTime, fmtAgo, runLink } from '../dom.js';

// target links what a schedule fires: a pipeline's page, or the task's name.
function target(s) {
  if (s.pipelineId) {
    return h('span', {}, 'pipeline ', h('a', { href: '#/pipelines/' + encodeURIComponent(s.pipelineId), class: 'mono' }, s.pipelineId));
  }
  return h('span', {}, 'task ', h('span', { class: 'mono' }, s.taskId));
}

// runRef links a pipeline run to its page; a task run is shown as its id.
function runRef(id, testid) {
  if (!id) return '—';
  return id.startsWith('prun_') ? runLink(id, testid) : h('span', { class: 'mono', testid }, id);
}

// nextTimes lists the next fire times, the first with how soon it is.
function nextTimes(s) {
  if (!s.enabled) return badge('disabled', 'schedule-disabled');
  const times = s.nextFireTimes || [];
  if (!times.length) return '—';
  return h('ol', { class: 'fire-times', testid: 'schedule-next-times' },
    times.map((t, i) => h('li', { testid: 'schedule-next-time', dataset: { at: t } }, fmtTime(t) + (i === 0 ? ' (' + fmtAgo(t) + ')' : ''))));
}

// outcomeBadge shows a slot's outcome in the colour of the run state it resembles.
function outcomeBadge(outcome) {
  const state = { fired: 'completed', failed: 'failed' }[outcome] || 'skipped';
  return h('span', { class: 'badge state-' + state, testid: 'slot-outcome', dataset: { outcome } }, outcome);
}

export function mount(ctx) {
  if (ctx.params.id) return mountOne(ctx, ctx.params.id);
  const list = h('div', { testid: 'schedule-list' }, h('p', { class: 'muted' }, 'Loading…'));
  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Schedules'),
      h('p', { class: 'muted' }, 'Cron schedules that enqueue a task or trigger a pipeline with a fixed input. ' +
        'Define them with PUT /api/schedules/{id} or pipeweave schedules put.')),
    list);
  ctx.every(5000, async () => {
    const res = await get('/api/schedules');
    if (ctx.stopped) return false;
    const items = res.schedules || [];
    if (!items.length) {
      replace(list, empty('No schedules.', 'schedules-empty'));
      return true;
    }
    replace(list, table(['Schedule', 'Fires', 'Cron', 'Next fire times', 'Last run', 'Missed'],
      items.map((s) => h('tr', { testid: 'schedule-row', dataset: { scheduleId: s.id } },
        h('td', {}, h('a', { href: '#/schedules/' + encodeURIComponent(s.id), class: 'mono', testid: 'schedule-link' }, s.id)),
        h('td', {}, target(s)),
        h('td', {}, h('span', { class: 'mono' }, s.cron), h('div', { class: 'muted small' }, s.timezone)),
        h('td', {}, nextTimes(s)),
        h('td', {}, runRef(s.lastRunId, 'schedule-last-run'), s.lastSlotAt ? h('div', { class: 'muted small' }, 'slot ' + fmtTime(s.lastSlotAt)) : null),
        h('td', { testid: 'schedule-missed' }, String(s.missedSlots))))));
    return true;
  });
}

function mountOne(ctx, id) {
  const info = h('section', { class: 'card', testid: 'schedule-detail' }, h('p', { class: 'muted' }, 'Loading…'));
  const slots = h('div', {});
  ctx.view.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/schedules' }, '← Schedules')),
    h('div', { class: 'page-head' }, h('h1', {}, 'Schedule ', h('span', { class: 'mono' }, id))),
    info, h('section', { class: 'card' }, h('h2', {}, 'Latest slots'), slots));
  ctx.every(3000, async () => {
    let s;
    try {
      s = await get('/api/schedules/' + encodeURIComponent(id));
    } catch (err) {
      replace(info, message('error', err.message, 'schedule-load-error'));
      return false;
    }
    if (ctx.stopped) return false;
    replace(info,
      h('dl', { class: 'meta' },
        h('dt', {}, 'Fires'), h('dd', {}, target(s)),
        h('dt', {}, 'Cron'), h('dd', { class: 'mono' }, s.cron + ' (' + s.timezone + ')'),
        h('dt', {}, 'Overlap'), h('dd', {}, s.overlap),
        h('dt', {}, 'Catch-up'), h('dd', {}, s.catchUp + (s.catchUp === 'all' ? ' (up to ' + s.catchUpLimit + ')' : '')),
        h('dt', {}, 'Input'), h('dd', {}, h('pre', { class: 'code small' }, JSON.stringify(s.input, null, 2))),
        h('dt', {}, 'Next fire times'), h('dd', {}, nextTimes(s)),
        h('dt', {}, 'Missed slots'), h('dd', {}, String(s.missedSlots) + (s.lastMissedAt ? ', the latest ' + fmtTime(s.lastMissedAt) : ''))));
    const rows = (s.recentSlots || []).map((f) => h('tr', { testid: 'schedule-slot', dataset: { outcome: f.outcome } },
      h('td', {}, fmtTime(f.slotAt)), h('td', {}, outcomeBadge(f.outcome)),
      h('td', {}, f.error ? h('span', { class: 'error' }, f.error) : runRef(f.runId, 'slot-run')), h('td', {}, fmtTime(f.firedAt))));
    replace(slots, rows.length ? table(['Slot', 'Outcome', 'Run', 'Handled at'], rows) : empty('No slot handled yet.', 'slots-empty'));
    return true;
  });
}
