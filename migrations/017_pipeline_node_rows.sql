-- The node rows of pipeline runs (never a map node's items, never a superseded attempt), by run
-- and task: what the claim's upstream read, the run's tally (FinishPipelineRunIfDone) and the
-- map row's statements look up. task_runs_pipeline_node (migration 014) holds the items too,
-- and with a run's items in task_runs_pipeline_run as well, the planner could pick either to
-- find a node's row and filter out every item of the run: 10,000 rows read for each item a
-- claim took (issue 15, the map benchmark: 0.5-1 s per claim of 100 items).
CREATE INDEX task_runs_pipeline_node_rows ON task_runs (pipeline_run_id, task_id)
    WHERE pipeline_run_id IS NOT NULL AND superseded_by IS NULL AND item_index IS NULL;
