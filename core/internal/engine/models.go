package engine

import (
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Run is a task run as the API shows it.
type Run = protocol.TaskRun

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
type Service = protocol.Service

// Task is a registered task definition with its current code version.
type Task = protocol.Task

// HistoryEntry is one code version of a task.
type HistoryEntry = protocol.HistoryEntry

// DLQEntry is a run that failed for good.
type DLQEntry = protocol.DLQEntry

func scanDLQ(row pgx.Row) (DLQEntry, error) {
	var d DLQEntry
	var attempts []byte
	if err := row.Scan(&d.ID, &d.TaskRunID, &d.TaskID, &d.PipelineRunID, &d.PipelineID, &d.InputPath, &d.Error,
		&d.ErrorCode, &attempts, &d.CodeVersion, &d.CodeHash, &d.FailedAt, &d.RetriedAt, &d.RetryRunID); err != nil {
		return DLQEntry{}, err
	}
	d.AttemptHistory = []protocol.Attempt{}
	if err := json.Unmarshal(attempts, &d.AttemptHistory); err != nil {
		return DLQEntry{}, err
	}
	// Upstream's attempts is a positive count: an entry always stands for at least one attempt.
	d.Attempts = max(len(d.AttemptHistory), 1)
	return d, nil
}

// QueueStatus counts runs by state.
type QueueStatus = protocol.QueueStatus

// ProcessSummary says what one bounded batch did.
type ProcessSummary = protocol.ProcessSummary

// Page is one page of a listing.
type Page[T any] = protocol.Page[T]
