// The maintenance banner, on every page: GET /health (open, no API key) reports the
// orchestrator's maintenance mode; the banner shows while it is not "running". The same answer
// says whether the API is served without authentication, which a red banner shows.

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

// showAuth shows the red banner while the orchestrator serves its API without authentication
// (PIPEWEAVE_INSECURE_NO_AUTH: /health says "auth": "none").
function showAuth(auth) {
  const el = document.querySelector('[data-testid="insecure-banner"]');
  if (!el) return;
  el.hidden = auth !== 'none';
  el.textContent = auth === 'none'
    ? 'No authentication: this orchestrator serves its API without API keys (PIPEWEAVE_INSECURE_NO_AUTH). ' +
      'Anyone who can reach it can read, enqueue, cancel and purge. Set PIPEWEAVE_API_KEYS outside local development.'
    : '';
}

// refresh reads /health now; a failure leaves the banner as it was.
export async function refreshMaintenance() {
  try {
    const resp = await fetch('/health', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const body = await resp.json();
    if (body && body.maintenance) show(body.maintenance.mode);
    if (body) showAuth(body.auth);
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
