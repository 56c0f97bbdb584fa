package protocol

import (
	"encoding/json"
	"time"
)

// The answers of the operator API (docs/api.md, openapi.json): the orchestrator encodes them
// and Go clients such as the pipeweave CLI decode them.

// TaskRun is a task run as the API shows it.
type TaskRun struct {
	ID               string           `json:"id"`
	TaskID           string           `json:"taskId"`
	PipelineRunID    string           `json:"pipelineRunId,omitempty"`
	Status           TaskRunStatus    `json:"status"`
	Attempt          int              `json:"attempt"`
	Priority         int              `json:"priority"`
	Error            *string          `json:"error"`
	ErrorCode        *string          `json:"errorCode"`
	PreviousAttempts []Attempt        `json:"previousAttempts"`
	CodeVersion      int              `json:"codeVersion"`
	CodeHash         string           `json:"codeHash"`
	InputPath        string           `json:"inputPath"`
	OutputPath       *string          `json:"outputPath"`
	OutputSize       *int64           `json:"outputSize,omitempty"`
	Assets           map[string]Asset `json:"assets,omitempty"`
	LogsPath         *string          `json:"logsPath,omitempty"`
	SelectedNext     []string         `json:"selectedNext,omitempty"`
	Progress         *int             `json:"progress,omitempty"`
	ProgressMessage  string           `json:"progressMessage,omitempty"`
	Metadata         json.RawMessage  `json:"metadata,omitempty"`
	IdempotencyKey   string           `json:"idempotencyKey,omitempty"`
	CreatedAt        time.Time        `json:"createdAt"`
	UpdatedAt        time.Time        `json:"updatedAt"`
	ScheduledAt      time.Time        `json:"scheduledAt"`
	StartedAt        *time.Time       `json:"startedAt"`
	CompletedAt      *time.Time       `json:"completedAt"`
	DeadlineAt       *time.Time       `json:"deadlineAt,omitempty"`
	// ScheduleID and ScheduleSlot name the schedule and the slot that made the run (absent for
	// runs no schedule made).
	ScheduleID   string     `json:"scheduleId,omitempty"`
	ScheduleSlot *time.Time `json:"scheduleSlot,omitempty"`
	// ItemIndex is the index of a map node's item in its array (absent on every other run).
	ItemIndex *int `json:"itemIndex,omitempty"`
	// ItemsTotal and ItemsLeft count a map row's items, and those not resolved yet (absent on
	// every other run, and on a map row that has not fanned out).
	ItemsTotal *int `json:"itemsTotal,omitempty"`
	ItemsLeft  *int `json:"itemsLeft,omitempty"`
	// SpawnedBy is the task run of the spawn node that spawned this run (absent on every other
	// run); ItemIndex is then its index in the spawn, and the spawning run's ItemsTotal and
	// ItemsLeft count its spawned runs.
	SpawnedBy string `json:"spawnedBy,omitempty"`
}

// Service is a registered worker service.
type Service struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	BaseURL      string    `json:"baseUrl"`
	RegisteredAt time.Time `json:"registeredAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	Tasks        []string  `json:"tasks"`
	// Secret says which master secret the service last registered with: "current",
	// "previous" (PIPEWEAVE_SECRET_KEY_PREVIOUS; re-register it with the new service key
	// before removing that variable), or "unknown" (a secret no longer configured, a
	// registration from before service keys, or an unauthenticated compat-mode one).
	Secret string `json:"secret"`
}

// Task is a registered task definition with its current code version.
type Task struct {
	ID                  string          `json:"id"`
	ServiceID           string          `json:"serviceId"`
	CodeHash            string          `json:"codeHash"`
	CodeVersion         int             `json:"codeVersion"`
	AllowedNext         []string        `json:"allowedNext"`
	Timeout             int             `json:"timeout"`
	Retries             int             `json:"retries"`
	RetryBackoff        string          `json:"retryBackoff"`
	RetryDelayMs        int64           `json:"retryDelayMs"`
	MaxRetryDelayMs     int64           `json:"maxRetryDelayMs"`
	HeartbeatIntervalMs int64           `json:"heartbeatIntervalMs"`
	Concurrency         int             `json:"concurrency"`
	Priority            int             `json:"priority"`
	IdempotencyTTL      int             `json:"idempotencyTTL"`
	Description         string          `json:"description,omitempty"`
	InputSchema         json.RawMessage `json:"inputSchema,omitempty"`
	InputJSONSchema     json.RawMessage `json:"inputJsonSchema,omitempty"`
	RemovedInVersion    string          `json:"removedInVersion,omitempty"`
	CreatedAt           time.Time       `json:"createdAt"`
	UpdatedAt           time.Time       `json:"updatedAt"`
	// PausedAt is when the task was paused (POST /api/tasks/{id}/pause); absent: it is not.
	PausedAt *time.Time `json:"pausedAt,omitempty"`
	// RateLimit, RateLimitKey, ConcurrencyKey and ConcurrencyPerKey are the flow control the
	// task registered (TaskDefinition); absent: none.
	RateLimit         *RateLimit `json:"rateLimit,omitempty"`
	RateLimitKey      string     `json:"rateLimitKey,omitempty"`
	ConcurrencyKey    string     `json:"concurrencyKey,omitempty"`
	ConcurrencyPerKey int        `json:"concurrencyPerKey,omitempty"`
}

// TaskPause is the answer of POST /api/tasks/{id}/pause and /resume: whether the task is now
// paused, and since when.
type TaskPause struct {
	TaskID   string     `json:"taskId"`
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"pausedAt,omitempty"`
}

// HistoryEntry is one code version of a task.
type HistoryEntry struct {
	CodeVersion    int       `json:"codeVersion"`
	CodeHash       string    `json:"codeHash"`
	ServiceVersion string    `json:"serviceVersion"`
	RecordedAt     time.Time `json:"recordedAt"`
}

// DLQEntry is a run that failed for good. Attempts is the number of attempts made (upstream's
// DLQItem); AttemptHistory lists them. Input is the stored input, inline when it is at most
// [DLQInputInlineMax] bytes of JSON (absent otherwise, and in GET /api/dlq/{id}).
type DLQEntry struct {
	ID             string          `json:"id"`
	TaskRunID      string          `json:"taskRunId"`
	TaskID         string          `json:"taskId"`
	PipelineRunID  string          `json:"pipelineRunId,omitempty"`
	PipelineID     string          `json:"pipelineId,omitempty"`
	InputPath      string          `json:"inputPath"`
	Error          string          `json:"error"`
	ErrorCode      string          `json:"errorCode,omitempty"`
	Attempts       int             `json:"attempts"`
	AttemptHistory []Attempt       `json:"attemptHistory"`
	CodeVersion    int             `json:"codeVersion"`
	CodeHash       string          `json:"codeHash"`
	FailedAt       time.Time       `json:"failedAt"`
	RetriedAt      *time.Time      `json:"retriedAt"`
	RetryRunID     string          `json:"retryRunId,omitempty"`
	Input          json.RawMessage `json:"input,omitempty"`
}

// DLQInputInlineMax is the largest stored input, in bytes, that GET /api/dlq shows inline in an
// entry's input field.
const DLQInputInlineMax = 64 << 10

// DLQPage is one page of GET /api/dlq: the entries, how many entries match the filter in all
// (upstream's total) and the cursor of the next page.
type DLQPage struct {
	Items      []DLQEntry `json:"items"`
	Total      int64      `json:"total"`
	NextCursor string     `json:"nextCursor,omitempty"`
}

// DLQRetryResult is the answer of POST /api/dlq/{id}/retry: upstream's {newRunId, status,
// codeVersion} with this project's runId (the same as newRunId), taskId and inputPath.
type DLQRetryResult struct {
	NewRunID    string `json:"newRunId"`
	RunID       string `json:"runId"`
	Status      string `json:"status"` // "queued", as upstream answers
	CodeVersion int    `json:"codeVersion"`
	TaskID      string `json:"taskId"`
	InputPath   string `json:"inputPath"`
}

// QueueStatus counts runs by state.
type QueueStatus struct {
	Pending       int64      `json:"pending"`
	Dispatching   int64      `json:"dispatching"`
	Running       int64      `json:"running"`
	Waiting       int64      `json:"waiting"`
	Completed     int64      `json:"completed"`
	Failed        int64      `json:"failed"`
	Cancelled     int64      `json:"cancelled"`
	Skipped       int64      `json:"skipped"`
	DLQ           int64      `json:"dlq"`
	OldestPending *time.Time `json:"oldestPending"`
}

// MaintenanceStatus is the answer of GET /api/maintenance and of POST /api/maintenance/enter
// and /exit (upstream's MaintenanceStatus): the mode, whether maintenance can be (or has been)
// reached, the runs waiting and in flight, and a sentence.
type MaintenanceStatus struct {
	Mode MaintenanceMode `json:"mode"`
	// CanEnterMaintenance: nothing is in flight (pending runs wait and do not hold maintenance
	// back).
	CanEnterMaintenance bool `json:"canEnterMaintenance"`
	// PendingTasks are runs ready or delayed that wait to be claimed.
	PendingTasks int64 `json:"pendingTasks"`
	// RunningTasks are runs in flight: dispatching or running.
	RunningTasks  int64     `json:"runningTasks"`
	ModeChangedAt time.Time `json:"modeChangedAt"`
	Message       string    `json:"message"`
}

// ProcessSummary says what one bounded batch of /api/process did.
type ProcessSummary struct {
	// Swept counts the expired attempts the sweep ended and the pipeline runs it timed out.
	Swept      int `json:"swept"`
	Claimed    int `json:"claimed"`
	Dispatched int `json:"dispatched"`
	Failed     int `json:"failed"`
	// WebhookDeliveries counts the webhook delivery attempts made (any outcome).
	WebhookDeliveries int   `json:"webhookDeliveries"`
	DurationMs        int64 `json:"durationMs"`
}

// Page is one page of a listing; NextCursor, when set, asks for the next one.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// PipelineNode is one task of a pipeline's structure, as listed and as stored in a run's
// snapshot.
type PipelineNode struct {
	ServiceID    string   `json:"serviceId"`
	AllowedNext  []string `json:"allowedNext"`
	Predecessors []string `json:"predecessors"`
	CodeVersion  int      `json:"codeVersion"`
	CodeHash     string   `json:"codeHash"`
	Concurrency  int      `json:"concurrency"`
	// Map is the node's map declaration (absent: an ordinary node), maxItems filled in.
	Map *MapConfig `json:"map,omitempty"`
	// Pipeline is the pipeline a sub-pipeline node runs (absent: an ordinary node).
	Pipeline string `json:"pipeline,omitempty"`
	// Spawn is the node's spawn declaration (absent: an ordinary node), maxItems filled in.
	Spawn *SpawnConfig `json:"spawn,omitempty"`
}

// Pipeline is a pipeline definition with the structure it has now.
type Pipeline struct {
	ID          string                   `json:"id"`
	ServiceID   string                   `json:"serviceId,omitempty"`
	Implicit    bool                     `json:"implicit"`
	EntryTasks  []string                 `json:"entryTasks"`
	FailureMode string                   `json:"failureMode"`
	Description string                   `json:"description,omitempty"`
	Tasks       map[string]*PipelineNode `json:"tasks"`
	// Nodes is the node configuration as declared (absent: none).
	Nodes     map[string]NodeConfig `json:"nodes,omitempty"`
	Valid     bool                  `json:"valid"`
	Errors    []string              `json:"errors,omitempty"`
	CreatedAt time.Time             `json:"createdAt"`
	UpdatedAt time.Time             `json:"updatedAt"`
	// PausedAt is when the pipeline was paused (POST /api/pipelines/{id}/pause); absent: it is not.
	PausedAt *time.Time `json:"pausedAt,omitempty"`
	// TimeoutMs is the deadline of each of its runs, in milliseconds from the trigger (absent: none).
	TimeoutMs *int64 `json:"timeoutMs,omitempty"`
}

// PipelinePause is the answer of POST /api/pipelines/{id}/pause and /resume: whether the
// pipeline is now paused, and since when.
type PipelinePause struct {
	PipelineID string     `json:"pipelineId"`
	Paused     bool       `json:"paused"`
	PausedAt   *time.Time `json:"pausedAt,omitempty"`
}

// PlanStep is one step of a dry run's execution plan.
type PlanStep struct {
	Step     int      `json:"step"`
	Tasks    []string `json:"tasks"`
	Type     string   `json:"type"` // entry, parallel, join or end
	WaitsFor []string `json:"waitsFor,omitempty"`
	// Nodes describes the step's tasks that are not ordinary task runs (map and sub-pipeline
	// nodes), by task id.
	Nodes map[string]PlanNode `json:"nodes,omitempty"`
}

// DryRun is the answer of a dry run.
type DryRun struct {
	Valid         bool       `json:"valid"`
	ExecutionPlan []PlanStep `json:"executionPlan"`
	Warnings      []string   `json:"warnings"`
	Errors        []string   `json:"errors"`
}

// TriggerResult is the pipeline run a trigger made.
type TriggerResult struct {
	PipelineRunID string            `json:"pipelineRunId"`
	Status        PipelineRunStatus `json:"status"`
	InputPath     string            `json:"inputPath"`
	// EntryTasks are the ids of the tasks the run starts with; QueuedTasks the ids of their task
	// runs, queued by the trigger (as upstream answers).
	EntryTasks  []string `json:"entryTasks"`
	QueuedTasks []string `json:"queuedTasks"`
	// ValidationWarnings are the input's violations of entry tasks' schemas, by task id, in
	// validationMode warn (omitted when there are none).
	ValidationWarnings ValidationErrors `json:"validationWarnings,omitempty"`
}

// PipelineRun is a run of a pipeline: its state, snapshot and, in detail, its task runs.
type PipelineRun struct {
	ID          string            `json:"id"`
	PipelineID  string            `json:"pipelineId"`
	Status      PipelineRunStatus `json:"status"`
	FailureMode string            `json:"failureMode"`
	Priority    int               `json:"priority"`
	Metadata    json.RawMessage   `json:"metadata,omitempty"`
	InputPath   string            `json:"inputPath"`
	Error       *string           `json:"error"`
	CreatedAt   time.Time         `json:"createdAt"`
	CompletedAt *time.Time        `json:"completedAt"`
	// Snapshot is the structure the run follows: {pipelineId, entryTasks, failureMode, tasks}
	// with the tasks as PipelineNodes.
	Snapshot json.RawMessage   `json:"snapshot,omitempty"`
	Tasks    []PipelineRunTask `json:"tasks,omitempty"`
	// ScheduleID and ScheduleSlot name the schedule and the slot that made the run (absent for
	// runs no schedule made).
	ScheduleID   string     `json:"scheduleId,omitempty"`
	ScheduleSlot *time.Time `json:"scheduleSlot,omitempty"`
	// TimeoutMs and Deadline are the run's timeout and the time it ends at if it is still
	// running then (absent: the run has none).
	TimeoutMs *int64     `json:"timeoutMs,omitempty"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	// ErrorCode says why the run ended when it says (PIPELINE_TIMEOUT; absent otherwise).
	ErrorCode string `json:"errorCode,omitempty"`
	// Maps are the run's map nodes with their items counted by state (absent: it has none).
	Maps []MapNodeState `json:"maps,omitempty"`
	// ParentRunID is the pipeline run whose sub-pipeline node this run stands for (absent: a
	// top-level run), ParentNodeRunID that node's task run and ParentTaskID its task id. Shown by
	// GET /api/runs/{id} only.
	ParentRunID     string `json:"parentRunId,omitempty"`
	ParentNodeRunID string `json:"parentNodeRunId,omitempty"`
	ParentTaskID    string `json:"parentTaskId,omitempty"`
	// ChildRunIDs are the child runs of the run's sub-pipeline nodes, in id order, and Children
	// the same with their nodes and states (absent: none). Shown by GET /api/runs/{id} only.
	ChildRunIDs []string        `json:"childRunIds,omitempty"`
	Children    []ChildPipeline `json:"children,omitempty"`
}

// ChildPipeline is a child run of a sub-pipeline node: the run, its pipeline and status, and the
// node of the parent run it stands for (task id and task run id).
type ChildPipeline struct {
	RunID      string            `json:"runId"`
	PipelineID string            `json:"pipelineId"`
	Status     PipelineRunStatus `json:"status"`
	TaskID     string            `json:"taskId"`
	NodeRunID  string            `json:"nodeRunId"`
}

// PipelineRunTask is a task run within a pipeline run, with whether its code changed since the
// previous run of the same pipeline.
type PipelineRunTask struct {
	TaskRun
	// SupersededBy names the task run a DLQ retry replaced this failed one with.
	SupersededBy string `json:"supersededBy,omitempty"`
	// CodeChanged: the previous run of this pipeline ran this task at another code version.
	CodeChanged bool `json:"codeChanged"`
	// PreviousCodeVersion is that version (absent when there is no previous run of the task).
	PreviousCodeVersion *int `json:"previousCodeVersion,omitempty"`
}

// EnqueueResult is the run an enqueue (or a DLQ retry) made or, for a repeated idempotency
// key, found.
type EnqueueResult struct {
	RunID string `json:"runId"`
	// Status is the run's status: "pending" for a new run (as upstream's queue manager answers),
	// the first run's current status for a repeated idempotency key.
	Status       TaskRunStatus `json:"status"`
	TaskID       string        `json:"taskId"`
	InputPath    string        `json:"inputPath"`
	Deduplicated bool          `json:"deduplicated,omitempty"`
	// ValidationWarnings are the input's violations of the task's schema, by task id, in
	// validationMode warn (omitted when there are none).
	ValidationWarnings ValidationErrors `json:"validationWarnings,omitempty"`
}

// RetryAllResult reports a bulk DLQ retry.
type RetryAllResult struct {
	Retried int              `json:"retried"`
	Runs    []DLQRetried     `json:"runs"`
	Failed  []DLQRetryFailed `json:"failed"`
	// More is true when entries matching the filter were left for another call.
	More bool `json:"more"`
}

// DLQRetried pairs a retried DLQ entry with the run that retries it.
type DLQRetried struct {
	DLQID  string `json:"dlqId"`
	RunID  string `json:"runId"`
	TaskID string `json:"taskId"`
}

// DLQRetryFailed is an entry a bulk retry could not retry, with the reason.
type DLQRetryFailed struct {
	DLQID string `json:"dlqId"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// EnqueueRequest is the body of POST /api/queue/task and each item of POST /api/queue/batch:
// one standalone run.
type EnqueueRequest struct {
	TaskID         string          `json:"taskId"`
	Input          json.RawMessage `json:"input"`
	Priority       *int            `json:"priority"`
	Metadata       json.RawMessage `json:"metadata"`
	IdempotencyKey string          `json:"idempotencyKey"`
	DelayMs        int64           `json:"delayMs"`
	// ValidationMode is strict, warn (the default) or none: how the input is checked against
	// the task's input schema (docs/api.md, Input schemas).
	ValidationMode string `json:"validationMode"`
}

// TriggerRequest is the body of POST /api/pipelines/{id}/trigger.
type TriggerRequest struct {
	Input       json.RawMessage `json:"input"`
	FailureMode string          `json:"failureMode"`
	Priority    *int            `json:"priority"`
	Metadata    json.RawMessage `json:"metadata"`
	// ValidationMode is strict, warn (the default) or none: how the input is checked against
	// every entry task's input schema (docs/api.md, Input schemas).
	ValidationMode string `json:"validationMode"`
	// TimeoutMs is this run's deadline in milliseconds from now (1 to MaxPipelineTimeoutMs),
	// instead of the pipeline's timeoutMs (nil: the pipeline's, if it has one).
	TimeoutMs *int64 `json:"timeoutMs,omitempty"`
}

// StoredObject is a stored object as GET /api/storage/{path} shows it: JSON parsed, text as a
// string, anything else base64 with its content type.
type StoredObject struct {
	Path        string `json:"path"`
	Backend     string `json:"backend"`
	Content     any    `json:"content"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Encoding    string `json:"encoding"` // json, text or base64
}

// PurgeSummary counts what one purge deleted: the summary of a dlq-purge invocation.
type PurgeSummary struct {
	DLQ             int64 `json:"dlq"`
	IdempotencyKeys int64 `json:"idempotencyKeys"`
	Runs            int64 `json:"runs"`
	PipelineRuns    int64 `json:"pipelineRuns"`
	TempUploads     int64 `json:"tempUploads"`   // expired, unclaimed temporary uploads deleted
	ScheduleSlots   int64 `json:"scheduleSlots"` // records of handled schedule slots past retention
	// WebhookDeliveries counts delivered and dead webhook deliveries deleted.
	WebhookDeliveries int64 `json:"webhookDeliveries"`
	DurationMs        int64 `json:"durationMs"`
}
