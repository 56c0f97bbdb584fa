-- DAG pipelines: the per-node state a pipeline run's task runs need to advance.

ALTER TABLE task_runs
    -- The node's predecessors in the run's snapshot.
    ADD COLUMN predecessors    text[] NOT NULL DEFAULT '{}',
    -- Predecessors not yet resolved; the node leaves `waiting` when this reaches 0.
    ADD COLUMN preds_left      integer NOT NULL DEFAULT 0,
    -- Some resolved predecessor selected this node.
    ADD COLUMN selected        boolean NOT NULL DEFAULT false,
    -- Some predecessor failed, or was skipped because of a failure further up.
    ADD COLUMN upstream_failed boolean NOT NULL DEFAULT false,
    -- Set on a failed node that a DLQ retry replaced with a new task run.
    ADD COLUMN superseded_by   text;

-- One current task run per node of a pipeline run.
DROP INDEX task_runs_pipeline_run;
CREATE UNIQUE INDEX task_runs_pipeline_node ON task_runs (pipeline_run_id, task_id)
    WHERE pipeline_run_id IS NOT NULL AND superseded_by IS NULL;
CREATE INDEX task_runs_pipeline_run ON task_runs (pipeline_run_id) WHERE pipeline_run_id IS NOT NULL;

CREATE INDEX pipeline_runs_status ON pipeline_runs (status, id);

-- Queue tables churn: have autovacuum analyze and vacuum them after a small share of changes,
-- so that plans follow their size and dead tuples do not pile up.
ALTER TABLE task_runs SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE pipeline_runs SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE run_status_deltas SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);
