-- Map nodes' maxConcurrency (issue 15, item 1; docs/dynamic-pipelines.md).
--
-- The items of a map node declared with maxConcurrency carry it in map_concurrency (NULL on every
-- other row): at most that many items of one map row (the rows of the same pipeline run and task
-- with item_index set) are in flight (dispatching or running) at once. The plain claim never takes
-- such rows; ClaimFlowControl reads them map row by map row, under the claim lock, so the bound
-- holds across instances. A task's own limits (concurrency, concurrencyPerKey, rate limit) hold
-- for them too.
ALTER TABLE task_runs ADD COLUMN map_concurrency integer;

-- The claim's path for bounded items: their pending rows by map row (one index descent per map row).
CREATE INDEX task_runs_pending_bounded ON task_runs (pipeline_run_id, task_id, priority, available_at, id)
    WHERE status = 'pending' AND map_concurrency IS NOT NULL;
-- Bounded items in flight, per map row.
CREATE INDEX task_runs_inflight_bounded ON task_runs (pipeline_run_id, task_id)
    WHERE status IN ('dispatching', 'running') AND map_concurrency IS NOT NULL;
