package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
)

var (
	sqlActiveTasks        = q("active_tasks")
	sqlPipelineGet        = q("pipeline_get")
	sqlPipelineList       = q("pipeline_list")
	sqlUpsertPipeline     = q("upsert_pipeline")
	sqlInsertPipelineRun  = q("insert_pipeline_run")
	sqlInsertPipelineRuns = q("insert_pipeline_task_runs")
	sqlPipelineRunOf      = q("pipeline_run_of_task_run")
	sqlLockPipelineRuns   = q("lock_pipeline_runs")
	sqlAdvanceSuccessors  = q("advance_successors")
	sqlPipelineRunTally   = q("pipeline_run_tally")
	sqlFinishPipelineRun  = q("finish_pipeline_run")
	sqlCancelNodes        = q("cancel_pipeline_nodes")
	sqlUpstreamRefs       = q("upstream_refs")
	sqlAllowedNextOfRun   = q("allowed_next_of_run")
	sqlPipelineRunGet     = q("pipeline_run_get")
	sqlPipelineRunList    = q("pipeline_run_list")
	sqlPipelineRunTasks   = q("pipeline_run_task_runs")
	sqlPreviousVersions   = q("previous_code_versions")
)

// Failure modes of a pipeline run.
const (
	FailFast     = "fail-fast"
	Continue     = "continue"
	PartialMerge = "partial-merge"
)

func validFailureMode(m string) bool { return m == FailFast || m == Continue || m == PartialMerge }

// Pipeline is a pipeline definition with the structure it has now, and the graph behind it.
type Pipeline struct {
	protocol.Pipeline

	graph *Graph
}

func (e *Engine) activeTasks(ctx context.Context, db dbtx) (map[string]taskInfo, map[string]int, error) {
	rows, err := db.Query(ctx, sqlActiveTasks)
	if err != nil {
		return nil, nil, fmt.Errorf("read tasks: %w", err)
	}
	defer rows.Close()
	tasks, prios := map[string]taskInfo{}, map[string]int{}
	for rows.Next() {
		var id string
		var t taskInfo
		var prio int
		if err := rows.Scan(&id, &t.ServiceID, &t.AllowedNext, &t.CodeVersion, &t.CodeHash, &t.Concurrency, &prio, &t.SchemaHash); err != nil {
			return nil, nil, fmt.Errorf("read tasks: %w", err)
		}
		tasks[id], prios[id] = t, prio
	}
	return tasks, prios, rows.Err()
}

func scanPipeline(row pgx.Row) (Pipeline, error) {
	var p Pipeline
	err := row.Scan(&p.ID, &p.ServiceID, &p.EntryTasks, &p.FailureMode, &p.Implicit, &p.Description, &p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// resolve computes the pipeline's structure from the registered tasks. A service's implicit
// pipeline starts at the service's tasks that no task lists in allowedNext.
func (p *Pipeline) resolve(tasks map[string]taskInfo) {
	if p.Implicit {
		listed := map[string]bool{}
		for _, t := range tasks {
			for _, n := range t.AllowedNext {
				listed[n] = true
			}
		}
		p.EntryTasks = []string{}
		for id, t := range tasks {
			if t.ServiceID == p.ServiceID && !listed[id] {
				p.EntryTasks = append(p.EntryTasks, id)
			}
		}
		slices.Sort(p.EntryTasks)
	}
	p.graph = buildGraph(p.EntryTasks, tasks)
	p.Tasks = p.graph.Tasks
	p.Errors = p.graph.problems()
	if p.Implicit && p.graph.Cycle == nil {
		for id, t := range tasks {
			if _, ok := p.graph.Tasks[id]; t.ServiceID == p.ServiceID && !ok {
				p.Errors = append(p.Errors, fmt.Sprintf("task %q cannot be reached from an entry task", id))
			}
		}
	}
	slices.Sort(p.Errors)
	p.Valid = len(p.Errors) == 0
}

// GetPipeline returns a pipeline and its current structure.
func (e *Engine) GetPipeline(ctx context.Context, id string) (Pipeline, error) {
	p, err := scanPipeline(e.pool.QueryRow(ctx, sqlPipelineGet, id))
	if err == pgx.ErrNoRows {
		return Pipeline{}, notFound("PIPELINE_NOT_FOUND", "pipeline %q not found", id)
	}
	if err != nil {
		return Pipeline{}, fmt.Errorf("read pipeline %s: %w", id, err)
	}
	tasks, _, err := e.activeTasks(ctx, e.pool)
	if err != nil {
		return Pipeline{}, err
	}
	p.resolve(tasks)
	return p, nil
}

// Pipelines lists every pipeline with its current structure.
func (e *Engine) Pipelines(ctx context.Context) ([]Pipeline, error) {
	rows, err := e.pool.Query(ctx, sqlPipelineList)
	if err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Pipeline, error) { return scanPipeline(row) })
	if err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	tasks, _, err := e.activeTasks(ctx, e.pool)
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i].resolve(tasks)
	}
	return nonNil(list), nil
}

func validatePipelineDef(id string, def *protocol.PipelineDefinition) error {
	if !idPattern.MatchString(id) {
		return invalid("INVALID_PIPELINE_ID", "pipeline id %q must be 1-128 letters, digits, '.', '_' or '-'", id)
	}
	if len(def.EntryTasks) == 0 {
		return invalid("INVALID_PIPELINE", "pipeline %q: entryTasks must name at least one task", id)
	}
	for _, t := range def.EntryTasks {
		if !idPattern.MatchString(t) {
			return invalid("INVALID_PIPELINE", "pipeline %q: entry task %q is not a valid task id", id, t)
		}
	}
	if def.FailureMode == "" {
		def.FailureMode = FailFast
	}
	if !validFailureMode(def.FailureMode) {
		return invalid("INVALID_FAILURE_MODE", "pipeline %q: failureMode must be %s, %s or %s", id, FailFast, Continue, PartialMerge)
	}
	return nil
}

// PutPipeline creates or replaces the explicit pipeline id (the id in def is ignored). Tasks it
// names need not be registered yet; a cycle among the registered ones is refused.
func (e *Engine) PutPipeline(ctx context.Context, id string, d protocol.PipelineDefinition) (Pipeline, error) {
	d.ID = id
	if err := validatePipelineDef(id, &d); err != nil {
		return Pipeline{}, err
	}
	tasks, _, err := e.activeTasks(ctx, e.pool)
	if err != nil {
		return Pipeline{}, err
	}
	if g := buildGraph(d.EntryTasks, tasks); g.Cycle != nil {
		return Pipeline{}, cycleError(id, g.Cycle)
	}
	if _, err := e.pool.Exec(ctx, sqlUpsertPipeline, id, nil, d.EntryTasks, d.FailureMode, false, d.Description); err != nil {
		return Pipeline{}, fmt.Errorf("save pipeline %s: %w", id, err)
	}
	return e.GetPipeline(ctx, id)
}

func cycleError(id string, cycle []string) *Error {
	err := invalid("PIPELINE_CYCLE", "pipeline %q has a cycle: %s", id, strings.Join(cycle, " → "))
	err.Details = map[string]any{"cycle": cycle}
	return err
}

// DryRun is the answer of a dry run.
type DryRun = protocol.DryRun

// DryRunPipeline validates a pipeline without running it and returns its plan by levels.
func (e *Engine) DryRunPipeline(ctx context.Context, id string) (DryRun, error) {
	p, err := e.GetPipeline(ctx, id)
	if err != nil {
		return DryRun{}, err
	}
	out := DryRun{Valid: p.Valid, ExecutionPlan: []PlanStep{}, Warnings: nonNil(p.graph.warnings()), Errors: nonNil(p.Errors)}
	if p.graph.Cycle == nil && len(p.graph.Tasks) > 0 {
		out.ExecutionPlan = p.graph.plan()
	}
	return out, nil
}

// TriggerRequest is the body of POST /api/pipelines/{id}/trigger.
type TriggerRequest struct {
	Input       json.RawMessage `json:"input"`
	FailureMode string          `json:"failureMode"`
	Priority    *int            `json:"priority"`
	Metadata    json.RawMessage `json:"metadata"`
	// ValidationMode is strict, warn (the default) or none: how the input is checked against
	// every entry task's input schema (inputschema.go).
	ValidationMode string `json:"validationMode"`
}

// TriggerResult is the pipeline run a trigger made.
type TriggerResult = protocol.TriggerResult

// snapshot is the structure a pipeline run follows, stored with it.
type snapshot struct {
	PipelineID  string           `json:"pipelineId"`
	EntryTasks  []string         `json:"entryTasks"`
	FailureMode string           `json:"failureMode"`
	Tasks       map[string]*Node `json:"tasks"`
}

type nodeRow struct {
	ID           string                 `json:"id"`
	TaskID       string                 `json:"task_id"`
	Status       protocol.TaskRunStatus `json:"status"`
	Priority     int                    `json:"priority"`
	CodeVersion  int                    `json:"code_version"`
	CodeHash     string                 `json:"code_hash"`
	Predecessors []string               `json:"predecessors"`
	PredsLeft    int                    `json:"preds_left"`
	Selected     bool                   `json:"selected"`
}

// Trigger starts a run of pipeline id: it stores the input, snapshots the structure, and
// creates every node's task run (entry tasks pending, the others waiting) in one transaction.
// It runs in a "trigger" span (a child of the caller's trace context in ctx, if any), whose
// context the run and its nodes store: every later dispatch of the run continues that trace.
func (e *Engine) Trigger(ctx context.Context, id string, req TriggerRequest) (_ TriggerResult, err error) {
	ctx, span := e.tracer.Start(ctx, "trigger", trace.WithAttributes(telemetry.AttrPipelineID.String(id)))
	defer func() { endSpan(span, err) }()
	if req.Priority != nil && *req.Priority < 0 {
		return TriggerResult{}, invalid("INVALID_PRIORITY", "priority must not be negative")
	}
	if req.Priority != nil && *req.Priority > MaxInt4 {
		return TriggerResult{}, invalid("INVALID_NUMBER", "priority must be at most %d", MaxInt4)
	}
	if req.FailureMode != "" && !validFailureMode(req.FailureMode) {
		return TriggerResult{}, invalid("INVALID_FAILURE_MODE", "failureMode must be %s, %s or %s", FailFast, Continue, PartialMerge)
	}
	if m := nullJSON(req.Metadata); m != nil && m[0] != '{' {
		return TriggerResult{}, invalid("INVALID_METADATA", "metadata must be a JSON object")
	}
	if err := CheckValidationMode(req.ValidationMode); err != nil {
		return TriggerResult{}, err
	}
	p, err := scanPipeline(e.pool.QueryRow(ctx, sqlPipelineGet, id))
	if err == pgx.ErrNoRows {
		return TriggerResult{}, notFound("PIPELINE_NOT_FOUND", "pipeline %q not found", id)
	}
	if err != nil {
		return TriggerResult{}, fmt.Errorf("read pipeline %s: %w", id, err)
	}
	tasks, prios, err := e.activeTasks(ctx, e.pool)
	if err != nil {
		return TriggerResult{}, err
	}
	p.resolve(tasks)
	g := p.graph
	switch {
	case len(g.Missing) > 0:
		err := invalid("PIPELINE_TASKS_MISSING", "pipeline %q names tasks that are not registered: %s", id, strings.Join(g.Missing, ", "))
		err.Details = map[string]any{"missing": g.Missing}
		return TriggerResult{}, err
	case g.Cycle != nil:
		return TriggerResult{}, cycleError(id, g.Cycle)
	case !p.Valid:
		err := invalid("PIPELINE_INVALID", "pipeline %q cannot run: %s", id, strings.Join(p.Errors, "; "))
		err.Details = map[string]any{"errors": p.Errors}
		return TriggerResult{}, err
	}
	warnings, err := e.checkTriggerInput(ctx, req.ValidationMode, req.Input, g.EntryTasks, tasks)
	if err != nil {
		return TriggerResult{}, err
	}
	mode := p.FailureMode
	if req.FailureMode != "" {
		mode = req.FailureMode
	}
	runID := ids.New(ids.PipelineRun)
	span.SetAttributes(telemetry.AttrPipelineRunID.String(runID))
	traceparent := telemetry.Traceparent(ctx)
	inputPath := protocol.PipelineInputPath(runID)
	snap, err := json.Marshal(snapshot{PipelineID: id, EntryTasks: g.EntryTasks, FailureMode: mode, Tasks: g.Tasks})
	if err != nil {
		return TriggerResult{}, fmt.Errorf("encode snapshot: %w", err)
	}
	var nodes []nodeRow
	entryTasks, queued := []string{}, []string{}
	for _, taskID := range g.sortedIDs() {
		n := g.Tasks[taskID]
		row := nodeRow{ID: ids.New(ids.TaskRun), TaskID: taskID, Status: protocol.StatusWaiting, Priority: orDefault(req.Priority, prios[taskID]),
			CodeVersion: n.CodeVersion, CodeHash: n.CodeHash, Predecessors: n.Predecessors, PredsLeft: len(n.Predecessors)}
		if len(n.Predecessors) == 0 {
			row.Status, row.Selected = protocol.StatusPending, true
			entryTasks, queued = append(entryTasks, taskID), append(queued, row.ID)
		}
		nodes = append(nodes, row)
	}
	nodeJSON, err := json.Marshal(nodes)
	if err != nil {
		return TriggerResult{}, fmt.Errorf("encode task runs: %w", err)
	}
	input := []byte(req.Input)
	if len(input) == 0 {
		input = []byte("null")
	}
	uploads := TempUploadRefs(req.Input)
	_, backend := e.storage.Default()
	if err := storage.PutBytes(ctx, backend, inputPath, input, "application/json"); err != nil {
		return TriggerResult{}, storageFailed(fmt.Errorf("store the input of %s: %w", runID, err))
	}
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlInsertPipelineRun, runID, id, mode, orDefault(req.Priority, 100), nullJSON(req.Metadata), inputPath, snap, traceparent); err != nil {
			return fmt.Errorf("insert pipeline run: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlInsertPipelineRuns, runID, inputPath, nodeJSON, traceparent); err != nil {
			return fmt.Errorf("insert task runs: %w", err)
		}
		if err := e.claimTempUploads(ctx, tx, triggerClaims(runID, uploads), true); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlNotifyReady); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
	if err != nil {
		if derr := backend.Delete(context.WithoutCancel(ctx), inputPath); derr != nil && !isNotFound(derr) {
			e.log.Warn("could not remove an unused input", "path", inputPath, "err", derr)
		}
		return TriggerResult{}, err
	}
	return TriggerResult{PipelineRunID: runID, Status: protocol.PipelineRunning, InputPath: inputPath, EntryTasks: entryTasks, QueuedTasks: queued,
		ValidationWarnings: warnings}, nil
}

// lockedRun is a pipeline run locked for advancement.
type lockedRun struct {
	id, mode string
	status   protocol.PipelineRunStatus
	snap     snapshot
}

// lockRuns locks the pipeline runs named (empty ids ignored) in id order. Every writer locks a
// pipeline run before its task runs, so advancement of one run is serialised and nothing
// deadlocks.
func (e *Engine) lockRuns(ctx context.Context, tx dbtx, runIDs []string) (map[string]*lockedRun, error) {
	var want []string
	for _, id := range runIDs {
		if id != "" && !slices.Contains(want, id) {
			want = append(want, id)
		}
	}
	out := map[string]*lockedRun{}
	if len(want) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, sqlLockPipelineRuns, want)
	if err != nil {
		return nil, fmt.Errorf("lock pipeline runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &lockedRun{}
		var snap []byte
		if err := rows.Scan(&r.id, &r.status, &r.mode, &snap); err != nil {
			return nil, fmt.Errorf("lock pipeline runs: %w", err)
		}
		if err := json.Unmarshal(snap, &r.snap); err != nil {
			return nil, fmt.Errorf("pipeline run %s: snapshot: %w", r.id, err)
		}
		out[r.id] = r
	}
	return out, rows.Err()
}

// resolution is a node that reached a final state.
type resolution struct {
	taskID    string
	completed bool
	failed    bool // failed itself, or skipped because something upstream failed
	selected  []string
}

// advance moves a locked pipeline run on after nodes resolved, in the caller's transaction:
// successors are enabled or skipped with one multi-row statement per wave (skips propagate),
// a failure in fail-fast mode cancels what has not started, and the run is finished when no
// node is left open.
func (e *Engine) advance(ctx context.Context, tx dbtx, run *lockedRun, resolved []resolution) error {
	if run.status != protocol.PipelineRunning {
		return nil
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
			if _, err := tx.Exec(ctx, sqlCancelNodes, run.id, []protocol.TaskRunStatus{protocol.StatusWaiting, protocol.StatusPending}, reason); err != nil {
				return fmt.Errorf("fail-fast %s: %w", run.id, err)
			}
			resolved = nil
		}
	}
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
		rows, err := tx.Query(ctx, sqlAdvanceSuccessors, run.id, run.mode, order, ns, sels, fails)
		if err != nil {
			return fmt.Errorf("advance %s: %w", run.id, err)
		}
		next := []resolution{}
		for rows.Next() {
			var taskID string
			var status protocol.TaskRunStatus
			var upstreamFailed bool
			if err := rows.Scan(&taskID, &status, &upstreamFailed); err != nil {
				rows.Close()
				return fmt.Errorf("advance %s: %w", run.id, err)
			}
			if status == protocol.StatusSkipped {
				next = append(next, resolution{taskID: taskID, failed: upstreamFailed && run.mode == Continue})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("advance %s: %w", run.id, err)
		}
		resolved = next
	}
	return e.finishIfDone(ctx, tx, run)
}

// finishIfDone ends a running pipeline run whose nodes are all resolved.
func (e *Engine) finishIfDone(ctx context.Context, tx dbtx, run *lockedRun) error {
	var open, failed, completed int
	var failedTasks string
	if err := tx.QueryRow(ctx, sqlPipelineRunTally, run.id).Scan(&open, &failed, &completed, &failedTasks); err != nil {
		return fmt.Errorf("tally %s: %w", run.id, err)
	}
	if open > 0 && !(run.mode == FailFast && failed > 0) {
		return nil
	}
	status, reason := protocol.PipelineCompleted, ""
	if failed > 0 {
		status, reason = protocol.PipelineFailed, "task "+failedTasks+" failed"
		if run.mode == PartialMerge && completed > 0 {
			status = protocol.PipelinePartial
		}
	}
	if _, err := tx.Exec(ctx, sqlFinishPipelineRun, run.id, status, reason); err != nil {
		return fmt.Errorf("finish %s: %w", run.id, err)
	}
	run.status = status
	return nil
}
