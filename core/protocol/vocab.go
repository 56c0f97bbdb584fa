package protocol

// TaskRunStatus is the state of a task run (docs/protocol.md, "Task run states").
type TaskRunStatus string

// Task run states.
const (
	// StatusWaiting: a pipeline task run whose predecessors have not all ended.
	StatusWaiting TaskRunStatus = "waiting"
	// StatusPending: ready, or delayed until its retry backoff ends, and not yet claimed.
	StatusPending TaskRunStatus = "pending"
	// StatusDispatching: claimed, its dispatch in flight.
	StatusDispatching TaskRunStatus = "dispatching"
	// StatusRunning: the worker acknowledged the dispatch.
	StatusRunning TaskRunStatus = "running"
	// StatusCompleted: the worker called back success.
	StatusCompleted TaskRunStatus = "completed"
	// StatusFailed: failed for good (moved to the dead-letter queue).
	StatusFailed TaskRunStatus = "failed"
	// StatusCancelled: cancelled before it ended.
	StatusCancelled TaskRunStatus = "cancelled"
	// StatusSkipped: a pipeline task no predecessor selected, or one its run's failure skipped.
	StatusSkipped TaskRunStatus = "skipped"
)

// TaskRunStatuses lists every task run state, live ones first, in the order listings show them.
var TaskRunStatuses = []TaskRunStatus{StatusWaiting, StatusPending, StatusDispatching, StatusRunning,
	StatusCompleted, StatusFailed, StatusCancelled, StatusSkipped}

// Valid reports whether s is one of the task run states.
func (s TaskRunStatus) Valid() bool {
	switch s {
	case StatusWaiting, StatusPending, StatusDispatching, StatusRunning,
		StatusCompleted, StatusFailed, StatusCancelled, StatusSkipped:
		return true
	}
	return false
}

// Terminal reports whether a run in state s has ended for good.
func (s TaskRunStatus) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusSkipped:
		return true
	}
	return false
}

// PipelineRunStatus is the state of a pipeline run.
type PipelineRunStatus string

// PipelineRunStatuses lists every pipeline run state.
var PipelineRunStatuses = []PipelineRunStatus{PipelineRunning, PipelineCompleted, PipelineFailed,
	PipelinePartial, PipelineCancelled}

// Pipeline run states.
const (
	// PipelineRunning: some of its task runs have not ended.
	PipelineRunning PipelineRunStatus = "running"
	// PipelineCompleted: it ended and no task run failed.
	PipelineCompleted PipelineRunStatus = "completed"
	// PipelineFailed: a task run failed for good.
	PipelineFailed PipelineRunStatus = "failed"
	// PipelinePartial: a partial-merge run that ended with task runs both failed and completed.
	PipelinePartial PipelineRunStatus = "partial"
	// PipelineCancelled: cancelled before it ended.
	PipelineCancelled PipelineRunStatus = "cancelled"
)

// Valid reports whether s is one of the pipeline run states.
func (s PipelineRunStatus) Valid() bool {
	switch s {
	case PipelineRunning, PipelineCompleted, PipelineFailed, PipelinePartial, PipelineCancelled:
		return true
	}
	return false
}

// Terminal reports whether a pipeline run in state s has ended.
func (s PipelineRunStatus) Terminal() bool { return s.Valid() && s != PipelineRunning }

// MaintenanceMode is the orchestrator's maintenance mode (upstream's OrchestratorMode), as
// GET /api/maintenance answers it.
type MaintenanceMode string

// Maintenance modes.
const (
	// MaintenanceOff claims and dispatches as usual ("running").
	MaintenanceOff MaintenanceMode = "running"
	// MaintenanceWaiting claims nothing new; the runs in flight finish.
	MaintenanceWaiting MaintenanceMode = "waiting_for_maintenance"
	// MaintenanceOn claims nothing, and nothing is in flight.
	MaintenanceOn MaintenanceMode = "maintenance"
)

// MaxPageSize is the largest page (limit) a listing of the API serves.
const MaxPageSize = 500
