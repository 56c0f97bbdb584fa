-- Two indexes fewer on task_runs, each of which every version of every run entered.
--
-- A run's status changes at least three times (pending, dispatching, running, completed), and a
-- change of an indexed column (status is in the predicate of most partial indexes) makes a new
-- entry in every index whose predicate the new version meets. task_runs_task_id (task_id, id)
-- took all four versions of each run and task_runs_live (status, id) the three live ones: seven
-- of the seventeen index entries a standalone task made. With them gone a batch of 1,000 runs
-- inserts in 16 ms where it took 20, and `pipeweave bench --worker-process` enqueues ~24,000
-- runs/s where it did ~19,000 (README, Performance).
--
-- What they served is served by the partial indexes the claim and the sweep keep anyway:
-- counts of live work per status (QueueLiveCounts) by task_runs_pending, task_runs_inflight and
-- task_runs_waiting below; the runs a removed task leaves (OrphanTasks) by task_runs_pending and
-- task_runs_waiting. Listings (RunList) walk the primary key newest first, as their generic
-- plan did already: its optional filters are parameters that no index predicate can match.
DROP INDEX task_runs_live;
DROP INDEX task_runs_task_id;

-- Pipeline nodes waiting for their predecessors, per task; standalone runs never wait.
CREATE INDEX task_runs_waiting ON task_runs (task_id, id) WHERE status = 'waiting';
