package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
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
	ID          string
	ServiceID   string
	Implicit    bool
	EntryTasks  []string
	FailureMode string
	Description string
	Tasks       map[string]*Node
	Valid       bool
	Errors      []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// PausedAt is when the pipeline was paused (nil: it is not): its runs' nodes wait, pending.
	PausedAt *time.Time
	// TimeoutMs is the deadline of each of its runs, in milliseconds from the trigger (nil: none).
	TimeoutMs *int64
	// Nodes is the node configuration as declared (nil: none), maxItems filled in.
	Nodes map[string]protocol.NodeConfig

	graph *Graph
}

func (e *Engine) activeTasks(ctx context.Context, db dbtx) (map[string]taskInfo, map[string]int, error) {
	rows, err := queries.ActiveTasks(ctx, db)
	if err != nil {
		return nil, nil, fmt.Errorf("read tasks: %w", err)
	}
	tasks, prios := map[string]taskInfo{}, map[string]int{}
	for _, r := range rows {
		tasks[r.ID] = taskInfo{ServiceID: r.ServiceID, AllowedNext: r.AllowedNext, CodeVersion: r.CodeVersion, CodeHash: r.CodeHash,
			Concurrency: r.Concurrency, SchemaHash: r.InputSchemaHash, ConcurrencyKey: r.ConcurrencyKey}
		prios[r.ID] = r.Priority
	}
	return tasks, prios, nil
}

// pipelineOf is the pipeline a PipelineGet (or PipelineList) row stores.
func pipelineOf(r dbsqlc.PipelineGetRow) (Pipeline, error) {
	nodes, err := decodeNodes(r.Nodes)
	if err != nil {
		return Pipeline{}, fmt.Errorf("pipeline %s: %w", r.ID, err)
	}
	return Pipeline{ID: r.ID, ServiceID: r.ServiceID, EntryTasks: r.EntryTasks, FailureMode: r.FailureMode,
		Implicit: r.Implicit, Description: r.Description, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, PausedAt: r.PausedAt,
		TimeoutMs: r.TimeoutMs, Nodes: nodes}, nil
}

// readPipeline reads the pipeline id as stored, without its structure.
func (e *Engine) readPipeline(ctx context.Context, id string) (Pipeline, error) {
	r, err := queries.PipelineGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return Pipeline{}, notFound("PIPELINE_NOT_FOUND", "pipeline %q not found", id)
	}
	if err != nil {
		return Pipeline{}, fmt.Errorf("read pipeline %s: %w", id, err)
	}
	return pipelineOf(r)
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
	// A map declaration the structure no longer fits (allowedNext changed since) makes the
	// pipeline invalid: its runs are refused rather than run without the map.
	for _, err := range nodeProblems(p.Nodes, p.graph) {
		p.Errors = append(p.Errors, err.Msg)
	}
	attachNodes(p.Nodes, p.graph)
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
	p, err := e.readPipeline(ctx, id)
	if err != nil {
		return Pipeline{}, err
	}
	tasks, _, err := e.activeTasks(ctx, e.db)
	if err != nil {
		return Pipeline{}, err
	}
	p.resolve(tasks)
	return p, nil
}

// Pipelines lists every pipeline with its current structure.
func (e *Engine) Pipelines(ctx context.Context) ([]Pipeline, error) {
	rows, err := queries.PipelineList(ctx, e.db)
	if err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	list := make([]Pipeline, len(rows))
	for i, r := range rows {
		if list[i], err = pipelineOf(dbsqlc.PipelineGetRow(r)); err != nil {
			return nil, err
		}
	}
	tasks, _, err := e.activeTasks(ctx, e.db)
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i].resolve(tasks)
	}
	return nonNil(list), nil
}

func validatePipelineDef(id string, def *protocol.PipelineDefinition, mapMaxItems int) error {
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
	if err := CheckTimeoutMs(def.TimeoutMs); err != nil {
		err.Msg = fmt.Sprintf("pipeline %q: %s", id, err.Msg)
		return err
	}
	return validateNodes(id, def, mapMaxItems)
}

// CheckTimeoutMs checks the timeoutMs of a pipeline or a trigger: nil (none) or 1 to
// protocol.MaxPipelineTimeoutMs milliseconds; anything else is INVALID_TIMEOUT.
func CheckTimeoutMs(ms *int64) *Error {
	if ms != nil && (*ms < 1 || *ms > protocol.MaxPipelineTimeoutMs) {
		err := invalid("INVALID_TIMEOUT", "timeoutMs must be an integer number of milliseconds from 1 to %d (30 days), not %d",
			int64(protocol.MaxPipelineTimeoutMs), *ms)
		err.Details = map[string]string{"field": "timeoutMs"}
		return err
	}
	return nil
}

// PutPipeline creates or replaces the explicit pipeline id (the id in def is ignored). Tasks it
// names need not be registered yet; a cycle among the registered ones is refused. A map node
// (def.Nodes) must be a registered task of the pipeline and map over a direct predecessor.
func (e *Engine) PutPipeline(ctx context.Context, id string, d protocol.PipelineDefinition) (Pipeline, error) {
	d.ID = id
	if err := validatePipelineDef(id, &d, e.cfg.MapMaxItems); err != nil {
		return Pipeline{}, err
	}
	tasks, _, err := e.activeTasks(ctx, e.db)
	if err != nil {
		return Pipeline{}, err
	}
	g := buildGraph(d.EntryTasks, tasks)
	if g.Cycle != nil {
		return Pipeline{}, cycleError(id, g.Cycle)
	}
	if err := checkNodesAgainst(id, d.Nodes, g); err != nil {
		return Pipeline{}, err
	}
	nodes, err := encodeNodes(d.Nodes)
	if err != nil {
		return Pipeline{}, err
	}
	// A declaration with sub-pipeline nodes is checked (references, cycles, depth) and saved in
	// one transaction (subpipelines.go).
	if err := e.saveChecked(ctx, d, func(db dbtx) error {
		return queries.UpsertPipeline(ctx, db, dbsqlc.UpsertPipelineParams{ID: id, EntryTasks: d.EntryTasks,
			FailureMode: d.FailureMode, Description: d.Description, TimeoutMs: d.TimeoutMs, Nodes: nodes})
	}); err != nil {
		var apiErr *Error
		if errors.As(err, &apiErr) {
			return Pipeline{}, err
		}
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
type DryRun struct {
	Valid         bool
	ExecutionPlan []PlanStep
	Warnings      []string
	Errors        []string
}

// DryRunPipeline validates a pipeline without running it and returns its plan by levels. A
// sub-pipeline node carries its child pipeline's plan, recursively (subviews.go); a child that
// could not start makes a warning, not an invalid plan (the trigger would be accepted, and the
// node would fail).
func (e *Engine) DryRunPipeline(ctx context.Context, id string) (DryRun, error) {
	p, err := e.readPipeline(ctx, id)
	if err != nil {
		return DryRun{}, err
	}
	tasks, _, err := e.activeTasks(ctx, e.db)
	if err != nil {
		return DryRun{}, err
	}
	p.resolve(tasks)
	out := DryRun{Valid: p.Valid, ExecutionPlan: []PlanStep{}, Warnings: nonNil(p.graph.warnings()), Errors: nonNil(p.Errors)}
	if p.graph.Cycle == nil && len(p.graph.Tasks) > 0 {
		out.ExecutionPlan = p.graph.plan()
		describeNodes(out.ExecutionPlan, p.graph)
		if len(subRefs(p.Nodes)) > 0 {
			c := &childPlanner{e: e, tasks: tasks, pipelines: map[string]*Pipeline{}, left: protocol.MaxDryRunChildPlans}
			below, err := c.expand(ctx, out.ExecutionPlan, []string{id})
			if err != nil {
				return DryRun{}, fmt.Errorf("dry run of pipeline %s: %w", id, err)
			}
			out.Warnings = append(out.Warnings, below...)
		}
	}
	return out, nil
}

// TriggerRequest asks for a pipeline run (the API decodes it from protocol.TriggerRequest).
type TriggerRequest struct {
	Input       json.RawMessage
	FailureMode string
	Priority    *int
	Metadata    json.RawMessage
	// ValidationMode is strict, warn (the default) or none: how the input is checked against
	// every entry task's input schema (docs/api.md, Input schemas).
	ValidationMode string
	// TimeoutMs is the run's deadline in milliseconds from the trigger, instead of the
	// pipeline's timeoutMs (nil: the pipeline's, if it has one).
	TimeoutMs *int64
}

// TriggerResult is the pipeline run a trigger made.
type TriggerResult struct {
	PipelineRunID string
	Status        protocol.PipelineRunStatus
	InputPath     string
	// EntryTasks are the ids of the tasks the run starts with; QueuedTasks the ids of their task
	// runs, queued by the trigger (as upstream answers).
	EntryTasks  []string
	QueuedTasks []string
	// ValidationWarnings are the input's violations of entry tasks' schemas, by task id, in
	// validationMode warn (nil when there are none).
	ValidationWarnings protocol.ValidationErrors
	// Dispatched: the trigger's transaction claimed the run's entry tasks (with whatever else
	// was ready, up to ClaimBatch) and they are being dispatched (SetRefill's dispatcher): no
	// claim needs to follow.
	Dispatched bool
}

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
	// ConcurrencyKey is the node's concurrency key (nil: its task has none; left out of the JSON).
	ConcurrencyKey *string `json:"concurrency_key,omitempty"`
}

// Trigger starts a run of pipeline id: it stores the input, snapshots the structure, and
// creates every node's task run (entry tasks pending, the others waiting) in one transaction.
// It runs in a "trigger" span (a child of the caller's trace context in ctx, if any), whose
// context the run and its nodes store: every later dispatch of the run continues that trace.
func (e *Engine) Trigger(ctx context.Context, id string, req TriggerRequest) (TriggerResult, error) {
	return e.trigger(ctx, id, req, nil)
}

// trigger is Trigger; within, when set, runs in its transaction after the run is inserted, with
// its id (a schedule's fire, schedules.go): its error rolls everything back.
func (e *Engine) trigger(ctx context.Context, id string, req TriggerRequest, within func(ctx context.Context, tx dbtx, runID string) error) (_ TriggerResult, err error) {
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
	if err := CheckTimeoutMs(req.TimeoutMs); err != nil {
		return TriggerResult{}, err
	}
	p, err := e.readPipeline(ctx, id)
	if err != nil {
		return TriggerResult{}, err
	}
	tasks, prios, err := e.activeTasks(ctx, e.db)
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
	timeoutMs := p.TimeoutMs
	if req.TimeoutMs != nil {
		timeoutMs = req.TimeoutMs
	}
	runID := ids.New(ids.PipelineRun)
	span.SetAttributes(telemetry.AttrPipelineRunID.String(runID))
	traceparent := telemetry.Traceparent(ctx)
	inputPath := protocol.PipelineInputPath(runID)
	snap, err := json.Marshal(snapshot{PipelineID: id, EntryTasks: g.EntryTasks, FailureMode: mode, Tasks: g.Tasks})
	if err != nil {
		return TriggerResult{}, fmt.Errorf("encode snapshot: %w", err)
	}
	nodeJSON, entryTasks, queued, err := runNodes(g, tasks, prios, req.Priority, req.Input)
	if err != nil {
		return TriggerResult{}, err
	}
	input, inline := e.inlineInput(req.Input)
	uploads := TempUploadRefs(req.Input)
	_, backend := e.storage.Default()
	var inlineInput []byte
	if inline {
		inlineInput = input
	} else if err := storage.PutBytes(ctx, backend, inputPath, input, "application/json"); err != nil {
		return TriggerResult{}, storageFailed(fmt.Errorf("store the input of %s: %w", runID, err))
	}
	claims := triggerClaims(runID, uploads)
	// Without temporary uploads to claim (which reads), the statements depend on no answer:
	// they go as one batch, one implicit transaction, one round trip (database.Pipelined).
	inTx := e.db.InTx
	// claim: with the standalone loop's dispatcher set, the one round trip also claims, when
	// the claim lock is free, and the entry tasks are dispatched without a claim of their own.
	var claim *inlineClaim
	if len(claims) == 0 && within == nil {
		inTx = e.db.Pipelined
		claim = e.newInlineClaim(ctx, e.dispatcher(true))
	}
	err = inTx(ctx, func(tx dbtx) error {
		if err := queries.InsertPipelineRun(ctx, tx, dbsqlc.InsertPipelineRunParams{ID: runID, PipelineID: id, FailureMode: mode,
			Priority: orDefault(req.Priority, 100), Metadata: nullJSON(req.Metadata), InputPath: inputPath, Input: inlineInput,
			Snapshot: snap, Traceparent: traceparent, TimeoutMs: timeoutMs, Now: e.now()}); err != nil {
			return fmt.Errorf("insert pipeline run: %w", err)
		}
		if err := queries.InsertPipelineTaskRuns(ctx, tx, dbsqlc.InsertPipelineTaskRunsParams{PipelineRunID: runID,
			InputPath: inputPath, Nodes: nodeJSON, Traceparent: traceparent}); err != nil {
			return fmt.Errorf("insert task runs: %w", err)
		}
		if err := e.claimTempUploads(ctx, tx, claims, true); err != nil {
			return err
		}
		if within != nil {
			if err := within(ctx, tx, runID); err != nil {
				return err
			}
		}
		if claim != nil && database.QueueWithResults(tx, append(claim.tail, queries.NotifyReadyUnlessClaimedQueued())...) {
			return nil
		}
		claim = nil
		if err := queries.NotifyReady(ctx, tx); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
	if err != nil {
		if inline {
			return TriggerResult{}, err
		}
		if derr := backend.Delete(context.WithoutCancel(ctx), inputPath); derr != nil && !isNotFound(derr) {
			e.log.Warn("could not remove an unused input", "path", inputPath, "err", derr)
		}
		return TriggerResult{}, err
	}
	locked, full := e.inlineClaimed(ctx, claim)
	return TriggerResult{PipelineRunID: runID, Status: protocol.PipelineRunning, InputPath: inputPath, EntryTasks: entryTasks, QueuedTasks: queued,
		ValidationWarnings: warnings, Dispatched: locked && !full}, nil
}

// runNodes is the JSON of the task runs of a new run of structure g (InsertPipelineTaskRuns):
// entry tasks pending, the others waiting, with the ids of the entry tasks and of their runs.
func runNodes(g *Graph, tasks map[string]taskInfo, prios map[string]int, priority *int, input json.RawMessage) (nodeJSON []byte, entryTasks, queued []string, err error) {
	var nodes []nodeRow
	entryTasks, queued = []string{}, []string{}
	for _, taskID := range g.sortedIDs() {
		n := g.Tasks[taskID]
		row := nodeRow{ID: ids.New(ids.TaskRun), TaskID: taskID, Status: protocol.StatusWaiting, Priority: orDefault(priority, prios[taskID]),
			CodeVersion: n.CodeVersion, CodeHash: n.CodeHash, Predecessors: n.Predecessors, PredsLeft: len(n.Predecessors),
			// Every node's input is the run's: its key is read from it here, where it is in memory.
			ConcurrencyKey: concurrencyKeyOf(tasks[taskID].ConcurrencyKey, input)}
		if len(n.Predecessors) == 0 {
			row.Status, row.Selected = protocol.StatusPending, true
			entryTasks, queued = append(entryTasks, taskID), append(queued, row.ID)
		}
		nodes = append(nodes, row)
	}
	if nodeJSON, err = json.Marshal(nodes); err != nil {
		return nil, nil, nil, fmt.Errorf("encode task runs: %w", err)
	}
	return nodeJSON, entryTasks, queued, nil
}

// PausePipeline pauses pipeline id: triggers are still accepted, and every node of its runs that
// is or becomes pending waits (parked, migration 009) until ResumePipeline; attempts already
// dispatched run to their end and their callbacks advance the run as usual. The pause holds the
// claim lock, so once it returns no claim takes the pipeline's nodes. Pausing a paused pipeline
// keeps its first pausedAt. An unknown pipeline is 404 PIPELINE_NOT_FOUND.
func (e *Engine) PausePipeline(ctx context.Context, id string) (PipelinePause, error) {
	return e.setPipelinePaused(ctx, id, true)
}

// ResumePipeline resumes pipeline id: its parked nodes go back to their times, and the claims
// that follow take them in priority order. Resuming a pipeline that is not paused changes
// nothing.
func (e *Engine) ResumePipeline(ctx context.Context, id string) (PipelinePause, error) {
	return e.setPipelinePaused(ctx, id, false)
}

func (e *Engine) setPipelinePaused(ctx context.Context, id string, paused bool) (PipelinePause, error) {
	var row dbsqlc.SetPipelinePausedRow
	err := e.db.InTx(ctx, func(tx dbtx) error {
		if err := queries.LockClaims(ctx, tx, claimLock); err != nil {
			return fmt.Errorf("take claim lock: %w", err)
		}
		var err error
		row, err = queries.SetPipelinePaused(ctx, tx, dbsqlc.SetPipelinePausedParams{ID: id, Paused: paused})
		if errors.Is(err, database.ErrNotFound) {
			return notFound("PIPELINE_NOT_FOUND", "pipeline %q not found", id)
		}
		if err != nil {
			return fmt.Errorf("set pipeline %s paused: %w", id, err)
		}
		if paused {
			if err := queries.LockRunningPipelineRuns(ctx, tx, id); err != nil {
				return fmt.Errorf("lock the runs of %s: %w", id, err)
			}
			if err := queries.ParkPipelineNodes(ctx, tx, id); err != nil {
				return fmt.Errorf("park the nodes of %s: %w", id, err)
			}
			return nil
		}
		if err := queries.UnparkPipelineNodes(ctx, tx, id); err != nil {
			return fmt.Errorf("unpark the nodes of %s: %w", id, err)
		}
		// The pipeline's waiting nodes are ready for every instance's loop.
		return queries.NotifyReady(ctx, tx)
	})
	if err != nil {
		return PipelinePause{}, err
	}
	return PipelinePause{PipelineID: row.ID, Paused: row.PausedAt != nil, PausedAt: row.PausedAt}, nil
}
