-- Maintenance mode (upstream's orchestrator_state): one row that every instance, the standalone
-- loop, inline dispatch and the serverless process function read before claiming work.
--
--   running                  claims as usual
--   waiting_for_maintenance  no new claims; runs already dispatching or running finish
--   maintenance              entered once nothing is in flight; no claims
--
-- Enqueue and trigger keep accepting work in every mode: it waits as pending. Mode changes
-- take the claim advisory lock, and the claim statement reads the mode after taking it, so
-- that no claim commits after a change to a mode that forbids it has committed.

CREATE TABLE orchestrator_state (
    id              text PRIMARY KEY DEFAULT 'singleton' CHECK (id = 'singleton'),
    mode            text NOT NULL DEFAULT 'running'
                    CHECK (mode IN ('running', 'waiting_for_maintenance', 'maintenance')),
    mode_changed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO orchestrator_state (id) VALUES ('singleton');
