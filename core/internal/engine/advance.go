package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// advanceFailed advances the pipeline runs of attempts that failed for good.
func (e *Engine) advanceFailed(ctx context.Context, tx dbtx, runs map[string]*lockedRun, ended []endedAttempt) error {
	byRun := map[string][]resolution{}
	for _, a := range ended {
		if a.Status == protocol.StatusFailed && a.PipelineRunID != "" {
			byRun[a.PipelineRunID] = append(byRun[a.PipelineRunID], resolution{taskID: a.TaskID, failed: true, runID: a.ID})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(byRun)) {
		run := runs[id]
		if run == nil {
			return fmt.Errorf("pipeline run %s was not locked before its task runs", id)
		}
		if err := e.advance(ctx, tx, run, byRun[id], false); err != nil {
			return err
		}
	}
	return nil
}

// lockedRun is a pipeline run locked for advancement.
type lockedRun struct {
	id, mode string
	status   protocol.PipelineRunStatus
	snap     snapshot
	// ended: this transaction ended the run (finishIfDone).
	ended bool
	// readied: this transaction made a node of the run pending.
	readied bool
	// deferItems: completions are collected in items, for the caller to advance once with
	// all of them (a group commit of several callbacks: map items, parallel branches that
	// end together), instead of each one advancing on its own, with its own statements.
	deferItems bool
	items      []resolution
	// Sub-pipelines (subpipelines.go): parentID is the parent run ("" = none), parent its locked
	// row (lockRuns locks ancestors too), depth the number of ancestors, hasSubs whether the
	// snapshot has sub-pipeline nodes, set the runs locked with it (children locked later join
	// it: one lockedRun per run and transaction), endDone whether the consequences of the run's
	// end were carried out.
	parentID string
	parent   *lockedRun
	depth    int
	hasSubs  bool
	set      map[string]*lockedRun
	endDone  bool
	// hasSpawns: the snapshot has spawn nodes (spawn.go), set with hasSubs.
	hasSpawns bool
}

// lockRuns locks the pipeline runs named (empty ids ignored) in id order. Every writer locks a
// pipeline run before its task runs, so advancement of one run is serialised and nothing
// deadlocks.
func (e *Engine) lockRuns(ctx context.Context, tx dbtx, runIDs []string) (map[string]*lockedRun, error) {
	want := pipelineRunsToLock(runIDs)
	if len(want) == 0 {
		return map[string]*lockedRun{}, nil
	}
	rows, err := queries.LockPipelineRuns(ctx, tx, want)
	if err != nil {
		return nil, fmt.Errorf("lock pipeline runs: %w", err)
	}
	return lockedRuns(rows)
}

// pipelineRunsToLock is runIDs without empty ids and repeats.
func pipelineRunsToLock(runIDs []string) []string {
	var want []string
	for _, id := range runIDs {
		if id != "" && !slices.Contains(want, id) {
			want = append(want, id)
		}
	}
	return want
}

// lockedRuns reads the rows of LockPipelineRuns.
func lockedRuns(rows []dbsqlc.LockPipelineRunsRow) (map[string]*lockedRun, error) {
	out := make(map[string]*lockedRun, len(rows))
	for _, row := range rows {
		r := &lockedRun{id: row.ID, status: row.Status, mode: row.FailureMode, parentID: row.ParentRunID, depth: row.Depth}
		if err := json.Unmarshal(row.Snapshot, &r.snap); err != nil {
			return nil, fmt.Errorf("pipeline run %s: snapshot: %w", r.id, err)
		}
		out[r.id] = r
	}
	linkRuns(out)
	return out, nil
}

// resolution is a node that reached a final state.
type resolution struct {
	taskID    string
	completed bool
	failed    bool // failed itself, or skipped because something upstream failed
	selected  []string
	// mapRow: the resolution is a map node's own row (mapnodes.go), not one of its items, or a
	// spawning row's (spawn.go).
	mapRow bool
	// runID is the task run that resolved, when known ('' for a node resolved without a worker):
	// a spawned run's resolution counts its spawning row down (spawn.go).
	runID string
}

// advanceNodes moves a locked pipeline run on after nodes resolved, in the caller's transaction:
// successors are enabled or skipped with one multi-row statement per wave (skips propagate),
// a failure in fail-fast mode cancels what has not started, and the run is finished when no
// node is left open. last says that nothing follows in the transaction, which is then
// committed with the advance's last statements when they can be known in advance (below).
func (e *Engine) advanceNodes(ctx context.Context, tx dbtx, run *lockedRun, resolved []resolution, last bool) error {
	if run.status != protocol.PipelineRunning {
		return nil
	}
	// Spawned runs (spawn.go) count their spawning rows down instead of advancing anything.
	if run.hasSpawns {
		var err error
		if resolved, err = e.resolveSpawned(ctx, tx, run, resolved); err != nil {
			return err
		}
		if len(resolved) == 0 {
			return nil
		}
	}
	// Map nodes (mapnodes.go): items count their map rows down instead of advancing anything.
	var hasMaps bool
	for _, r := range resolved {
		hasMaps = hasMaps || run.snap.Tasks[r.taskID] != nil && run.snap.Tasks[r.taskID].Map != nil
	}
	if hasMaps {
		var err error
		if resolved, err = e.resolveItems(ctx, tx, run, resolved); err != nil {
			return err
		}
		if len(resolved) == 0 {
			// Items only counted their map rows down: those rows are open, so the run goes on.
			return nil
		}
	}
	// db sends the advance's statements. A success that chose no successors (selectedNext)
	// in a mode that skips nothing on success (fail-fast, partial-merge) advances in one wave,
	// so when it is the transaction's last work, that wave (or the finish of a node without
	// successors) carries COMMIT: one round trip fewer (database.CommitWithBatch). Should a
	// second wave follow anyway, the committed transaction refuses its statements.
	db := dbsqlc.Batcher(tx)
	if last && run.mode != Continue && len(resolved) == 1 && resolved[0].completed && len(resolved[0].selected) == 0 &&
		!leadsToMap(run, resolved[0].taskID) {
		if c, ok := database.CommitWithBatch(tx); ok {
			db = c
		}
	}
	if run.mode == FailFast {
		var failed []string
		for _, r := range resolved {
			if r.failed {
				failed = append(failed, r.taskID)
			}
		}
		if len(failed) > 0 {
			// The status (cancelled) and code (CANCELLED) say what happened; the text says why.
			reason := "task " + strings.Join(failed, ", ") + " failed (fail-fast)"
			if err := queries.CancelPipelineNodes(ctx, tx, dbsqlc.CancelPipelineNodesParams{PipelineRunID: run.id,
				Statuses: statusTexts(protocol.StatusWaiting, protocol.StatusPending), Reason: reason}); err != nil {
				return fmt.Errorf("fail-fast %s: %w", run.id, err)
			}
			resolved = nil
		}
	}
	// advanced: an AdvanceSuccessors ran, and the finish that came with it is current.
	advanced := false
	// mapped: map rows the advance made ready that resolved at once.
	var mapped []resolution
	for len(resolved) > 0 {
		type effect struct {
			n           int
			sel, failed bool
		}
		effects := map[string]*effect{}
		var order []string
		for _, r := range resolved {
			node := run.snap.Tasks[r.taskID]
			if node == nil {
				continue
			}
			for _, next := range node.AllowedNext {
				if slices.Contains(run.snap.EntryTasks, next) {
					continue
				}
				ef := effects[next]
				if ef == nil {
					ef = &effect{}
					effects[next] = ef
					order = append(order, next)
				}
				ef.n++
				ef.sel = ef.sel || selects(r.completed, r.selected, next)
				ef.failed = ef.failed || r.failed
			}
		}
		if len(order) == 0 {
			break
		}
		ns, sels, fails := make([]int, len(order)), make([]bool, len(order)), make([]bool, len(order))
		for i, id := range order {
			ns[i], sels[i], fails[i] = effects[id].n, effects[id].sel, effects[id].failed
		}
		// The run's finish, if it is done, travels with the advance (one round trip); skips
		// that propagate advance (and try to finish) again.
		rows, f, err := queries.AdvanceSuccessorsAndFinish(ctx, db, dbsqlc.AdvanceSuccessorsParams{PipelineRunID: run.id, FailureMode: run.mode,
			TaskIDs: order, Resolved: ns, Selected: sels, Failed: fails})
		if err != nil {
			return fmt.Errorf("advance %s: %w", run.id, err)
		}
		advanced = true
		run.finished(f)
		next := []resolution{}
		for _, r := range rows {
			run.readied = run.readied || r.Status == protocol.StatusPending
			if r.Status == protocol.StatusSkipped {
				next = append(next, resolution{taskID: r.TaskID, failed: r.UpstreamFailed && run.mode == Continue})
			}
			if r.Status == protocol.StatusPending && run.snap.Tasks[r.TaskID] != nil && run.snap.Tasks[r.TaskID].Map != nil {
				res, err := e.fanOut(ctx, tx, run, r.TaskID)
				if err != nil {
					return err
				}
				if res != nil {
					mapped = append(mapped, *res)
				}
			} else if r.Status == protocol.StatusPending && run.hasSubs && run.snap.Tasks[r.TaskID] != nil && run.snap.Tasks[r.TaskID].Pipeline != "" {
				// A sub-pipeline node starts its child run (subpipelines.go).
				res, err := e.startChild(ctx, tx, run, r.TaskID)
				if err != nil {
					return err
				}
				if res != nil {
					mapped = append(mapped, *res)
				}
			}
		}
		resolved = next
	}
	if len(mapped) > 0 {
		// Map rows that resolved at once (failed, or an empty array) and sub-pipeline nodes
		// whose child could not start advance in turn.
		return e.advance(ctx, tx, run, mapped, false)
	}
	if advanced {
		return nil
	}
	return e.finishIfDone(ctx, db, run)
}

// finishIfDone ends a running pipeline run whose nodes are all resolved (or, in fail-fast
// mode, one of which failed): FinishPipelineRunIfDone, in one statement sent on db.
func (e *Engine) finishIfDone(ctx context.Context, db dbsqlc.Batcher, run *lockedRun) error {
	f, err := queries.FinishPipelineRunIfDoneIn(ctx, db, run.id)
	if err != nil {
		return fmt.Errorf("finish %s: %w", run.id, err)
	}
	run.finished(f)
	return nil
}

// finished records what FinishPipelineRunIfDone answered: the status the run ended with, or
// the empty string when it goes on.
func (r *lockedRun) finished(status string) {
	if status == "" {
		return
	}
	r.ended = r.ended || r.status == protocol.PipelineRunning
	r.status = protocol.PipelineRunStatus(status)
}

// leadsToMap says whether a successor of node taskID in run is a map node or a sub-pipeline
// node, whose fan-out or child run follows the advance in the same transaction.
func leadsToMap(run *lockedRun, taskID string) bool {
	n := run.snap.Tasks[taskID]
	if n == nil {
		return false
	}
	for _, next := range n.AllowedNext {
		if m := run.snap.Tasks[next]; m != nil && (m.Map != nil || m.Pipeline != "") {
			return true
		}
	}
	return false
}
