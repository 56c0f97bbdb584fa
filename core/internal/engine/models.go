package engine

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Run is a task run (the API answers it as protocol.TaskRun).
type Run struct {
	ID               string
	TaskID           string
	PipelineRunID    string
	Status           protocol.TaskRunStatus
	Attempt          int
	Priority         int
	Error            *string
	ErrorCode        *string
	PreviousAttempts []protocol.Attempt
	CodeVersion      int
	CodeHash         string
	InputPath        string
	OutputPath       *string
	OutputSize       *int64
	Assets           map[string]protocol.Asset
	LogsPath         *string
	SelectedNext     []string
	Progress         *int
	ProgressMessage  string
	Metadata         json.RawMessage
	IdempotencyKey   string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	ScheduledAt      time.Time
	StartedAt        *time.Time
	CompletedAt      *time.Time
	DeadlineAt       *time.Time
	// ScheduleID and ScheduleSlot name the schedule and the slot that made the run ("" and nil
	// for runs no schedule made).
	ScheduleID   string
	ScheduleSlot *time.Time
	// ItemIndex is a map item's index (nil on every other run); ItemsTotal and ItemsLeft count
	// a map row's items and those not resolved yet (nil on every other run).
	ItemIndex  *int
	ItemsTotal *int
	ItemsLeft  *int
	// SpawnedBy is the spawning row of a spawned run ("" on every other run; spawn.go), whose
	// ItemIndex is its place in the spawn.
	SpawnedBy string
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// runOf is the run a RunGet row (or a RunList or PipelineRunTaskRuns one) stores.
func runOf(row dbsqlc.RunGetRow) (Run, error) {
	r := Run{ID: row.ID, TaskID: row.TaskID, PipelineRunID: row.PipelineRunID, Status: row.Status, Attempt: row.Attempt,
		Priority: row.Priority, Error: nonEmpty(row.Error), ErrorCode: nonEmpty(row.ErrorCode), CodeVersion: row.CodeVersion,
		CodeHash: row.CodeHash, InputPath: row.InputPath, OutputPath: nonEmpty(row.OutputPath), OutputSize: row.OutputSize,
		LogsPath: nonEmpty(row.LogsPath), SelectedNext: row.SelectedNext, Progress: row.Progress,
		ProgressMessage: row.ProgressMessage, IdempotencyKey: row.IdempotencyKey, CreatedAt: row.CreatedAt,
		UpdatedAt: row.UpdatedAt, ScheduledAt: row.AvailableAt, StartedAt: row.StartedAt, CompletedAt: row.CompletedAt,
		DeadlineAt: row.Deadline, ScheduleID: row.ScheduleID, ScheduleSlot: row.ScheduleSlot,
		ItemIndex: row.ItemIndex, ItemsTotal: row.ItemsTotal, ItemsLeft: row.ItemsLeft, SpawnedBy: row.SpawnedBy}
	r.PreviousAttempts = []protocol.Attempt{}
	if err := json.Unmarshal(row.PreviousAttempts, &r.PreviousAttempts); err != nil {
		return Run{}, fmt.Errorf("previous attempts of %s: %w", row.ID, err)
	}
	if len(row.Assets) > 0 {
		if err := json.Unmarshal(row.Assets, &r.Assets); err != nil {
			return Run{}, fmt.Errorf("assets of %s: %w", row.ID, err)
		}
	}
	if len(row.Metadata) > 0 {
		r.Metadata = row.Metadata
	}
	return r, nil
}

// Service is a registered worker service.
type Service struct {
	ID           string
	Version      string
	BaseURL      string
	RegisteredAt time.Time
	UpdatedAt    time.Time
	Tasks        []string
	// Secret says which master secret the service last registered with: "current",
	// "previous" (PIPEWEAVE_SECRET_KEY_PREVIOUS; re-register it with the new service key
	// before removing that variable), or "unknown" (a secret no longer configured, a
	// registration from before service keys, or an unauthenticated compat-mode one).
	Secret string
}

// Task is a registered task definition with its current code version.
type Task struct {
	ID                  string
	ServiceID           string
	CodeHash            string
	CodeVersion         int
	AllowedNext         []string
	Timeout             int
	Retries             int
	RetryBackoff        string
	RetryDelayMs        int64
	MaxRetryDelayMs     int64
	HeartbeatIntervalMs int64
	Concurrency         int
	Priority            int
	IdempotencyTTL      int
	Description         string
	InputSchema         json.RawMessage
	InputJSONSchema     json.RawMessage
	RemovedInVersion    string
	CreatedAt           time.Time
	UpdatedAt           time.Time
	// PausedAt is when the task was paused (nil: it is not): its runs wait, pending.
	PausedAt *time.Time
	// RateLimit is the task's own rate limit (nil: none), RateLimitKey the named one it shares
	// ("" none); ConcurrencyKey and ConcurrencyPerKey its limit per key ("" and 0: none).
	RateLimit         *protocol.RateLimit
	RateLimitKey      string
	ConcurrencyKey    string
	ConcurrencyPerKey int
}

// TaskPause is a task's pause state, as pausing or resuming it left it.
type TaskPause struct {
	TaskID   string
	Paused   bool
	PausedAt *time.Time
}

// PipelinePause is a pipeline's pause state, as pausing or resuming it left it.
type PipelinePause struct {
	PipelineID string
	Paused     bool
	PausedAt   *time.Time
}

// HistoryEntry is one code version of a task.
type HistoryEntry struct {
	CodeVersion    int
	CodeHash       string
	ServiceVersion string
	RecordedAt     time.Time
}

// DLQEntry is a run that failed for good.
type DLQEntry struct {
	ID             string
	TaskRunID      string
	TaskID         string
	PipelineRunID  string
	PipelineID     string
	InputPath      string
	Error          string
	ErrorCode      string
	Attempts       int
	AttemptHistory []protocol.Attempt
	CodeVersion    int
	CodeHash       string
	FailedAt       time.Time
	RetriedAt      *time.Time
	RetryRunID     string
	Input          json.RawMessage
}

// dlqEntryOf is the entry a DLQGet row (or a DLQList one) stores.
func dlqEntryOf(r dbsqlc.DLQGetRow) (DLQEntry, error) {
	d := DLQEntry{ID: r.ID, TaskRunID: r.TaskRunID, TaskID: r.TaskID, PipelineRunID: r.PipelineRunID, PipelineID: r.PipelineID,
		InputPath: r.InputPath, Error: r.Error, ErrorCode: r.ErrorCode, CodeVersion: r.CodeVersion, CodeHash: r.CodeHash,
		FailedAt: r.FailedAt, RetriedAt: r.RetriedAt, RetryRunID: r.RetryRunID}
	d.AttemptHistory = []protocol.Attempt{}
	if err := json.Unmarshal(r.Attempts, &d.AttemptHistory); err != nil {
		return DLQEntry{}, fmt.Errorf("attempts of %s: %w", r.ID, err)
	}
	// Upstream's attempts is a positive count: an entry always stands for at least one attempt.
	d.Attempts = max(len(d.AttemptHistory), 1)
	return d, nil
}

// QueueStatus counts runs by state.
type QueueStatus struct {
	Pending       int64
	Dispatching   int64
	Running       int64
	Waiting       int64
	Completed     int64
	Failed        int64
	Cancelled     int64
	Skipped       int64
	DLQ           int64
	OldestPending *time.Time
}

// ProcessSummary says what one bounded batch did.
type ProcessSummary struct {
	Swept      int
	Claimed    int
	Dispatched int
	Failed     int
	// WebhookDeliveries counts the webhook delivery attempts made (any outcome).
	WebhookDeliveries int
	DurationMs        int64
}

// Page is one page of a listing.
type Page[T any] struct {
	Items      []T
	NextCursor string
}

// statusTexts are states as the text[] a statement takes.
func statusTexts(states ...protocol.TaskRunStatus) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}
