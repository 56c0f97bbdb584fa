package engine

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Run is a task run as the API shows it.
type Run struct {
	ID               string                    `json:"id"`
	TaskID           string                    `json:"taskId"`
	PipelineRunID    string                    `json:"pipelineRunId,omitempty"`
	Status           string                    `json:"status"`
	Attempt          int                       `json:"attempt"`
	Priority         int                       `json:"priority"`
	Error            *string                   `json:"error"`
	ErrorCode        *string                   `json:"errorCode"`
	PreviousAttempts []protocol.Attempt        `json:"previousAttempts"`
	CodeVersion      int                       `json:"codeVersion"`
	CodeHash         string                    `json:"codeHash"`
	InputPath        string                    `json:"inputPath"`
	OutputPath       *string                   `json:"outputPath"`
	OutputSize       *int64                    `json:"outputSize,omitempty"`
	Assets           map[string]protocol.Asset `json:"assets,omitempty"`
	LogsPath         *string                   `json:"logsPath,omitempty"`
	SelectedNext     []string                  `json:"selectedNext,omitempty"`
	Progress         *int                      `json:"progress,omitempty"`
	ProgressMessage  string                    `json:"progressMessage,omitempty"`
	Metadata         json.RawMessage           `json:"metadata,omitempty"`
	IdempotencyKey   string                    `json:"idempotencyKey,omitempty"`
	CreatedAt        time.Time                 `json:"createdAt"`
	UpdatedAt        time.Time                 `json:"updatedAt"`
	ScheduledAt      time.Time                 `json:"scheduledAt"`
	StartedAt        *time.Time                `json:"startedAt"`
	CompletedAt      *time.Time                `json:"completedAt"`
	DeadlineAt       *time.Time                `json:"deadlineAt,omitempty"`
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var errText, errCode, outPath, logsPath string
	var prev, assets, metadata []byte
	err := row.Scan(&r.ID, &r.TaskID, &r.PipelineRunID, &r.Status, &r.Attempt, &r.Priority, &errText,
		&errCode, &prev, &r.CodeVersion, &r.CodeHash, &r.InputPath, &outPath, &r.OutputSize, &assets,
		&logsPath, &r.SelectedNext, &r.Progress, &r.ProgressMessage, &metadata, &r.IdempotencyKey,
		&r.CreatedAt, &r.UpdatedAt, &r.ScheduledAt, &r.StartedAt, &r.CompletedAt, &r.DeadlineAt)
	if err != nil {
		return Run{}, err
	}
	r.Error, r.ErrorCode, r.OutputPath, r.LogsPath = nonEmpty(errText), nonEmpty(errCode), nonEmpty(outPath), nonEmpty(logsPath)
	r.PreviousAttempts = []protocol.Attempt{}
	if err := json.Unmarshal(prev, &r.PreviousAttempts); err != nil {
		return Run{}, err
	}
	if len(assets) > 0 {
		if err := json.Unmarshal(assets, &r.Assets); err != nil {
			return Run{}, err
		}
	}
	if len(metadata) > 0 {
		r.Metadata = metadata
	}
	return r, nil
}

// Service is a registered worker service.
type Service struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	BaseURL      string    `json:"baseUrl"`
	RegisteredAt time.Time `json:"registeredAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	Tasks        []string  `json:"tasks"`
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
	RemovedInVersion    string          `json:"removedInVersion,omitempty"`
	CreatedAt           time.Time       `json:"createdAt"`
	UpdatedAt           time.Time       `json:"updatedAt"`
}

// HistoryEntry is one code version of a task.
type HistoryEntry struct {
	CodeVersion    int       `json:"codeVersion"`
	CodeHash       string    `json:"codeHash"`
	ServiceVersion string    `json:"serviceVersion"`
	RecordedAt     time.Time `json:"recordedAt"`
}

// DLQEntry is a run that failed for good.
type DLQEntry struct {
	ID            string             `json:"id"`
	TaskRunID     string             `json:"taskRunId"`
	TaskID        string             `json:"taskId"`
	PipelineRunID string             `json:"pipelineRunId,omitempty"`
	PipelineID    string             `json:"pipelineId,omitempty"`
	InputPath     string             `json:"inputPath"`
	Error         string             `json:"error"`
	ErrorCode     string             `json:"errorCode,omitempty"`
	Attempts      []protocol.Attempt `json:"attempts"`
	CodeVersion   int                `json:"codeVersion"`
	CodeHash      string             `json:"codeHash"`
	FailedAt      time.Time          `json:"failedAt"`
	RetriedAt     *time.Time         `json:"retriedAt"`
	RetryRunID    string             `json:"retryRunId,omitempty"`
}

func scanDLQ(row pgx.Row) (DLQEntry, error) {
	var d DLQEntry
	var attempts []byte
	if err := row.Scan(&d.ID, &d.TaskRunID, &d.TaskID, &d.PipelineRunID, &d.PipelineID, &d.InputPath, &d.Error,
		&d.ErrorCode, &attempts, &d.CodeVersion, &d.CodeHash, &d.FailedAt, &d.RetriedAt, &d.RetryRunID); err != nil {
		return DLQEntry{}, err
	}
	d.Attempts = []protocol.Attempt{}
	if err := json.Unmarshal(attempts, &d.Attempts); err != nil {
		return DLQEntry{}, err
	}
	return d, nil
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

// ProcessSummary says what one bounded batch did.
type ProcessSummary struct {
	Swept      int   `json:"swept"`
	Claimed    int   `json:"claimed"`
	Dispatched int   `json:"dispatched"`
	Failed     int   `json:"failed"`
	DurationMs int64 `json:"durationMs"`
}

// Page is one page of a listing.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}
