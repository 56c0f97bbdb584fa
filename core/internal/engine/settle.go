package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// failures are attempts to end as failed (each may be retried), column by column.
type failures struct {
	ids, pipelineRuns, errs, codes []string
	leases                         []int64
	retry                          []bool
}

// anyLease in failures.leases applies the failure to whatever lease is current (compat workers
// send no token).
const anyLease int64 = -1

// add adds an attempt that is retried if it has retries left.
func (f *failures) add(id string, lease int64, pipelineRun, msg, code string) {
	f.addFinal(id, lease, pipelineRun, msg, code, false)
}

// addFinal adds an attempt that, if final, fails for good whatever retries are left.
func (f *failures) addFinal(id string, lease int64, pipelineRun, msg, code string, final bool) {
	f.ids, f.leases, f.pipelineRuns = append(f.ids, id), append(f.leases, lease), append(f.pipelineRuns, pipelineRun)
	f.errs, f.codes, f.retry = append(f.errs, msg), append(f.codes, code), append(f.retry, !final)
}

// failAndAdvance ends attempts the orchestrator gave up on (failed dispatches, expired
// deadlines) as failed, moving their leases on so the workers' late calls get 409, and, in the
// same transaction, advances the pipeline runs of those that failed for good.
func (e *Engine) failAndAdvance(ctx context.Context, f failures) ([]endedAttempt, error) {
	var ended []endedAttempt
	var runs map[string]*lockedRun
	err := e.db.InTx(ctx, func(tx dbtx) error {
		var err error
		if runs, err = e.lockRuns(ctx, tx, f.pipelineRuns); err != nil {
			return err
		}
		if ended, err = e.failAttempts(ctx, tx, f, true); err != nil {
			return err
		}
		return e.advanceFailed(ctx, tx, runs, ended)
	})
	if err == nil {
		e.countEnded(ended)
		for _, a := range ended {
			e.cfg.Signals.RunStatus.Send(RunStatus{ID: a.ID, Status: a.Status})
		}
		e.cfg.Signals.signalEnded(runs)
	}
	return ended, err
}

// failAttempts applies FailAttempts to f in tx, moving the leases on when bump is true.
func (e *Engine) failAttempts(ctx context.Context, tx dbtx, f failures, bump bool) ([]endedAttempt, error) {
	rows, err := queries.FailAttempts(ctx, tx, dbsqlc.FailAttemptsParams{IDs: f.ids, Leases: f.leases, Errors: f.errs,
		Codes: f.codes, Retryable: f.retry, Bump: bump, Now: e.now()})
	if err != nil {
		return nil, fmt.Errorf("fail attempts: %w", err)
	}
	out := make([]endedAttempt, len(rows))
	for i, r := range rows {
		out[i] = endedAttempt{ID: r.ID, TaskID: r.TaskID, Status: protocol.TaskRunStatus(r.Status), Attempt: r.Attempt,
			AvailableAt: r.AvailableAt, PipelineRunID: r.PipelineRunID, Seconds: r.Seconds}
	}
	return out, nil
}

// endedAttempt is a run whose attempt failed, with what became of it (a FailAttempts row, its state typed).
type endedAttempt struct {
	ID            string
	TaskID        string
	Status        protocol.TaskRunStatus // pending (retry) or failed
	Attempt       int
	AvailableAt   time.Time
	PipelineRunID string
	// Seconds is the time from the run's first claim to the end of this attempt.
	Seconds float64
}

// countEnded counts, once their transaction committed, the failed attempts that were retried
// and the runs that failed for good into the DLQ.
func (e *Engine) countEnded(ended []endedAttempt) {
	for _, a := range ended {
		switch a.Status {
		case protocol.StatusPending:
			e.metrics.Retries.WithLabelValues(a.TaskID).Inc()
		case protocol.StatusFailed:
			e.metrics.DLQEntries.WithLabelValues(a.TaskID).Inc()
		}
	}
}
