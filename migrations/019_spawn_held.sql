-- Spawn nodes' maxConcurrency (issue 15; docs/dynamic-pipelines.md, Spawn).
--
-- A spawn node declared with maxConcurrency n holds its spawned runs past the first n: they are
-- inserted pending with available_at '9999-12-31' (no claim reaches them; a paused pipeline's
-- parking, migration 009, uses '9999-01-01' and keeps this time in parked_available_at), and
-- each spawned run that resolves releases the next held one, in index order, in the transaction
-- that counts its spawning row down (under the pipeline run's lock). At most n of a node's
-- spawned runs are thus ready or in flight at once, across every instance, without the claim
-- knowing of it.
CREATE INDEX task_runs_spawn_held ON task_runs (spawned_by, item_index)
    WHERE status = 'pending' AND superseded_by IS NULL
      AND (available_at = '9999-12-31 00:00:00+00' OR parked_available_at = '9999-12-31 00:00:00+00');
