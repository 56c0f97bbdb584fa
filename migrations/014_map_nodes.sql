-- Map nodes (issue 15, item 1; docs/dynamic-pipelines.md).
--
-- A pipeline declares per-node configuration in nodes (NULL: none), a JSON object keyed by task
-- id: {"<taskId>": {"map": {"over": "<taskId>", "items": "<JSON pointer>", "maxItems": n}}}.
-- Each run's snapshot carries it on the node (tasks.<taskId>.map).
ALTER TABLE pipelines ADD COLUMN nodes jsonb;

-- A map node keeps one row per run (the map row, item_index NULL), which never goes to a worker;
-- each of its items is a row of its own with item_index set (0, 1, ...). items_total and
-- items_left count the map row's items (NULL on every other row).
ALTER TABLE task_runs ADD COLUMN item_index integer;
ALTER TABLE task_runs ADD COLUMN items_total integer;
ALTER TABLE task_runs ADD COLUMN items_left integer;

-- One current row per node of a pipeline run, and per item of a map node.
DROP INDEX task_runs_pipeline_node;
CREATE UNIQUE INDEX task_runs_pipeline_node ON task_runs (pipeline_run_id, task_id, item_index) NULLS NOT DISTINCT
    WHERE pipeline_run_id IS NOT NULL AND superseded_by IS NULL;
