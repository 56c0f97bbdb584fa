// The control of a `file` field of an input schema: a file picker that uploads the chosen file
// at once as a temporary upload (POST /api/upload/temp) and puts the returned uploadId in a
// text box, which stays editable so that an existing upload id can be pasted as well. The
// field's accept becomes the picker's accept attribute and is checked again on the chosen file
// (a picker's "all files" choice ignores it); a file over maxSize is refused before anything
// is sent. The state line says what happens: uploading, the stored file's name and size, or
// why it was refused (the server's error, such as 413 UPLOAD_TOO_LARGE).

import { uploadTemp } from './api.js';
import { h, replace, fmtBytes } from './dom.js';

// acceptMatches tells whether a file fits an accept list (".pdf,image/*,text/csv"): an
// extension matches the end of the name, "type/*" the MIME type's major type, anything else
// the MIME type exactly (all without regard to case). An empty list accepts everything.
export function acceptMatches(file, accept) {
  const entries = String(accept || '').split(',').map((e) => e.trim().toLowerCase()).filter(Boolean);
  if (!entries.length) return true;
  const name = String(file.name || '').toLowerCase();
  const type = String(file.type || '').toLowerCase();
  return entries.some((e) => {
    if (e.startsWith('.')) return name.endsWith(e);
    if (e.endsWith('/*')) return type !== '' && type.startsWith(e.slice(0, -1));
    return type === e;
  });
}

// fileControl builds the control for field; attrs are the value box's attributes (id,
// data-field, required, placeholder) and onChange is called when the value changes. It returns
// {el, input, get, set} like the other controls of schemaform.js; get() throws while an upload
// is under way, so that a trigger does not go out without the file.
export function fileControl(field, attrs, onChange) {
  const path = attrs.dataset.field;
  const text = h('input', {
    ...attrs, type: 'text', class: 'mono', spellcheck: 'false', autocomplete: 'off',
    placeholder: field.placeholder || 'temporary upload id (tmp_…)',
  });
  const picker = h('input', { type: 'file', accept: field.accept || null, testid: 'file-picker-' + path, 'aria-label': (field.label || field.name) + ': choose a file' });
  const hint = [field.accept ? 'accepts ' + field.accept : null, typeof field.maxSize === 'number' ? 'at most ' + fmtBytes(field.maxSize) : null].filter(Boolean).join(', ');
  const status = h('div', { class: 'file-status', testid: 'file-status-' + path, role: 'status', dataset: { state: 'idle' } });
  const el = h('div', { class: 'file-field' },
    h('div', { class: 'file-row' }, picker, hint ? h('span', { class: 'muted small' }, hint) : null),
    text, status);

  // token tells the latest choice apart: an upload that finishes after another choice, a typed
  // id or a fill no longer sets the value.
  let token = 0;
  let uploading = false;
  let uploadedId = '';
  const show = (state, ...children) => {
    status.dataset.state = state;
    status.className = 'file-status file-status-' + state;
    replace(status, ...children);
  };
  const idle = () => {
    token++;
    uploading = false;
    show('idle');
  };

  picker.addEventListener('change', async () => {
    const file = picker.files && picker.files[0];
    if (!file) return;
    const mine = ++token;
    uploading = false;
    if (!acceptMatches(file, field.accept)) {
      picker.value = '';
      show('refused', file.name + ' is not an accepted file type (' + field.accept + '); nothing was uploaded.');
      return;
    }
    if (typeof field.maxSize === 'number' && file.size > field.maxSize) {
      picker.value = '';
      show('refused', file.name + ' is ' + fmtBytes(file.size) + ', more than the ' + fmtBytes(field.maxSize) + ' this field allows; nothing was uploaded.');
      return;
    }
    uploading = true;
    show('uploading', 'Uploading ' + file.name + ' (' + fmtBytes(file.size) + ')…');
    try {
      const res = await uploadTemp(file);
      if (mine !== token) return;
      uploading = false;
      uploadedId = res.uploadId;
      text.value = res.uploadId;
      show('done', '✓ ', h('span', { testid: 'file-name' }, res.filename), ' (' + fmtBytes(res.size) + '), upload ', h('span', { class: 'mono' }, res.uploadId));
      onChange();
    } catch (err) {
      if (mine !== token) return;
      uploading = false;
      picker.value = '';
      const code = err.status ? ' (' + err.status + (err.code ? ' ' + err.code : '') + ')' : '';
      show('error', 'Upload of ' + file.name + ' failed' + code + ': ' + err.message);
    }
  });

  // Typing or pasting another id replaces whatever the picker chose.
  text.addEventListener('input', () => {
    const keep = status.dataset.state === 'done' && text.value.trim() === uploadedId;
    if (status.dataset.state !== 'idle' && !keep) {
      picker.value = '';
      idle();
    }
    onChange();
  });

  return {
    el,
    input: text,
    get: () => {
      if (uploading) throw new Error((field.label || field.name) + ': the file is still uploading');
      return text.value.trim() === '' ? undefined : text.value.trim();
    },
    set: (v) => {
      text.value = v == null ? '' : String(v);
      picker.value = '';
      idle();
    },
  };
}
