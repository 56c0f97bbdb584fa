-- Sub-pipelines (issue 15, item 2; docs/dynamic-pipelines.md).
--
-- A pipeline's nodes may declare {"<taskId>": {"pipeline": "<pipelineId>"}}: when that node
-- becomes ready, the engine triggers a child run of the referenced pipeline in the same
-- transaction, and the node row stays waiting (which no claim takes) until the child ends.
--
-- parent_run_id and parent_node_run_id name the parent pipeline run and the node row (task_runs)
-- a child run stands for (NULL: a top-level run). ancestors lists every ancestor, the top-level
-- run first and the parent last (NULL: none): a run is locked with its ancestors, in id order,
-- and a child's id is always greater than its parent's, so a parent is locked before its
-- children.
ALTER TABLE pipeline_runs ADD COLUMN parent_run_id text;
ALTER TABLE pipeline_runs ADD COLUMN parent_node_run_id text;
ALTER TABLE pipeline_runs ADD COLUMN ancestors text[];

CREATE INDEX pipeline_runs_parent ON pipeline_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- LockPipelineRuns looks up the ancestors of the runs it locks: through this index, which holds
-- only child runs, that lookup costs a run without a parent one probe of a small (or empty) index.
CREATE INDEX pipeline_runs_with_ancestors ON pipeline_runs (id) WHERE ancestors IS NOT NULL;
