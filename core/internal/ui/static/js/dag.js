// Draws a pipeline's DAG as SVG: tasks in columns by the longest path from the entry tasks,
// edges from allowedNext and predecessors.

import { s } from './dom.js';

const W = 168; // node width
const H = 54; // node height
const GX = 64; // gap between columns
const GY = 22; // gap between rows
const PAD = 16;

// layout computes each task's column (level) and row. structure is {entryTasks, tasks}.
export function layout(structure) {
  const tasks = (structure && structure.tasks) || {};
  const names = Object.keys(tasks).sort();
  const succ = new Map(names.map((n) => [n, new Set()]));
  const pred = new Map(names.map((n) => [n, new Set()]));
  const edge = (a, b) => {
    if (a === b || !succ.has(a) || !succ.has(b)) return;
    succ.get(a).add(b);
    pred.get(b).add(a);
  };
  for (const n of names) {
    for (const m of tasks[n].allowedNext || []) edge(n, m);
    for (const p of tasks[n].predecessors || []) edge(p, n);
  }
  // Longest path from the sources, in topological order (Kahn).
  const level = new Map();
  const indeg = new Map(names.map((n) => [n, pred.get(n).size]));
  const queue = names.filter((n) => indeg.get(n) === 0);
  for (const n of queue) level.set(n, 0);
  while (queue.length) {
    const n = queue.shift();
    for (const m of succ.get(n)) {
      level.set(m, Math.max(level.get(m) || 0, level.get(n) + 1));
      indeg.set(m, indeg.get(m) - 1);
      if (indeg.get(m) === 0) queue.push(m);
    }
  }
  // Tasks on a cycle (an invalid pipeline) go in columns after the others.
  let maxLevel = Math.max(-1, ...level.values());
  for (const n of names) if (!level.has(n)) level.set(n, ++maxLevel);
  maxLevel = Math.max(-1, ...level.values());

  const columns = [];
  for (let i = 0; i <= maxLevel; i++) columns.push([]);
  const entries = structure.entryTasks || [];
  for (const n of names) columns[level.get(n)].push(n);
  const row = new Map();
  columns.forEach((col, i) => {
    const key = (n) => {
      if (i === 0) {
        const e = entries.indexOf(n);
        return e < 0 ? entries.length : e;
      }
      const ps = [...pred.get(n)].filter((p) => row.has(p));
      return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : Infinity;
    };
    col.sort((a, b) => key(a) - key(b) || a.localeCompare(b));
    col.forEach((n, j) => row.set(n, j));
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const pos = new Map();
  columns.forEach((col, i) => {
    const offset = ((tallest - col.length) * (H + GY)) / 2;
    col.forEach((n, j) => pos.set(n, { x: PAD + i * (W + GX), y: PAD + offset + j * (H + GY), level: i }));
  });
  const edges = [];
  for (const [a, bs] of succ) for (const b of bs) edges.push([a, b]);
  return {
    names, pos, edges, levels: columns,
    width: PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX,
    height: PAD * 2 + tallest * H + (tallest - 1) * GY,
  };
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + '…' : text;
}

// mapDone is how many items of map node state m have ended, of how many (null: not known yet).
export function mapDone(m) {
  if (!m || m.itemsTotal === null || m.itemsTotal === undefined) return null;
  const c = m.counts || {};
  return { done: (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0), total: m.itemsTotal };
}

// subLink is the link of sub-pipeline node def (its state st, if any): to its child run when
// there is one, else to the pipeline it runs. A click on it opens the link, not the node.
function subLink(def, st) {
  const child = st && st.child;
  const href = child ? '#/runs/' + encodeURIComponent(child.runId) : '#/pipelines/' + encodeURIComponent(def.pipeline);
  const a = s('a', {
    href, class: 'node-link', testid: 'dag-node-link', dataset: { target: child ? 'run' : 'pipeline' },
    'aria-label': child ? 'child run ' + child.runId + ' of pipeline ' + def.pipeline : 'pipeline ' + def.pipeline,
  }, s('title', {}, child ? 'Open the child run ' + child.runId + ' (' + child.status + ')' : 'Open pipeline ' + def.pipeline),
  s('text', { class: 'node-sub-link', x: W - 12, y: 40, 'text-anchor': 'end' }, clip(def.pipeline, 12) + ' ↗'));
  a.addEventListener('click', (ev) => ev.stopPropagation());
  a.addEventListener('keydown', (ev) => ev.stopPropagation());
  return a;
}

// render draws the DAG. states maps a task id to {status, progress, codeChanged, map, child}
// (optional; map is the run's map node state: its items counted by state; child a sub-pipeline
// node's child run {runId, status}); onSelect(taskId) is called when a node is clicked;
// selected names the highlighted node.
export function render(structure, { states, onSelect, selected, testid } = {}) {
  const L = layout(structure || {});
  const svg = s('svg', {
    class: 'dag', testid: testid || 'dag', role: 'img',
    viewBox: `0 0 ${Math.max(L.width, 1)} ${Math.max(L.height, 1)}`,
    width: L.width, height: L.height,
    'aria-label': 'Pipeline graph with ' + L.names.length + ' tasks',
  });
  const markerId = 'arrow-' + Math.random().toString(36).slice(2, 8);
  svg.appendChild(s('defs', {}, s('marker', {
    id: markerId, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow' }))));
  if (!L.names.length) {
    svg.appendChild(s('text', { x: PAD, y: PAD + 14, class: 'dag-empty' }, 'No tasks'));
    return svg;
  }
  for (const [a, b] of L.edges) {
    const p = L.pos.get(a);
    const q = L.pos.get(b);
    const x1 = p.x + W;
    const y1 = p.y + H / 2;
    const x2 = q.x - 2;
    const y2 = q.y + H / 2;
    const mx = (x1 + x2) / 2;
    const st = states && states[a] ? states[a].status : '';
    svg.appendChild(s('path', {
      class: 'edge' + (st === 'completed' ? ' edge-done' : ''), testid: 'dag-edge', dataset: { from: a, to: b },
      d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, 'marker-end': `url(#${markerId})`,
    }));
  }
  for (const n of L.names) {
    const { x, y } = L.pos.get(n);
    const st = states ? states[n] : null;
    const status = st ? st.status : '';
    const progress = status === 'completed' ? 100 : st && typeof st.progress === 'number' ? st.progress : 0;
    const def = structure.tasks[n] || {};
    // A map node runs its task once per item: drawn as a stack, with its items' counts.
    const isMap = Boolean(def.map);
    // A sub-pipeline node runs another pipeline in its place: drawn as a box in a box, marked
    // pipeline, with a link to the child run (or the pipeline).
    const isSub = !isMap && Boolean(def.pipeline);
    const items = isMap && st ? mapDone(st.map) : null;
    const g = s('g', {
      class: 'node' + (status ? ' state-' + status : ' state-none') + (selected === n ? ' selected' : '') + (onSelect ? ' clickable' : '') + (isMap ? ' map-node' : '') + (isSub ? ' sub-node' : ''),
      testid: 'dag-node', dataset: { task: n, state: status || 'none', map: isMap ? 'true' : null, pipeline: isSub ? def.pipeline : null },
      transform: `translate(${x} ${y})`, tabindex: onSelect ? 0 : null, role: onSelect ? 'button' : null,
    });
    let title = n + (isMap ? ' — map over ' + def.map.over + ' ' + (def.map.items || '(whole output)') : '') + (isSub ? ' — runs pipeline ' + def.pipeline : '') +
      (status ? ' — ' + status : '') + (progress ? ' (' + progress + '%)' : '');
    if (items) title += ' — ' + items.done + ' of ' + items.total + ' items ended';
    if (isSub && st && st.child) title += ' — child run ' + st.child.runId + ' ' + st.child.status;
    g.appendChild(s('title', {}, title));
    if (isMap) g.appendChild(s('rect', { class: 'node-stack', x: 5, y: 5, width: W, height: H, rx: 8, ry: 8 }));
    g.appendChild(s('rect', { class: 'node-box', width: W, height: H, rx: 8, ry: 8 }));
    if (isSub) g.appendChild(s('rect', { class: 'node-inner', x: 4, y: 4, width: W - 8, height: H - 8, rx: 5, ry: 5 }));
    g.appendChild(s('text', { class: 'node-name', x: 12, y: 22 }, clip(n, isMap || isSub ? 14 : 20)));
    if (isMap) g.appendChild(s('text', { class: 'node-map', x: W - 12, y: 20, 'text-anchor': 'end', testid: 'dag-node-map' }, 'map'));
    if (isSub) g.appendChild(s('text', { class: 'node-sub', x: W - 12, y: 20, 'text-anchor': 'end', testid: 'dag-node-sub' }, 'pipeline'));
    let sub = status;
    if (!status) {
      sub = ((structure.entryTasks || []).includes(n) ? 'entry · ' : '') + (def.codeVersion ? 'v' + def.codeVersion : '');
      if (def.serviceId && def.serviceId !== structure.serviceId) sub += (sub ? ' · ' : '') + def.serviceId;
    }
    if (status && progress > 0 && progress < 100 && status !== 'completed' && !items) sub += ' · ' + progress + '%';
    if (isMap && !status) sub = 'map over ' + def.map.over;
    if (isMap && status) sub += items ? ' · ' + items.done + '/' + items.total : ' · items unknown';
    if (isSub && !status) sub = 'runs';
    g.appendChild(s('text', { class: 'node-state', x: 12, y: 40, testid: 'dag-node-state' }, sub));
    if (isSub) g.appendChild(subLink(def, st));
    if (items && items.total > 0) {
      const c = st.map.counts || {};
      let off = 8;
      for (const k of ['completed', 'failed', 'cancelled', 'running', 'dispatching']) {
        const w = Math.round(((W - 16) * (c[k] || 0)) / items.total);
        if (w <= 0) continue;
        g.appendChild(s('rect', { class: 'node-items state-' + k, x: off, y: H - 6, width: w, height: 3, testid: 'dag-node-items', dataset: { state: k } }));
        off += w;
      }
    } else if (status && progress > 0) {
      const wBar = Math.round(((W - 16) * Math.min(progress, 100)) / 100);
      g.appendChild(s('rect', { class: 'node-progress-track', x: 8, y: H - 6, width: W - 16, height: 3, rx: 1.5 }));
      g.appendChild(s('rect', { class: 'node-progress', x: 8, y: H - 6, width: wBar, height: 3, rx: 1.5, testid: 'dag-node-progress' }));
    }
    if (st && st.codeChanged && !isMap && !isSub) {
      g.appendChild(s('text', { class: 'node-changed', x: W - 12, y: 20, 'text-anchor': 'end' }, 'code changed'));
    }
    if (onSelect) {
      g.addEventListener('click', () => onSelect(n));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          onSelect(n);
        }
      });
    }
    svg.appendChild(g);
  }
  return svg;
}

// legend lists the task states and their colours.
export function legend() {
  const states = ['waiting', 'pending', 'dispatching', 'running', 'completed', 'failed', 'cancelled', 'skipped'];
  const wrap = document.createElement('div');
  wrap.className = 'legend';
  wrap.setAttribute('data-testid', 'dag-legend');
  for (const st of states) {
    const item = document.createElement('span');
    item.className = 'legend-item';
    const sw = document.createElement('span');
    sw.className = 'swatch state-' + st;
    item.append(sw, st);
    wrap.appendChild(item);
  }
  return wrap;
}
