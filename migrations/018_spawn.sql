-- Spawn nodes (issue 15, item 1's last part; docs/dynamic-pipelines.md).
--
-- A success callback of a spawn node's run may spawn task runs known only at run time. Each is
-- a row of its pipeline run with item_index set (0, 1, ... in the callback's order: the tally
-- and the upstream reads, which take item_index IS NULL, leave it out) and spawned_by naming
-- the spawning row (NULL on every other row), which waits with items_total/items_left as a map
-- row does. The spawned rows may be of any task of the spawning task's service.
ALTER TABLE task_runs ADD COLUMN spawned_by text;

-- A spawning row's runs in index order: the count-down's completion reads their outputs.
CREATE INDEX task_runs_spawned_by ON task_runs (spawned_by, item_index)
    WHERE spawned_by IS NOT NULL AND superseded_by IS NULL;

-- One current row per node of a pipeline run, per item of a map node, and per spawned run of a
-- spawning row: spawned rows of two nodes (or of a map's own task) never collide.
DROP INDEX task_runs_pipeline_node;
CREATE UNIQUE INDEX task_runs_pipeline_node ON task_runs (pipeline_run_id, task_id, item_index, spawned_by) NULLS NOT DISTINCT
    WHERE pipeline_run_id IS NOT NULL AND superseded_by IS NULL;
