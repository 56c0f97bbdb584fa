// The maintenance banner, on every page: GET /health (open, no API key) reports the
// orchestrator's maintenance mode; the banner shows while it is not "running".

const POLL_MS = 5000;

const TEXT = {
  waiting_for_maintenance: 'Waiting for maintenance: no new tasks are started and the running ones finish. ' +
    'New work is accepted and waits.',
  maintenance: 'Maintenance mode: no tasks are started. New work is accepted and waits until maintenance ends ' +
    '(pipeweave maintenance exit).',
};

let timer = null;

// show draws the banner for mode (hidden for running or an unknown answer).
function show(mode) {
  const el = document.querySelector('[data-testid="maintenance-banner"]');
  if (!el) return;
  const text = TEXT[mode];
  el.hidden = !text;
  el.dataset.mode = mode || '';
  el.textContent = text || '';
}

// refresh reads /health now; a failure leaves the banner as it was.
export async function refreshMaintenance() {
  try {
    const resp = await fetch('/health', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const body = await resp.json();
    if (body && body.maintenance) show(body.maintenance.mode);
  } catch {
    // The orchestrator is unreachable: the pages say so.
  }
}

// startMaintenanceBanner reads the mode now and every few seconds.
export function startMaintenanceBanner() {
  const tick = async () => {
    await refreshMaintenance();
    timer = setTimeout(tick, POLL_MS);
  };
  if (timer === null) tick();
}
