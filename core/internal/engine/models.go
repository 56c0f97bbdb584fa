package engine

import (
	"encoding/json"
	"fmt"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Run is a task run as the API shows it.
type Run = protocol.TaskRun

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
		DeadlineAt: row.Deadline}
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
type Service = protocol.Service

// Task is a registered task definition with its current code version.
type Task = protocol.Task

// HistoryEntry is one code version of a task.
type HistoryEntry = protocol.HistoryEntry

// DLQEntry is a run that failed for good.
type DLQEntry = protocol.DLQEntry

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
type QueueStatus = protocol.QueueStatus

// ProcessSummary says what one bounded batch did.
type ProcessSummary = protocol.ProcessSummary

// Page is one page of a listing.
type Page[T any] = protocol.Page[T]

// statusTexts are states as the text[] a statement takes.
func statusTexts(states ...protocol.TaskRunStatus) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}
