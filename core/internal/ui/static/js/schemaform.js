// A form generated from a task's input schema in upstream PipeWeave's field-list format
// ({fields: [...], strict?}): one input per field by type, labels, required marks, defaults,
// select options, and showIf conditions that hide and show fields as the values change.
// Hidden fields are left out of the value, as the orchestrator's validator expects.

import { h } from './dom.js';
import { fileControl } from './fileinput.js';

// evaluateCondition is upstream's: === and !==, numeric comparisons, membership in an array.
export function evaluateCondition(value, cond) {
  const v = cond.value;
  const nums = typeof value === 'number' && typeof v === 'number';
  switch (cond.operator) {
    case 'eq': return value === v;
    case 'ne': return value !== v;
    case 'gt': return nums ? value > v : false;
    case 'lt': return nums ? value < v : false;
    case 'gte': return nums ? value >= v : false;
    case 'lte': return nums ? value <= v : false;
    case 'in': return Array.isArray(v) && v.includes(value);
    case 'notIn': return Array.isArray(v) && !v.includes(value);
    default: return true;
  }
}

let seq = 0;

// control builds the input of one field. It returns {el, get, set, input} where get() is the
// field's value (undefined when empty) or throws an Error with a sentence.
function control(field, path, onChange) {
  const id = 'sf-' + (++seq);
  const attrs = { id, dataset: { field: path }, required: field.required, placeholder: field.placeholder };
  const textLike = (type) => {
    const el = h('input', { ...attrs, type });
    el.addEventListener('input', onChange);
    return { el, input: el, get: () => (el.value === '' ? undefined : el.value), set: (v) => { el.value = v == null ? '' : String(v); } };
  };
  const jsonArea = (placeholder) => {
    const el = h('textarea', { ...attrs, rows: 4, class: 'code', spellcheck: 'false', placeholder: field.placeholder || placeholder });
    el.addEventListener('input', onChange);
    return {
      el, input: el,
      get: () => {
        if (el.value.trim() === '') return undefined;
        try { return JSON.parse(el.value); } catch { throw new Error(field.label + ' is not valid JSON'); }
      },
      set: (v) => { el.value = v === undefined ? '' : JSON.stringify(v, null, 2); },
    };
  };
  switch (field.type) {
    case 'email': return textLike('email');
    case 'url': return textLike('url');
    case 'date': return textLike('date');
    case 'datetime': return textLike('datetime-local');
    case 'file':
      return fileControl(field, attrs, onChange);
    case 'textarea': {
      const el = h('textarea', { ...attrs, rows: 4 });
      el.addEventListener('input', onChange);
      return { el, input: el, get: () => (el.value === '' ? undefined : el.value), set: (v) => { el.value = v == null ? '' : String(v); } };
    }
    case 'number':
    case 'integer': {
      const el = h('input', { ...attrs, type: 'number', step: field.type === 'integer' ? 1 : 'any', min: field.min, max: field.max });
      el.addEventListener('input', onChange);
      return {
        el, input: el,
        get: () => {
          if (el.value === '') return undefined;
          const n = Number(el.value);
          if (!Number.isFinite(n)) throw new Error(field.label + ' must be a number');
          return n;
        },
        set: (v) => { el.value = typeof v === 'number' ? String(v) : ''; },
      };
    }
    case 'boolean': {
      const el = h('input', { id, type: 'checkbox', dataset: { field: path } });
      el.addEventListener('change', onChange);
      return { el, input: el, get: () => el.checked, set: (v) => { el.checked = v === true; } };
    }
    case 'select':
    case 'multiselect': {
      const opts = field.options || [];
      if (!opts.length) return field.type === 'select' ? jsonArea('any JSON value') : jsonArea('[…]');
      const multiple = field.type === 'multiselect';
      const el = h('select', { ...attrs, multiple },
        multiple ? null : h('option', { value: '' }, field.placeholder || '— choose —'),
        opts.map((o, i) => h('option', { value: String(i) }, o.label != null ? o.label : String(o.value))));
      el.addEventListener('change', onChange);
      const indexOf = (v) => opts.findIndex((o) => o.value === v);
      return {
        el, input: el,
        get: () => {
          if (multiple) return Array.from(el.selectedOptions, (o) => opts[Number(o.value)].value);
          return el.value === '' ? undefined : opts[Number(el.value)].value;
        },
        set: (v) => {
          if (multiple) {
            const want = Array.isArray(v) ? v : [];
            for (const o of el.options) o.selected = want.some((x) => x === opts[Number(o.value)].value);
          } else {
            const i = indexOf(v);
            el.value = i >= 0 ? String(i) : '';
          }
        },
      };
    }
    case 'object':
      if (field.properties && field.properties.length) {
        const sub = fieldset(field.properties, path, onChange);
        return { el: sub.el, input: null, get: () => { const v = sub.get(); return Object.keys(v).length ? v : undefined; }, set: (v) => sub.set(v || {}) };
      }
      return jsonArea('{…}');
    case 'array':
      return jsonArea('[…]');
    case 'json':
      return jsonArea('any JSON value');
    default:
      return textLike('text');
  }
}

// fieldset builds the fields of one object level; get() collects the values of the shown
// fields that are set; set(values) fills them in.
function fieldset(fields, prefix, onChange) {
  const rows = [];
  const refresh = () => {
    const current = {};
    for (const r of rows) {
      try { current[r.field.name] = r.c.get(); } catch { current[r.field.name] = undefined; }
    }
    for (const r of rows) {
      const shown = !r.field.showIf || evaluateCondition(current[r.field.showIf.field], r.field.showIf);
      r.el.hidden = !shown;
      r.el.dataset.shown = String(shown);
      if (r.c.input && r.field.required) {
        if (shown) r.c.input.setAttribute('required', '');
        else r.c.input.removeAttribute('required');
      }
    }
  };
  const changed = () => { refresh(); onChange(); };
  for (const field of fields) {
    const path = prefix ? prefix + '.' + field.name : field.name;
    const c = control(field, path, changed);
    const label = field.label || field.name;
    const mark = field.required ? h('span', { class: 'required-mark', title: 'required' }, ' *') : null;
    const help = [field.description, field.helpText].filter(Boolean).map((t) => h('p', { class: 'muted small' }, t));
    const el = field.type === 'boolean'
      ? h('div', { class: 'schema-field schema-field-boolean', testid: 'field-' + path },
        h('label', { for: c.el.id }, c.el, ' ', label, mark), help)
      : h(field.type === 'object' && c.input === null ? 'fieldset' : 'div', { class: 'schema-field', testid: 'field-' + path },
        field.type === 'object' && c.input === null ? h('legend', {}, label, mark) : h('label', { for: (c.input || c.el).id }, label, mark),
        help, c.el);
    if (field.default !== undefined) c.set(field.default);
    rows.push({ field, c, el });
  }
  refresh();
  return {
    el: h('div', { class: 'schema-fields' }, rows.map((r) => r.el)),
    get: () => {
      const out = {};
      for (const r of rows) {
        if (r.el.hidden) continue;
        const v = r.c.get();
        if (v !== undefined) out[r.field.name] = v;
      }
      return out;
    },
    set: (values) => {
      for (const r of rows) r.c.set(values && typeof values === 'object' ? values[r.field.name] : undefined);
      refresh();
    },
  };
}

// schemaForm builds the form of a schema. value() returns the input object (throws an Error
// when a JSON field is malformed); fill(obj) sets the fields from an object.
export function schemaForm(schema, onChange = () => {}) {
  const fs = fieldset(schema.fields || [], '', onChange);
  return {
    el: h('div', { class: 'schema-form', testid: 'schema-form' }, fs.el),
    value: fs.get,
    fill: fs.set,
  };
}

// mergeSchemas joins the field lists of several entry tasks' schemas (a field named twice is
// taken from the first schema that has it).
export function mergeSchemas(schemas) {
  const seen = new Set();
  const fields = [];
  for (const s of schemas) {
    for (const f of (s && s.fields) || []) {
      if (!seen.has(f.name)) {
        seen.add(f.name);
        fields.push(f);
      }
    }
  }
  return { fields };
}
