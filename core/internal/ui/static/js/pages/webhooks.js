// Webhooks: the configured webhooks (never their secrets) and, for one, its delivery log with
// each delivery's state, attempts and last answer; a delivered or dead delivery can be re-sent.
// Webhooks are created with the API or `pipeweave webhooks put` (docs/webhooks.md).

import { get, post, query } from '../api.js';
import { h, replace, badge, message, fmtTime, fmtAgo, table, empty } from '../dom.js';

export function mount(ctx) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const log = h('section', { class: 'card', testid: 'webhook-log', hidden: true });
  const msg = h('div', { testid: 'webhook-message', 'aria-live': 'polite' });
  let shown = ctx.query.get('id') || '';

  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Webhooks'),
      h('p', { class: 'muted' }, 'Signed notifications of run endings and DLQ entries. Create them with PUT /api/webhooks/{id} or pipeweave webhooks put; each delivery is retried with backoff until it is delivered or dead.')),
    h('section', { class: 'card' }, list),
    log);

  async function loadList() {
    const res = await get('/api/webhooks');
    if (ctx.stopped) return;
    const items = res.items || [];
    replace(list, items.length
      ? table(['Id', 'URL', 'Events', 'Enabled', 'Secret', ''], items.map((w) => h('tr', { testid: 'webhook-row', class: shown === w.id ? 'selected' : '', dataset: { webhookId: w.id } },
        h('td', { class: 'mono' }, w.id),
        h('td', { class: 'mono' }, w.url),
        h('td', {}, (w.events || []).join(', ')),
        h('td', {}, w.enabled ? 'yes' : 'no'),
        h('td', { class: 'mono' }, w.secretPrefix + '…'),
        h('td', {}, h('button', { type: 'button', class: 'link-button', testid: 'webhook-show', onclick: () => { location.hash = '#/webhooks' + query({ id: w.id }); } }, 'Deliveries')))),
      { testid: 'webhook-table' })
      : empty('No webhooks. Create one with pipeweave webhooks put.', 'webhook-empty'));
  }

  async function loadLog() {
    if (!shown) return;
    log.hidden = false;
    const page = await get('/api/webhooks/' + encodeURIComponent(shown) + '/deliveries' + query({ limit: 100 }));
    if (ctx.stopped) return;
    const items = page.items || [];
    replace(log, h('div', { class: 'card-head' }, h('h2', {}, 'Deliveries of ', h('span', { class: 'mono', testid: 'webhook-log-id' }, shown))), msg,
      items.length
        ? table(['Created', 'Event', 'State', 'Attempts', 'Last answer', 'Next attempt', 'Id', ''], items.map((d) => h('tr', { testid: 'delivery-row', dataset: { deliveryId: d.id, state: d.status } },
          h('td', { title: fmtTime(d.createdAt) }, fmtAgo(d.createdAt)),
          h('td', { class: 'mono' }, d.event),
          h('td', {}, badge(d.status, 'delivery-state')),
          h('td', {}, String(d.attempts)),
          h('td', { class: 'error-cell' }, d.lastStatusCode ? String(d.lastStatusCode) : '', d.lastError ? ' ' + d.lastError : ''),
          h('td', {}, d.nextAttemptAt ? fmtTime(d.nextAttemptAt) : ''),
          h('td', { class: 'mono small' }, d.id),
          h('td', {}, d.status === 'pending' ? null
            : h('button', { type: 'button', testid: 'delivery-resend', onclick: () => resend(d) }, 'Resend')))),
        { testid: 'delivery-table' })
        : empty('No deliveries yet.', 'delivery-empty'));
  }

  async function resend(d) {
    try {
      await post('/api/webhooks/' + encodeURIComponent(shown) + '/deliveries/' + encodeURIComponent(d.id) + '/resend');
      await loadLog();
      replace(msg, message('ok', 'Delivery ' + d.id + ' is pending again; it is sent with the same webhook-id.', 'delivery-resend-ok'));
    } catch (err) {
      replace(msg, message('error', (err.code ? err.code + ': ' : '') + err.message, 'delivery-resend-error'));
    }
  }

  ctx.every(5000, async () => {
    await loadList();
    await loadLog();
  });
}
