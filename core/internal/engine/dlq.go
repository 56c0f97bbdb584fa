package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// DLQFilter selects DLQ entries. State is "" (all), "open" (not retried yet) or "retried".
type DLQFilter struct {
	TaskID, PipelineID, State, Cursor string
	Limit                             int
}

// DLQPage is one page of the DLQ with the number of entries the filter matches.
type DLQPage struct {
	Items      []DLQEntry
	Total      int64
	NextCursor string
}

// ListDLQ lists dead letter entries, newest first, with each entry's input inline when it is
// small (see inlineInputs) and the number of entries the filter matches.
func (e *Engine) ListDLQ(ctx context.Context, f DLQFilter) (DLQPage, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return DLQPage{}, err
	}
	switch f.State {
	case "", "open", "retried":
	default:
		return DLQPage{}, invalid("INVALID_STATE", "state must be open or retried, got %q", f.State)
	}
	if err := checkCursor(f.Cursor); err != nil {
		return DLQPage{}, err
	}
	rows, err := queries.DLQList(ctx, e.db, dbsqlc.DLQListParams{TaskID: f.TaskID, Cursor: f.Cursor, Max: limit + 1,
		PipelineID: f.PipelineID, State: f.State})
	if err != nil {
		return DLQPage{}, fmt.Errorf("list dlq: %w", err)
	}
	items := make([]DLQEntry, len(rows))
	inline := make([][]byte, len(rows))
	for i, r := range rows {
		if items[i], err = dlqEntryOf(dbsqlc.DLQGetRow(r)); err != nil {
			return DLQPage{}, fmt.Errorf("list dlq: %w", err)
		}
		inline[i] = r.Input
	}
	page := paginate(items, limit, func(d DLQEntry) string { return d.ID })
	out := DLQPage{Items: page.Items, NextCursor: page.NextCursor}
	if out.Total, err = queries.DLQTotal(ctx, e.db, dbsqlc.DLQTotalParams{TaskID: f.TaskID, PipelineID: f.PipelineID,
		State: f.State}); err != nil {
		return DLQPage{}, fmt.Errorf("count dlq: %w", err)
	}
	e.inlineInputs(ctx, out.Items, inline)
	return out, nil
}

// GetDLQ returns one DLQ entry, with its input inline when it is small.
func (e *Engine) GetDLQ(ctx context.Context, id string) (DLQEntry, error) {
	r, err := queries.DLQGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return DLQEntry{}, notFound("DLQ_ENTRY_NOT_FOUND", "DLQ entry %q not found", id)
	}
	var d DLQEntry
	if err == nil {
		d, err = dlqEntryOf(r)
	}
	if err != nil {
		return DLQEntry{}, fmt.Errorf("read dlq entry %s: %w", id, err)
	}
	items := []DLQEntry{d}
	e.inlineInputs(ctx, items, [][]byte{r.Input})
	return items[0], nil
}

// RetryDLQ queues a new run for a DLQ entry with the same input, at the task's current code
// version: the same input path, and a copy of the entry's inline input when it has one. When the failed run belonged to a pipeline run, the new run takes its place in that
// run, which re-opens and continues the DAG from there. An entry is retried once; retrying it
// again is a conflict naming the retry run.
func (e *Engine) RetryDLQ(ctx context.Context, id string) (DLQRetryResult, error) {
	runID := ids.New(ids.TaskRun)
	var res DLQRetryResult
	err := e.db.InTx(ctx, func(tx dbtx) error {
		taken, err := queries.DLQTakeForRetry(ctx, tx, dbsqlc.DLQTakeForRetryParams{ID: id, RetryRunID: runID})
		if errors.Is(err, database.ErrNotFound) {
			retryRun, err := queries.DLQRetryState(ctx, tx, id)
			switch {
			case errors.Is(err, database.ErrNotFound):
				return notFound("DLQ_ENTRY_NOT_FOUND", "DLQ entry %q not found", id)
			case err != nil:
				return fmt.Errorf("read dlq entry %s: %w", id, err)
			}
			e := conflict("ALREADY_RETRIED", "DLQ entry %q was already retried as run %q", id, retryRun)
			e.Details = map[string]string{"retryRunId": retryRun}
			return e
		}
		if err != nil {
			return fmt.Errorf("take dlq entry %s: %w", id, err)
		}
		taskID, inputPath := taken.TaskID, taken.InputPath
		if taken.PipelineRunID != "" {
			if err := e.reopen(ctx, tx, taken.PipelineRunID, taskID, taken.TaskRunID, runID); err != nil {
				return err
			}
			if res.CodeVersion, err = queries.RunCodeVersion(ctx, tx, runID); err != nil {
				return fmt.Errorf("read the code version of %s: %w", runID, err)
			}
			res.RunID, res.NewRunID, res.Status, res.TaskID, res.InputPath = runID, runID, "queued", taskID, inputPath
			return nil
		}
		tasks, err := e.enqueueTasks(ctx, tx, []string{taskID})
		if err != nil {
			return err
		}
		t, found := tasks[taskID]
		if !found {
			return conflict("TASK_NOT_REGISTERED", "task %q is no longer registered", taskID)
		}
		var run newRuns
		// The retry's concurrency key comes from its input when it is inline (read with the
		// task's pointer now); for an input in storage it is the failed run's stored key, when
		// that run still exists and has one (as a pipeline node's retry keeps its node's key).
		var ckey *string
		switch {
		case t.concurrencyKey == "":
		case taken.Input != nil:
			ckey = concurrencyKeyOf(t.concurrencyKey, taken.Input)
		case taken.ConcurrencyKey != nil:
			ckey = taken.ConcurrencyKey
		default:
			// Unknown: limited by the task alone, as a run whose input has no value at the
			// pointer (''; a NULL key would be read with the task's unkeyed runs, behind its
			// held-back keyed ones).
			ckey = new(string)
		}
		run.add(runID, taskID, taken.Priority, 0, inputPath, taken.Input, t.codeVersion, t.codeHash, taken.Metadata, "", telemetry.Traceparent(ctx), ckey)
		if err := queries.InsertRuns(ctx, tx, dbsqlc.InsertRunsParams(run)); err != nil {
			return fmt.Errorf("insert retry run: %w", err)
		}
		if err := queries.NotifyReady(ctx, tx); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		res = DLQRetryResult{NewRunID: runID, RunID: runID, Status: "queued", CodeVersion: t.codeVersion, TaskID: taskID, InputPath: inputPath}
		return nil
	})
	return res, err
}

// DLQRetryResult is the run a DLQ retry queued.
type DLQRetryResult struct {
	NewRunID    string
	RunID       string
	Status      string // "queued", as upstream answers
	CodeVersion int
	TaskID      string
	InputPath   string
}

// RetryAllResult reports a bulk DLQ retry.
type RetryAllResult struct {
	Retried int
	Runs    []DLQRetried
	Failed  []DLQRetryFailed
	// More is true when entries matching the filter were left for another call.
	More bool
}

// DLQRetried pairs a retried DLQ entry with the run that retries it.
type DLQRetried struct {
	DLQID  string
	RunID  string
	TaskID string
}

// DLQRetryFailed is an entry a bulk retry could not retry, with the reason.
type DLQRetryFailed struct {
	DLQID string
	Code  string
	Error string
}

// RetryAllDLQ retries, oldest first, up to limit entries not retried yet of task taskID and
// pipeline pipelineID ("" = any), each in its own transaction like RetryDLQ. An entry another
// caller retried meanwhile is left out; one that cannot be retried (its task or pipeline run is
// gone, say) is reported in Failed and the others go on.
func (e *Engine) RetryAllDLQ(ctx context.Context, taskID, pipelineID string, limit int) (RetryAllResult, error) {
	if limit <= 0 || limit > maxRetryAll {
		limit = maxRetryAll
	}
	idList, err := queries.DLQOpenIDs(ctx, e.db, dbsqlc.DLQOpenIDsParams{TaskID: taskID, PipelineID: pipelineID, Max: limit + 1})
	if err != nil {
		return RetryAllResult{}, fmt.Errorf("list dlq entries to retry: %w", err)
	}
	res := RetryAllResult{Runs: []DLQRetried{}, Failed: []DLQRetryFailed{}}
	if len(idList) > limit {
		res.More, idList = true, idList[:limit]
	}
	for _, id := range idList {
		r, err := e.RetryDLQ(ctx, id)
		var ee *Error
		switch {
		case err == nil:
			res.Retried++
			res.Runs = append(res.Runs, DLQRetried{DLQID: id, RunID: r.RunID, TaskID: r.TaskID})
		case errors.As(err, &ee) && ee.Code == "ALREADY_RETRIED":
		case errors.As(err, &ee):
			res.Failed = append(res.Failed, DLQRetryFailed{DLQID: id, Code: ee.Code, Error: ee.Msg})
		default:
			return res, err
		}
	}
	return res, nil
}

// maxRetryAll bounds one bulk retry; callers repeat while More is true.
const maxRetryAll = 500

// PurgeDLQ deletes DLQ entries that failed more than olderThan ago, in bounded chunks.
func (e *Engine) PurgeDLQ(ctx context.Context, olderThan time.Duration) (int64, error) {
	const chunk = 1000
	return e.deleteChunks(ctx, "dlq entries", func(ctx context.Context) (int64, error) {
		return queries.PurgeDLQ(ctx, e.db, dbsqlc.PurgeDLQParams{OlderThanMs: olderThan.Milliseconds(), Max: chunk, Now: e.now()})
	}, chunk, time.Time{})
}

// reopen replaces the failed node failedRunID (of task taskID) of pipeline run prun with a new pending task run
// newRunID and puts every node that was skipped or cancelled back to the state its
// predecessors now call for, so the DAG continues from the retried task.
func (e *Engine) reopen(ctx context.Context, tx dbtx, prun, taskID, failedRunID, newRunID string) error {
	runs, err := e.lockRuns(ctx, tx, []string{prun})
	if err != nil {
		return err
	}
	run := runs[prun]
	switch {
	case run == nil:
		return conflict("PIPELINE_RUN_GONE", "pipeline run %q no longer exists", prun)
	case run.status == protocol.PipelineCancelled:
		return conflict("PIPELINE_RUN_CANCELLED", "pipeline run %q was cancelled; trigger the pipeline again instead", prun)
	case run.parentID != "":
		// The child run of a sub-pipeline node: its end already ended the parent's node.
		return conflict("SUB_PIPELINE_RETRY_UNSUPPORTED", "task run %q belongs to pipeline run %q, a sub-pipeline run of %q, whose node already ended with it: retrying it is not supported; trigger the parent pipeline again instead",
			failedRunID, prun, run.parentID)
	case run.status == protocol.PipelineFailed || run.status == protocol.PipelinePartial:
		// A run that timed out is over, as a cancelled one is: re-opened past its deadline it
		// would only time out again.
		end, err := queries.PipelineRunEnd(ctx, tx, dbsqlc.PipelineRunEndParams{ID: prun, Now: e.now()})
		if err != nil {
			return fmt.Errorf("read why %s ended: %w", prun, err)
		}
		if end.ErrorCode == protocol.PipelineTimeout {
			return conflict("PIPELINE_RUN_TIMED_OUT", "pipeline run %q timed out; trigger the pipeline again instead", prun)
		}
		if end.DeadlinePassed {
			// It failed in time, but its deadline (timeoutMs) has passed since: re-opened, it
			// would time out at the sweep's next pass.
			return conflict("PIPELINE_RUN_DEADLINE_PASSED", "pipeline run %q failed and its deadline has passed since; trigger the pipeline again instead", prun)
		}
	}
	n, err := queries.SupersedeNode(ctx, tx, dbsqlc.SupersedeNodeParams{ID: failedRunID, SupersededBy: newRunID})
	if err != nil {
		return fmt.Errorf("supersede %s: %w", failedRunID, err)
	}
	if n != 1 {
		return conflict("RUN_ALREADY_REPLACED", "task run %q is no longer part of pipeline run %q", failedRunID, prun)
	}
	if run.hasSpawns {
		// A spawned run (spawn.go) waits again with its spawning row, or not at all.
		spawner, err := queries.SpawnedByOf(ctx, tx, failedRunID)
		if err != nil {
			return fmt.Errorf("read the spawning row of %s: %w", failedRunID, err)
		}
		if spawner.SpawnedBy != "" {
			return e.reopenSpawned(ctx, tx, prun, spawner.SpawnedBy, failedRunID, newRunID, spawnBound(run, spawner.SpawnerTask))
		}
	}
	// A failed run of a map node is one of its items (the map row never goes to a worker).
	item := run.snap.Tasks[taskID] != nil && run.snap.Tasks[taskID].Map != nil
	if item {
		err = queries.InsertRetryItem(ctx, tx, dbsqlc.InsertRetryItemParams{OldID: failedRunID, ID: newRunID})
	} else {
		err = queries.InsertRetryNode(ctx, tx, dbsqlc.InsertRetryNodeParams{OldID: failedRunID, ID: newRunID})
	}
	if err != nil {
		return fmt.Errorf("insert retry of %s: %w", failedRunID, err)
	}
	nodes := map[string]*nodeState{}
	rows, err := queries.PipelineNodesState(ctx, tx, prun)
	if err != nil {
		return fmt.Errorf("read nodes of %s: %w", prun, err)
	}
	for _, r := range rows {
		nodes[r.TaskID] = &nodeState{id: r.ID, status: r.Status, selectedNext: r.SelectedNext, upstreamFailed: r.UpstreamFailed, fannedOut: r.FannedOut}
	}
	// Map rows re-opened whose items had all resolved: they complete once the run is open.
	var mapsDone []string
	if item {
		mapRow := nodes[taskID]
		if mapRow == nil {
			return fmt.Errorf("pipeline run %s has no map row for %s", prun, taskID)
		}
		n, err := queries.MapRowOpen(ctx, tx, mapRow.id)
		if err != nil {
			return fmt.Errorf("count map row %s up: %w", mapRow.id, err)
		}
		if run.snap.Tasks[taskID].Map.MaxConcurrency != nil {
			e.flowControlOn() // the retry is a bounded item
		}
		if n == 1 {
			// The map still waits for items: the retry is one more, and the run goes on.
			if err := queries.NotifyReady(ctx, tx); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
			return nil
		}
		if _, err := e.reopenMapRow(ctx, tx, run, nodes, taskID); err != nil {
			return err
		}
	}
	g := &Graph{EntryTasks: run.snap.EntryTasks, Tasks: run.snap.Tasks}
	depth := g.levels()
	order := g.sortedIDs()
	slices.SortStableFunc(order, func(a, b string) int { return depth[a] - depth[b] })
	for _, taskID := range order {
		n := nodes[taskID]
		if n == nil || (n.status != protocol.StatusSkipped && n.status != protocol.StatusCancelled) {
			continue
		}
		isMap := run.snap.Tasks[taskID].Map != nil
		if isMap && n.fannedOut {
			// Cancelled or skipped after it made its items: it waits again for those that
			// have not resolved.
			left, err := e.reopenMapRow(ctx, tx, run, nodes, taskID)
			if err != nil {
				return err
			}
			if left == 0 {
				mapsDone = append(mapsDone, taskID)
			}
			continue
		}
		if run.snap.Tasks[taskID].Spawn != nil && n.fannedOut {
			// A spawn node cancelled or skipped after it spawned: its row would be dispatched
			// again, and spawn again beside its old runs (spawn.go).
			return conflict("SPAWN_REOPEN_UNSUPPORTED", "pipeline run %q: spawn node %q (%s) already spawned its runs, which a DLQ retry cannot re-open; trigger the pipeline again instead",
				prun, taskID, n.status)
		}
		if run.snap.Tasks[taskID].Pipeline != "" {
			// A sub-pipeline node would need a new child run, which re-opening does not start.
			return conflict("SUB_PIPELINE_REOPEN_UNSUPPORTED", "pipeline run %q has sub-pipeline node %q (%s), which a DLQ retry cannot re-open; trigger the pipeline again instead",
				prun, taskID, n.status)
		}
		left, selected, failed := 0, false, false
		preds := run.snap.Tasks[taskID].Predecessors
		for _, p := range preds {
			pn := nodes[p]
			switch {
			case pn == nil:
			case pn.status == protocol.StatusCompleted:
				selected = selected || selects(true, pn.selectedNext, taskID)
			case pn.status == protocol.StatusFailed:
				failed = true
			case pn.status == protocol.StatusSkipped || pn.status == protocol.StatusCancelled:
				failed = failed || (pn.upstreamFailed && run.mode == Continue)
			default:
				left++
			}
		}
		status := protocol.StatusWaiting
		switch {
		case left > 0:
		case len(preds) == 0:
			status, selected = protocol.StatusPending, true
		case run.mode == Continue && failed:
			status = protocol.StatusSkipped
		case selected:
			status = protocol.StatusPending
		default:
			status = protocol.StatusSkipped
		}
		if isMap && status == protocol.StatusPending {
			// Its fan-out would have to run here, which re-opening does not do (a map row
			// that never fanned out had a predecessor still open when the run ended).
			return conflict("MAP_REOPEN_UNSUPPORTED", "pipeline run %q: map node %q would have to make its items again, which a DLQ retry does not do; trigger the pipeline again instead",
				prun, taskID)
		}
		n.status, n.upstreamFailed = status, failed
		if err := queries.ReopenNode(ctx, tx, dbsqlc.ReopenNodeParams{ID: n.id, Status: string(status), PredsLeft: left, Selected: selected,
			UpstreamFailed: failed}); err != nil {
			return fmt.Errorf("re-open %s: %w", n.id, err)
		}
	}
	if err := queries.ReopenPipelineRun(ctx, tx, prun); err != nil {
		return fmt.Errorf("re-open %s: %w", prun, err)
	}
	run.status = protocol.PipelineRunning
	for _, mapTask := range mapsDone {
		if err := e.completeMapRow(ctx, tx, prun, mapTask, nodes[mapTask].id); err != nil {
			return err
		}
		if err := e.advance(ctx, tx, run, []resolution{{taskID: mapTask, completed: true, mapRow: true}}, false); err != nil {
			return err
		}
	}
	if err := queries.NotifyReady(ctx, tx); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// rerunDownstream prepares the nodes downstream of map node taskID, which a DLQ retry
// re-opens, to run again on its new output: each one that completed or failed (under continue
// or partial-merge they ran on the map's output) is superseded by a new waiting row, marked
// for reopen to set its state like the skipped and cancelled ones. A node downstream that is
// under way (pending, dispatching, running) or is itself a map or sub-pipeline node that ran is 409
// MAP_REOPEN_UNSUPPORTED, and the transaction rolls back.
func (e *Engine) rerunDownstream(ctx context.Context, tx dbtx, run *lockedRun, nodes map[string]*nodeState, taskID string) error {
	seen := map[string]bool{}
	queue := slices.Clone(run.snap.Tasks[taskID].AllowedNext)
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		sn := nodes[next]
		if seen[next] || sn == nil {
			continue
		}
		seen[next] = true
		queue = append(queue, run.snap.Tasks[next].AllowedNext...)
		switch sn.status {
		case protocol.StatusWaiting:
			// Its preds_left already counted the map row (or a node re-run below): reopen
			// derives its state again from its predecessors', as for a cancelled node.
			sn.status = protocol.StatusCancelled
			continue
		case protocol.StatusSkipped, protocol.StatusCancelled:
			continue
		case protocol.StatusCompleted, protocol.StatusFailed:
			if run.snap.Tasks[next].Map == nil && run.snap.Tasks[next].Pipeline == "" {
				break
			}
			fallthrough
		default:
			return conflict("MAP_REOPEN_UNSUPPORTED", "pipeline run %q: %s, downstream of map node %q, is %s: a DLQ retry cannot re-open the map now; wait for it to end, or trigger the pipeline again",
				run.id, next, taskID, sn.status)
		}
		newID := ids.New(ids.TaskRun)
		if _, err := queries.SupersedeNode(ctx, tx, dbsqlc.SupersedeNodeParams{ID: sn.id, SupersededBy: newID}); err != nil {
			return fmt.Errorf("supersede %s: %w", sn.id, err)
		}
		if err := queries.InsertRerunNode(ctx, tx, dbsqlc.InsertRerunNodeParams{OldID: sn.id, ID: newID}); err != nil {
			return fmt.Errorf("insert the re-run of %s: %w", sn.id, err)
		}
		// reopen sets its state from its predecessors', as for a cancelled node.
		nodes[next] = &nodeState{id: newID, status: protocol.StatusCancelled}
	}
	return nil
}

// nodeState is a node row of a pipeline run as reopen reads it.
type nodeState struct {
	id             string
	status         protocol.TaskRunStatus
	selectedNext   []string
	upstreamFailed bool
	// fannedOut: a map row that made its items.
	fannedOut bool
}

// reopenMapRow re-opens the map row of node taskID, which ended (failed, cancelled, skipped,
// or completed with failed items), for a DLQ retry: its cancelled items go back to pending and
// it waits for every item that has not resolved (ReopenMapRow); left is how many. Its
// successors must not have started on its output: then it is 409 MAP_REOPEN_UNSUPPORTED and
// the transaction rolls back.
func (e *Engine) reopenMapRow(ctx context.Context, tx dbtx, run *lockedRun, nodes map[string]*nodeState, taskID string) (left int, err error) {
	if err := e.rerunDownstream(ctx, tx, run, nodes, taskID); err != nil {
		return 0, err
	}
	if run.snap.Tasks[taskID].Map.MaxConcurrency != nil {
		// Its pending items are bounded: ClaimFlowControl's (as after its fan-out).
		e.flowControlOn()
	}
	n := nodes[taskID]
	left, err = queries.ReopenMapRow(ctx, tx, dbsqlc.ReopenMapRowParams{PipelineRunID: run.id, TaskID: taskID, MapRowID: n.id})
	if err != nil {
		return 0, fmt.Errorf("re-open map row %s: %w", n.id, err)
	}
	n.status = protocol.StatusWaiting
	return left, nil
}
