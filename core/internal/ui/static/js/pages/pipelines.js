// Pipelines: every pipeline with its DAG; a pipeline's page adds the trigger form, a dry run
// and its recent runs.

import { get, post } from '../api.js';
import { h, replace, badge, message, table, empty, fmtTime } from '../dom.js';
import { render as renderDAG } from '../dag.js';
import { runsTable } from './overview.js';
import { schemaForm, mergeSchemas } from '../schemaform.js';

const MODES = ['fail-fast', 'continue', 'partial-merge'];
const VALIDATION_MODES = [['warn', 'warn (default)'], ['strict', 'strict'], ['none', 'none']];

function validity(p) {
  return p.valid
    ? h('span', { class: 'badge state-completed', testid: 'pipeline-valid' }, 'valid')
    : h('span', { class: 'badge state-failed', testid: 'pipeline-invalid' }, 'invalid');
}

function errorsList(p) {
  if (!p.errors || !p.errors.length) return null;
  return h('ul', { class: 'error-list', testid: 'pipeline-errors' }, p.errors.map((e) => h('li', {}, e)));
}

export function mount(ctx) {
  if (ctx.params.id) return mountOne(ctx, ctx.params.id);
  const list = h('div', { class: 'pipeline-list', testid: 'pipeline-list' }, h('p', { class: 'muted' }, 'Loading…'));
  ctx.view.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Pipelines'),
      h('p', { class: 'muted' }, 'Each registered service implies a pipeline of its tasks; more can be declared.')),
    list);
  ctx.every(10000, async () => {
    const ps = await get('/api/pipelines');
    if (ctx.stopped) return false;
    if (!ps.length) {
      replace(list, empty('No pipelines: register a worker service first.', 'pipelines-empty'));
      return true;
    }
    replace(list, ps.map((p) => h('section', { class: 'card pipeline-card', testid: 'pipeline-card', dataset: { pipelineId: p.id } },
      h('div', { class: 'card-head' },
        h('h2', {}, h('a', { href: '#/pipelines/' + encodeURIComponent(p.id), testid: 'pipeline-link' }, p.id)),
        pausedBadge(p), validity(p)),
      h('p', { class: 'muted small' },
        (p.implicit ? 'Implied by service ' + (p.serviceId || p.id) : 'Declared') + ' · ' + Object.keys(p.tasks || {}).length + ' tasks · ' +
        'entry: ' + (p.entryTasks || []).join(', ') + ' · ' + p.failureMode),
      p.description ? h('p', {}, p.description) : null,
      errorsList(p),
      h('div', { class: 'dag-wrap' }, renderDAG(p, { testid: 'pipeline-dag' })),
      h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/pipelines/' + encodeURIComponent(p.id), testid: 'pipeline-open' }, 'Trigger…')))));
    return true;
  });
}

// pausedBadge marks a paused pipeline (POST /api/pipelines/{id}/pause): its runs' nodes wait.
function pausedBadge(p) {
  return p.pausedAt
    ? h('span', { title: 'paused since ' + fmtTime(p.pausedAt) + ": its runs' nodes wait until it is resumed" }, badge('paused', 'pipeline-paused'))
    : null;
}

function mountOne(ctx, id) {
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Pipeline ', h('span', { class: 'mono' }, id)));
  const info = h('section', { class: 'card', testid: 'pipeline-detail' }, h('p', { class: 'muted' }, 'Loading…'));
  const runs = h('div', {});
  const trigger = triggerCard(ctx, id);
  ctx.view.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/pipelines' }, '← Pipelines')),
    head, info, trigger,
    h('section', { class: 'card' }, h('h2', {}, 'Recent runs'), runs));

  get('/api/pipelines/' + encodeURIComponent(id)).then((p) => {
    if (ctx.stopped) return;
    replace(info,
      h('div', { class: 'card-head' }, h('h2', {}, 'Structure'), pausedBadge(p), validity(p)),
      h('dl', { class: 'meta' },
        h('dt', {}, 'Source'), h('dd', {}, p.implicit ? 'implied by service ' + (p.serviceId || p.id) : 'declared'),
        h('dt', {}, 'Entry tasks'), h('dd', { class: 'mono' }, (p.entryTasks || []).join(', ') || '—'),
        h('dt', {}, 'Failure mode'), h('dd', { testid: 'pipeline-failure-mode' }, p.failureMode),
        p.description ? [h('dt', {}, 'Description'), h('dd', {}, p.description)] : null),
      errorsList(p),
      h('div', { class: 'dag-wrap' }, renderDAG(p, { testid: 'pipeline-dag' })));
    const sel = ctx.view.querySelector('[data-testid="trigger-failure-mode"]');
    if (sel && sel.options[0]) sel.options[0].textContent = 'pipeline default (' + p.failureMode + ')';
    trigger.useEntryTasks(p.entryTasks || []);
  }).catch((err) => replace(info, message('error', err.message, 'pipeline-load-error')));

  ctx.every(3000, async () => {
    const page = await get('/api/runs?limit=10&pipelineId=' + encodeURIComponent(id));
    if (ctx.stopped) return false;
    const items = page.items || [];
    replace(runs, runsTable(items, 'pipeline-runs'));
    return true;
  });
}

// parseInput reads the textarea: empty is {}; otherwise it must be JSON.
function parseInput(text) {
  if (!text.trim()) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: 'The input is not valid JSON: ' + err.message };
  }
}

function errorText(err) {
  let t = (err.code ? err.code + ': ' : '') + err.message;
  if (err.details !== undefined && err.details !== null) t += ' — ' + JSON.stringify(err.details);
  return t;
}

// violations lists input schema violations by task: {taskId: [{field, message, code}]}.
function violations(byTask, testid) {
  const items = [];
  for (const [task, errs] of Object.entries(byTask || {})) {
    for (const e of errs) items.push(h('li', {}, h('span', { class: 'mono' }, task + (e.field ? ' · ' + e.field : '')), ': ' + e.message));
  }
  return h('ul', { class: 'error-list', testid }, items);
}

// subPlanNodes shows the sub-pipeline nodes of dry run step st: each with the pipeline it runs
// (a link), the error a run would fail it with when its child could not start, and its child
// plan's steps, its own sub-pipeline nodes nested the same way.
function subPlanNodes(st) {
  return Object.entries(st.nodes || {}).filter(([, n]) => n.type === 'pipeline' && n.pipeline).map(([task, n]) => {
    const plan = n.plan;
    return h('div', { class: 'muted small plan-sub', testid: 'plan-sub-node', dataset: { task, pipeline: n.pipeline, errorCode: n.errorCode || null } },
      task + ': runs pipeline ', h('a', { href: '#/pipelines/' + encodeURIComponent(n.pipeline) }, n.pipeline),
      n.errorCode ? h('span', { class: 'error-text', testid: 'plan-sub-error' }, ' — a run would fail the node with ' + n.errorCode) : null,
      n.planOmitted ? h('div', { testid: 'plan-sub-omitted' }, 'plan not shown: ' + n.planOmitted) : null,
      plan && (plan.executionPlan || []).length
        ? h('div', { class: 'plan-sub-steps', testid: 'plan-sub-steps' }, 'steps: ' + plan.executionPlan.map((s) => (s.tasks || []).join(', ')).join(' → '),
          plan.executionPlan.map(subPlanNodes))
        : null,
      plan && (plan.errors || []).length ? h('div', { class: 'error-text', testid: 'plan-sub-errors' }, plan.errors.join('; ')) : null);
  });
}

function triggerCard(ctx, id) {
  const input = h('textarea', { id: 'trigger-input', testid: 'trigger-input', rows: 8, spellcheck: 'false', class: 'code' });
  input.value = '{\n  \n}';
  const inputError = h('p', { class: 'field-error', testid: 'trigger-input-error', hidden: true });
  const mode = h('select', { id: 'trigger-failure-mode', testid: 'trigger-failure-mode' },
    h('option', { value: '' }, 'pipeline default'), MODES.map((m) => h('option', { value: m }, m)));
  const priority = h('input', { id: 'trigger-priority', testid: 'trigger-priority', type: 'number', min: 0, step: 1, placeholder: 'default' });
  const validation = h('select', { id: 'trigger-validation-mode', testid: 'trigger-validation-mode' },
    VALIDATION_MODES.map(([v, label]) => h('option', { value: v }, label)));
  // The form generated from the entry tasks' input schemas, when they have one; the raw JSON
  // stays available with the toggle.
  const formHost = h('div', { testid: 'trigger-schema-form', hidden: true });
  const rawToggle = h('input', { id: 'trigger-raw-json', testid: 'trigger-raw-json', type: 'checkbox' });
  const rawRow = h('p', { class: 'small', hidden: true }, h('label', { for: 'trigger-raw-json' }, rawToggle, ' Edit the input as raw JSON'));
  const inputLabel = h('label', { for: 'trigger-input' }, 'Input (JSON)');
  let sf = null;
  const showRaw = (raw) => {
    formHost.hidden = raw;
    input.hidden = !raw;
    inputLabel.hidden = !raw;
    if (raw) inputError.hidden = true;
  };
  const out = h('div', { testid: 'trigger-result' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'trigger-submit' }, 'Trigger run');
  const dry = h('button', { type: 'button', testid: 'dry-run-button' }, 'Dry run');

  const check = () => {
    const r = parseInput(input.value);
    inputError.hidden = r.ok;
    inputError.textContent = r.ok ? '' : r.error;
    input.classList.toggle('invalid', !r.ok);
    input.setAttribute('aria-invalid', r.ok ? 'false' : 'true');
    return r;
  };
  input.addEventListener('input', check);

  const form = h('form', { class: 'trigger-form', testid: 'trigger-form', novalidate: true },
    rawRow, formHost, inputLabel, input, inputError,
    h('div', { class: 'form-row' },
      h('div', {}, h('label', { for: 'trigger-failure-mode' }, 'Failure mode'), mode),
      h('div', {}, h('label', { for: 'trigger-priority' }, 'Priority'), priority),
      h('div', {}, h('label', { for: 'trigger-validation-mode' }, 'Input validation'), validation)),
    h('div', { class: 'actions' }, submit, dry), out);

  rawToggle.addEventListener('change', () => {
    if (!sf) return;
    if (rawToggle.checked) {
      try {
        input.value = JSON.stringify(sf.value(), null, 2);
      } catch (err) {
        replace(out, message('error', err.message, 'trigger-error'));
        rawToggle.checked = false;
        return;
      }
      check();
    } else {
      const r = check();
      if (!r.ok) {
        rawToggle.checked = true;
        return;
      }
      sf.fill(r.value);
    }
    showRaw(rawToggle.checked);
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let value;
    if (sf && !rawToggle.checked) {
      try {
        value = sf.value();
      } catch (err) {
        replace(out, message('error', err.message, 'trigger-error'));
        return;
      }
    } else {
      const r = check();
      if (!r.ok) {
        replace(out, message('error', r.error, 'trigger-error'));
        return;
      }
      value = r.value;
    }
    const body = { input: value, validationMode: validation.value };
    if (mode.value) body.failureMode = mode.value;
    if (priority.value !== '') {
      const n = Number(priority.value);
      if (!Number.isInteger(n) || n < 0) {
        replace(out, message('error', 'Priority must be a whole number ≥ 0.', 'trigger-error'));
        return;
      }
      body.priority = n;
    }
    submit.disabled = true;
    replace(out, message('info', 'Triggering…', 'trigger-pending'));
    try {
      const res = await post('/api/pipelines/' + encodeURIComponent(id) + '/trigger', body);
      if (ctx.stopped) return;
      if (res.validationWarnings) {
        // Accepted in warn mode: say what the schemas found before moving on.
        replace(out, message('ok', 'Started run ' + res.pipelineRunId + ', with input warnings:', 'trigger-ok'),
          violations(res.validationWarnings, 'trigger-warnings'),
          h('p', {}, h('a', { href: '#/runs/' + encodeURIComponent(res.pipelineRunId), testid: 'trigger-run-link' }, 'Open the run →')));
        return;
      }
      replace(out, message('ok', 'Started run ' + res.pipelineRunId, 'trigger-ok'));
      location.hash = '#/runs/' + encodeURIComponent(res.pipelineRunId);
    } catch (err) {
      if (err.body && err.body.validationErrors) {
        replace(out, message('error', 'The input breaks the entry tasks\' schemas; nothing was started:', 'trigger-error'),
          violations(err.body.validationErrors, 'trigger-violations'));
      } else {
        replace(out, message('error', errorText(err), 'trigger-error'));
      }
    } finally {
      submit.disabled = false;
    }
  });

  dry.addEventListener('click', async () => {
    dry.disabled = true;
    replace(out, message('info', 'Computing the plan…', 'dry-run-pending'));
    try {
      const plan = await post('/api/pipelines/' + encodeURIComponent(id) + '/dry-run');
      if (ctx.stopped) return;
      replace(out, h('div', { class: 'dry-run', testid: 'dry-run-result', dataset: { valid: String(plan.valid) } },
        h('h3', {}, 'Execution plan ', plan.valid ? badge('valid', 'dry-run-valid') : badge('invalid', 'dry-run-invalid')),
        (plan.executionPlan || []).length
          ? table(['Step', 'Type', 'Tasks', 'Waits for'], plan.executionPlan.map((st) => h('tr', { testid: 'plan-step' },
            h('td', {}, String(st.step)), h('td', {}, st.type), h('td', { class: 'mono' }, (st.tasks || []).join(', '),
              // A map node: one task run per item, how many known only at run time.
              Object.entries(st.nodes || {}).filter(([, n]) => n.type === 'map' && n.map).map(([task, n]) => h('div', { class: 'muted small', testid: 'plan-map-node', dataset: { task } },
                task + ': map over ' + n.map.over + ' ' + (n.map.items || '(whole output)') + ', at most ' + n.map.maxItems + ' items; item count ' + (n.itemCount === 'unknown' ? 'unknown until run time' : n.itemCount))),
              // A spawn node: its run may start task runs from its callback and waits for them.
              Object.entries(st.nodes || {}).filter(([, n]) => n.type === 'spawn' && n.spawn).map(([task, n]) => h('div', { class: 'muted small', testid: 'plan-spawn-node', dataset: { task } },
                task + ': spawns at most ' + n.spawn.maxItems + ' runs' + (n.spawn.maxConcurrency ? ', ' + n.spawn.maxConcurrency + ' at once' : '') + ' and waits for them; count unknown until run time')),
              // A sub-pipeline node: a child run of another pipeline in its place, with that
              // pipeline's plan nested.
              subPlanNodes(st)),
            h('td', { class: 'mono' }, (st.waitsFor || []).join(', ') || '—'))))
          : empty('No steps.'),
        (plan.warnings || []).length ? h('ul', { class: 'warning-list', testid: 'dry-run-warnings' }, plan.warnings.map((w) => h('li', {}, w))) : null,
        (plan.errors || []).length ? h('ul', { class: 'error-list', testid: 'dry-run-errors' }, plan.errors.map((w) => h('li', {}, w))) : null));
    } catch (err) {
      replace(out, message('error', errorText(err), 'trigger-error'));
    } finally {
      dry.disabled = false;
    }
  });

  const card = h('section', { class: 'card' }, h('h2', {}, 'Trigger a run'), form);
  // useEntryTasks builds the form from the entry tasks' field-list schemas, if any has one.
  card.useEntryTasks = async (entryTasks) => {
    const infos = await Promise.all(entryTasks.map((t) =>
      get('/api/tasks/' + encodeURIComponent(t) + '/input-schema').catch(() => null)));
    if (ctx.stopped) return;
    const schemas = infos.filter((i) => i && i.schema && Array.isArray(i.schema.fields)).map((i) => i.schema);
    if (!schemas.length) return;
    sf = schemaForm(mergeSchemas(schemas));
    replace(formHost, sf.el);
    rawRow.hidden = false;
    rawToggle.checked = false;
    showRaw(false);
  };
  return card;
}
