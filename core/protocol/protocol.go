// Package protocol is the project's shared vocabulary: the JSON shapes of the wire contract
// between the orchestrator and its workers (registration, dispatch, heartbeat, progress and
// callback), shared by the orchestrator and the Go worker SDK; the answers of the operator API
// (api.go), shared by the orchestrator and Go clients such as the pipeweave CLI; and the typed
// states, modes and limits both sides name (vocab.go). Field names and meanings follow
// docs/protocol.md and docs/api.md.
package protocol

import (
	"encoding/json"
	"time"
)

// Error codes the orchestrator records for attempts it ends itself.
const (
	CodeTimeout        = "TIMEOUT"
	CodeDispatchFailed = "DISPATCH_FAILED"
	// CodeDispatchRefused: the dispatch guard refused the worker's address (or its baseUrl);
	// the attempt is not retried (WORKER_ALLOWED_NETWORKS).
	CodeDispatchRefused = "DISPATCH_REFUSED"
	CodeTaskRemoved     = "TASK_REMOVED"
)

// Retry backoff kinds.
const (
	BackoffFixed       = "fixed"
	BackoffExponential = "exponential"
)

// TaskDefinition is one task in a registration. Every field but ID and CodeHash is optional;
// nil means the orchestrator's default.
type TaskDefinition struct {
	ID                  string          `json:"id"`
	CodeHash            string          `json:"codeHash"`
	AllowedNext         []string        `json:"allowedNext,omitempty"`
	Timeout             *int            `json:"timeout,omitempty"` // seconds
	Retries             *int            `json:"retries,omitempty"`
	RetryBackoff        string          `json:"retryBackoff,omitempty"`
	RetryDelayMs        *int64          `json:"retryDelayMs,omitempty"`
	MaxRetryDelayMs     *int64          `json:"maxRetryDelayMs,omitempty"`
	HeartbeatIntervalMs *int64          `json:"heartbeatIntervalMs,omitempty"`
	Concurrency         *int            `json:"concurrency,omitempty"`
	Priority            *int            `json:"priority,omitempty"`
	IdempotencyTTL      *int            `json:"idempotencyTTL,omitempty"` // seconds
	Description         string          `json:"description,omitempty"`
	InputSchema         json.RawMessage `json:"inputSchema,omitempty"`     // upstream's {fields, strict?} (core/inputschema)
	InputJSONSchema     json.RawMessage `json:"inputJsonSchema,omitempty"` // a standard JSON Schema
	// RateLimit caps how many of the task's runs are dispatched per period, across every
	// instance (nil: no limit of its own). RateLimitKey instead names a shared limit
	// (PUT /api/rate-limits/{key}); a task has at most one of the two.
	RateLimit    *RateLimit `json:"rateLimit,omitempty"`
	RateLimitKey string     `json:"rateLimitKey,omitempty"`
	// ConcurrencyKey is a JSON pointer (RFC 6901) into a run's input, such as "/customerId":
	// runs whose inputs hold the same value there have at most ConcurrencyPerKey runs in flight
	// (dispatching or running) at once. Both or neither.
	ConcurrencyKey    string `json:"concurrencyKey,omitempty"`
	ConcurrencyPerKey *int   `json:"concurrencyPerKey,omitempty"`
}

// RateLimit is a rate limit: at most Limit runs dispatched in each period of PeriodMs
// milliseconds (fixed windows aligned on multiples of the period since the Unix epoch).
type RateLimit struct {
	Limit    int   `json:"limit"`
	PeriodMs int64 `json:"periodMs"`
}

// RateLimitList is the answer of GET /api/rate-limits: the named rate limits in key order.
type RateLimitList struct {
	RateLimits []NamedRateLimit `json:"rateLimits"`
}

// NamedRateLimit is a rate limit shared by the tasks that register its key
// (GET /api/rate-limits).
type NamedRateLimit struct {
	Key       string    `json:"key"`
	Limit     int       `json:"limit"`
	PeriodMs  int64     `json:"periodMs"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// PipelineDefinition declares a pipeline at registration.
type PipelineDefinition struct {
	ID          string   `json:"id"`
	EntryTasks  []string `json:"entryTasks"`
	FailureMode string   `json:"failureMode,omitempty"`
	Description string   `json:"description,omitempty"`
	// TimeoutMs is the deadline of each run of the pipeline, in milliseconds from its trigger
	// (1 to MaxPipelineTimeoutMs; nil: none). A trigger's own timeoutMs overrides it. When it
	// passes, the run fails with PIPELINE_TIMEOUT and its open task runs are cancelled.
	TimeoutMs *int64 `json:"timeoutMs,omitempty"`
	// Nodes configures nodes of the pipeline by task id (docs/dynamic-pipelines.md); absent: none.
	Nodes map[string]NodeConfig `json:"nodes,omitempty"`
}

// NodeConfig configures one node of a pipeline: that it is a map node, a sub-pipeline node or a
// spawn node (exactly one of the three).
type NodeConfig struct {
	// Map makes the node a map node: one task run per element of an array in a predecessor's output.
	Map *MapConfig `json:"map,omitempty"`
	// Pipeline makes the node a sub-pipeline node: when it becomes ready, a child run of this
	// pipeline runs in its place, with the node's upstream as input, and the node ends with it.
	Pipeline string `json:"pipeline,omitempty"`
	// Spawn makes the node a spawn node: a success callback of its run may carry Spawn entries,
	// task runs known only at run time, which the node waits for (docs/dynamic-pipelines.md).
	Spawn *SpawnConfig `json:"spawn,omitempty"`
}

// SpawnConfig declares a spawn node: a success callback of the node's run may spawn up to
// MaxItems task runs (CallbackRequest.Spawn); the node completes when every one resolved, its
// output for successors {"output": <its own output>, "items": [<their outputs, in order>]}.
type SpawnConfig struct {
	// MaxItems bounds the entries of one callback (1 to the orchestrator's MAP_MAX_ITEMS; 0 or
	// absent at declaration = MAP_MAX_ITEMS): more are refused with 400 SPAWN_TOO_MANY.
	MaxItems int `json:"maxItems,omitempty"`
	// MaxConcurrency bounds the node's spawned runs ready or in flight at once, across every
	// orchestrator instance (nil: no bound of its own; at least 1 when set): the others wait, in
	// index order, until one resolves.
	MaxConcurrency *int `json:"maxConcurrency,omitempty"`
}

// SpawnRequest is one entry of a callback's spawn: a run of task TaskID (a task of the spawning
// task's service) with input Input.
type SpawnRequest struct {
	TaskID string          `json:"taskId"`
	Input  json.RawMessage `json:"input,omitempty"`
}

// MapConfig declares a map node: when the node becomes ready, its task runs once per element of
// the array that the JSON pointer Items selects in the output of Over, a direct predecessor of
// the node; the node's output is the array of the items' outputs, in index order.
type MapConfig struct {
	// Over is the task whose output holds the items.
	Over string `json:"over"`
	// Items is an RFC 6901 JSON pointer into Over's output ("" = the whole output).
	Items string `json:"items"`
	// MaxItems bounds the number of items (1 to the orchestrator's MAP_MAX_ITEMS, default
	// 10,000; 0 or absent at declaration = MAP_MAX_ITEMS): a longer array fails the map node with
	// MAP_TOO_LARGE.
	MaxItems int `json:"maxItems,omitempty"`
	// MaxConcurrency bounds the node's items in flight (dispatching or running) per map row, across
	// every orchestrator instance (nil: no bound of its own; at least 1 when set).
	MaxConcurrency *int `json:"maxConcurrency,omitempty"`
}

// MaxPipelineTimeoutMs is the largest timeoutMs of a pipeline or a trigger: 30 days.
const MaxPipelineTimeoutMs = 30 * 24 * 60 * 60 * 1000

// PipelineTimeout is the error code of a pipeline run whose deadline passed.
const PipelineTimeout = "PIPELINE_TIMEOUT"

// RegisterRequest is the body of POST /api/register.
type RegisterRequest struct {
	ServiceID string               `json:"serviceId"`
	Version   string               `json:"version"`
	BaseURL   string               `json:"baseUrl"`
	Tasks     []TaskDefinition     `json:"tasks"`
	Pipelines []PipelineDefinition `json:"pipelines,omitempty"`
	// DispatchBatchMax, when 2 or more, says the worker takes up to this many dispatches in one
	// POST {baseUrl}/tasks (DispatchBatchPath; this project's extension). Absent (0): one
	// dispatch per request, as upstream's workers take them.
	DispatchBatchMax int `json:"dispatchBatchMax,omitempty"`
}

// CodeChange reports a task whose code hash changed at registration.
type CodeChange struct {
	TaskID     string `json:"taskId"`
	OldHash    string `json:"oldHash"`
	NewHash    string `json:"newHash"`
	OldVersion int    `json:"oldVersion"`
	NewVersion int    `json:"newVersion"`
}

// RegisterResponse is the answer to a registration.
type RegisterResponse struct {
	Success       bool         `json:"success"`
	CodeChanges   []CodeChange `json:"codeChanges"`
	OrphanedTasks []string     `json:"orphanedTasks"`
}

// Asset types (upstream's AssetType): what an asset holds.
const (
	AssetJSON   = "json"
	AssetText   = "text"
	AssetBinary = "binary"
)

// Asset is an object a task produced, stored beside its output. Path, size and type are always
// present on the wire, as upstream's AssetMetadata requires.
type Asset struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Type string `json:"type"`
}

// UpstreamRef points a task at the output of a completed predecessor. OutputPath is always
// present (a string, "" when the predecessor reported none). Output is the output itself when
// the orchestrator keeps it inline (INLINE_PAYLOAD_MAX_BYTES): it is then not in storage, and a
// worker reads it here instead of at OutputPath (this project's extension; absent otherwise).
type UpstreamRef struct {
	OutputPath string           `json:"outputPath"`
	Assets     map[string]Asset `json:"assets,omitempty"`
	Output     json.RawMessage  `json:"output,omitempty"`
}

// Attempt is one earlier, failed attempt of a task run.
type Attempt struct {
	Attempt   int       `json:"attempt"`
	Error     string    `json:"error"`
	ErrorCode string    `json:"errorCode,omitempty"`
	Timestamp time.Time `json:"timestamp"`
}

// DispatchRequest is the body the orchestrator POSTs to {baseUrl}/tasks/{taskId}.
type DispatchRequest struct {
	RunID         string `json:"runId"`
	TaskID        string `json:"taskId"`
	PipelineRunID string `json:"pipelineRunId,omitempty"`
	Attempt       int    `json:"attempt"`
	CodeVersion   int    `json:"codeVersion"`
	CodeHash      string `json:"codeHash"`
	StorageToken  string `json:"storageToken"`
	InputPath     string `json:"inputPath"`
	// UpstreamRefs is always an object ({} for a run without completed predecessors): Node.js
	// SDK 1.x workers iterate it unconditionally.
	UpstreamRefs        map[string]UpstreamRef `json:"upstreamRefs"`
	PreviousAttempts    []Attempt              `json:"previousAttempts"`
	HeartbeatIntervalMs int64                  `json:"heartbeatIntervalMs"`
	// Input is the run's input when the orchestrator keeps it inline (INLINE_PAYLOAD_MAX_BYTES):
	// it is then not in storage, and a worker reads it here instead of at InputPath (this
	// project's extension; absent otherwise).
	Input json.RawMessage `json:"input,omitempty"`
	// OutputInlineMax is the largest output, in bytes, the worker may send inline in its callback
	// (CallbackRequest.Output) instead of writing it to storage; absent (0): none.
	OutputInlineMax int64 `json:"outputInlineMax,omitempty"`
	// CallbackBatchMax, when present, says the orchestrator takes the callbacks of up to this
	// many runs in one POST /api/callbacks (CallbackBatchPath; this project's extension).
	CallbackBatchMax int `json:"callbackBatchMax,omitempty"`
}

// HeartbeatRequest is the body of POST /api/heartbeat and POST /api/progress.
type HeartbeatRequest struct {
	RunID    string `json:"runId"`
	Progress *int   `json:"progress,omitempty"`
	Message  string `json:"message,omitempty"`
}

// HeartbeatResponse answers a heartbeat or a progress report.
type HeartbeatResponse struct {
	Acknowledged bool `json:"acknowledged"`
	ShouldCancel bool `json:"shouldCancel"`
}

// Callback statuses.
const (
	CallbackSuccess = "success"
	CallbackFailed  = "failed"
)

// CallbackRequest is the body of POST /api/callback/{runId}.
type CallbackRequest struct {
	Status     string `json:"status"`
	OutputPath string `json:"outputPath,omitempty"`
	OutputSize int64  `json:"outputSize,omitempty"`
	// Output, on a success, is the output itself, of at most the dispatch's outputInlineMax
	// bytes, sent instead of writing it to storage; OutputPath is then still the run's own
	// protocol.OutputPath, under which the orchestrator serves it (this project's extension).
	Output       json.RawMessage  `json:"output,omitempty"`
	Assets       map[string]Asset `json:"assets,omitempty"`
	LogsPath     string           `json:"logsPath,omitempty"`
	SelectedNext []string         `json:"selectedNext,omitempty"`
	Error        string           `json:"error,omitempty"`
	ErrorCode    string           `json:"errorCode,omitempty"`
	Retryable    *bool            `json:"retryable,omitempty"`
	// IdempotencyKey, on a success, records this run's result under the key for the task's
	// idempotencyTTL (this project's extension; see IdempotencyCheckRequest).
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Spawn, on a success of a spawn node's run, lists task runs to start, which the node then
	// waits for (this project's extension; docs/dynamic-pipelines.md). A failure's is dropped.
	Spawn []SpawnRequest `json:"spawn,omitempty"`
}

// CallbackBatchPath is the route of the batch callback (this project's extension); a dispatch
// from an orchestrator that serves it says so in DispatchRequest.CallbackBatchMax.
const CallbackBatchPath = "/api/callbacks"

// CallbackBatchRequest is the body of POST /api/callbacks: the callbacks of several runs, each
// answered as POST /api/callback/{runId} would answer it alone.
type CallbackBatchRequest struct {
	Callbacks []CallbackBatchItem `json:"callbacks"`
}

// CallbackBatchItem is one run's callback in a CallbackBatchRequest: the run, its run token
// (the dispatch's storageToken, the bearer of a single callback), its trace context and the
// callback's fields.
type CallbackBatchItem struct {
	RunID string `json:"runId"`
	Token string `json:"token,omitempty"`
	// Traceparent and Tracestate are the W3C trace context of this callback (the headers a
	// single callback would carry), so that its span joins its own attempt's trace.
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`
	CallbackRequest
}

// CallbackBatchResponse answers POST /api/callbacks with one result per callback, in order.
type CallbackBatchResponse struct {
	Results []CallbackBatchResult `json:"results"`
}

// CallbackBatchResult is one callback's answer: HTTPStatus is the status the single callback
// would have had. 200 comes with Acknowledged, Applied and Status (the single callback's
// answer); any other with Error, Code and maybe Details (its error body).
type CallbackBatchResult struct {
	RunID        string `json:"runId"`
	HTTPStatus   int    `json:"httpStatus"`
	Acknowledged bool   `json:"acknowledged,omitempty"`
	Applied      *bool  `json:"applied,omitempty"`
	Status       string `json:"status,omitempty"`
	Error        string `json:"error,omitempty"`
	Code         string `json:"code,omitempty"`
	Details      any    `json:"details,omitempty"`
}

// DispatchBatchPath is the worker's route for several dispatches in one request (this project's
// extension), relative to its base URL; a worker that serves it says so at registration
// (RegisterRequest.DispatchBatchMax).
const DispatchBatchPath = "/tasks"

// DispatchBatchRequest is the body of POST {baseUrl}/tasks: several dispatches, each answered as
// POST {baseUrl}/tasks/{taskId} would answer it alone.
type DispatchBatchRequest struct {
	Dispatches []DispatchBatchItem `json:"dispatches"`
}

// DispatchBatchItem is one dispatch in a DispatchBatchRequest: the dispatch's fields and its W3C
// trace context (the headers a single dispatch would carry).
type DispatchBatchItem struct {
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`
	DispatchRequest
}

// DispatchBatchResponse answers POST {baseUrl}/tasks with one result per dispatch, in order.
type DispatchBatchResponse struct {
	Results []DispatchBatchResult `json:"results"`
}

// DispatchBatchResult is one dispatch's answer: HTTPStatus is the status the single dispatch
// would have had (202 accepted; 429 or 503 back pressure; any other an error, with Error and
// Code).
type DispatchBatchResult struct {
	RunID      string `json:"runId"`
	HTTPStatus int    `json:"httpStatus"`
	Duplicate  bool   `json:"duplicate,omitempty"`
	Error      string `json:"error,omitempty"`
	Code       string `json:"code,omitempty"`
}

// IdempotencyCheckRequest is the body of POST /api/idempotency/check (this project's
// extension), authenticated with the run token: does the run's task have a completed result
// recorded under key within its idempotencyTTL?
type IdempotencyCheckRequest struct {
	RunID string `json:"runId"`
	Key   string `json:"key"`
}

// IdempotencyCheckResponse answers an idempotency check. On a hit the worker reports the cached
// result in its callback instead of running the task.
type IdempotencyCheckResponse struct {
	Hit        bool             `json:"hit"`
	RunID      string           `json:"runId,omitempty"` // the run that produced the result
	OutputPath string           `json:"outputPath,omitempty"`
	OutputSize int64            `json:"outputSize,omitempty"`
	Assets     map[string]Asset `json:"assets,omitempty"`
	// SelectedNext is what that run selected, to report again with the cached result.
	SelectedNext []string `json:"selectedNext,omitempty"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error   string `json:"error"`
	Code    string `json:"code"`
	Details any    `json:"details,omitempty"`
}

// Storage paths inside the default backend.

// StandaloneInputPath is where the input of a standalone run is stored.
func StandaloneInputPath(runID string) string { return "standalone/" + runID + "/input.json" }

// PipelineInputPath is where the input of a pipeline run is stored.
func PipelineInputPath(pipelineRunID string) string {
	return "pipelines/" + pipelineRunID + "/input.json"
}

// OutputPath is where a run's output is stored.
func OutputPath(runID string) string { return "runs/" + runID + "/output.json" }

// AssetPath is where a run's asset named key is stored.
func AssetPath(runID, key string) string { return "runs/" + runID + "/assets/" + key }

// LogsPath is where a run's logs are stored.
func LogsPath(runID string) string { return "runs/" + runID + "/logs.jsonl" }
