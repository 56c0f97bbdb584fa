package dbsqlc

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Statements sent together in one round trip, which sqlc does not generate (its batch queries
// send one statement per batch). They reuse the generated statements' text.

// Batcher sends several statements in one round trip: a pgx connection or transaction, or an
// executor of package internal/database.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// AdvanceSuccessorsAndFinish runs AdvanceSuccessors and then FinishPipelineRunIfDone of the
// same pipeline run, in one round trip. The finish is a statement of its own, so it counts
// the states the advance left.
func (q *Queries) AdvanceSuccessorsAndFinish(ctx context.Context, db Batcher, arg AdvanceSuccessorsParams) ([]AdvanceSuccessorsRow, string, error) {
	b := &pgx.Batch{}
	b.Queue(advanceSuccessors, arg.PipelineRunID, arg.FailureMode, arg.TaskIDs, arg.Resolved, arg.Selected, arg.Failed)
	b.Queue(finishPipelineRunIfDone, arg.PipelineRunID)
	var items []AdvanceSuccessorsRow
	var finished string
	err := sendAndRead(ctx, db, b, func(br pgx.BatchResults) (err error) {
		items, finished, err = readAdvanceAndFinish(br)
		return err
	})
	return items, finished, err
}

// sendAndRead sends b on db, reads its results with read and closes them; the first error
// is returned.
func sendAndRead(ctx context.Context, db Batcher, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	br := db.SendBatch(ctx, b)
	err := read(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

func readAdvanceAndFinish(br pgx.BatchResults) ([]AdvanceSuccessorsRow, string, error) {
	items, err := queryRows[AdvanceSuccessorsRow](br)
	if err != nil {
		return nil, "", err
	}
	var finished string
	if err := br.QueryRow().Scan(&finished); err != nil {
		return nil, "", fmt.Errorf("finish: %w", err)
	}
	return items, finished, nil
}

// queryRows reads the batch's next result into rows of T, a generated row struct (its fields
// are in column order).
func queryRows[T any](br pgx.BatchResults) ([]T, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[T])
}

// LockPipelineRunsAndComplete runs LockPipelineRuns and then Complete in one round trip: the
// pipeline runs are locked before the task run is written, as every writer does. When Complete
// matches no run, its error (pgx.ErrNoRows, as its caller's executor reports it) comes with the
// locked rows.
func (q *Queries) LockPipelineRunsAndComplete(ctx context.Context, db Batcher, ids []string, arg CompleteParams) ([]LockPipelineRunsRow, CompleteRow, error) {
	b := &pgx.Batch{}
	b.Queue(lockPipelineRuns, ids)
	b.Queue(complete, arg.OutputPath, arg.Output, arg.ID, arg.OutputSize, arg.Assets, arg.LogsPath, arg.SelectedNext, arg.Lease)
	var locked []LockPipelineRunsRow
	var done CompleteRow
	err := sendAndRead(ctx, db, b, func(br pgx.BatchResults) (err error) {
		locked, done, err = readLockAndComplete(br)
		return err
	})
	return locked, done, err
}

func readLockAndComplete(br pgx.BatchResults) ([]LockPipelineRunsRow, CompleteRow, error) {
	var done CompleteRow
	locked, err := queryRows[LockPipelineRunsRow](br)
	if err != nil {
		return nil, done, err
	}
	return locked, done, br.QueryRow().Scan(&done.TaskID, &done.Seconds)
}

// FinishPipelineRunIfDoneIn is FinishPipelineRunIfDone sent as a batch on db (so that a sender
// that ends the transaction with the batch can carry it).
func (q *Queries) FinishPipelineRunIfDoneIn(ctx context.Context, db Batcher, id string) (string, error) {
	b := &pgx.Batch{}
	b.Queue(finishPipelineRunIfDone, id)
	var finished string
	err := sendAndRead(ctx, db, b, func(br pgx.BatchResults) error { return br.QueryRow().Scan(&finished) })
	return finished, err
}

// CompleteStandaloneAndClaim runs CompleteStandalone, LockClaimsGenericPlan (lock), Claim and
// MarkRunning (acks; skipped when it has no runs) in one round trip. Sent on a pool, they are
// one implicit transaction: the claim takes the places the completions freed before any other
// claim can see them free, and the workers' acknowledgements of earlier dispatches ride along.
// The acknowledgements come last: their rows are mostly runs whose callbacks reach other
// instances, and a row MarkRunning updated stays locked until the commit, so updated before the
// claim lock they made those callbacks wait for this transaction's turn at the lock (row-lock
// waits in 26 of 275 samples of a 4-replica run's active sessions, 2 of 193 with this order).
func (q *Queries) CompleteStandaloneAndClaim(ctx context.Context, db Batcher, done CompleteStandaloneParams, acks MarkRunningParams, lock int64, arg ClaimParams) ([]CompleteStandaloneRow, []ClaimRow, error) {
	return completeAndClaim[ClaimRow](ctx, db, done, acks, lock, claim, arg.MaxConcurrency, arg.Max, arg.Now, arg.LeaseMs)
}

// CompleteStandaloneAndClaimFlowControl is CompleteStandaloneAndClaim with ClaimFlowControl.
func (q *Queries) CompleteStandaloneAndClaimFlowControl(ctx context.Context, db Batcher, done CompleteStandaloneParams, acks MarkRunningParams, lock int64, arg ClaimFlowControlParams) ([]CompleteStandaloneRow, []ClaimFlowControlRow, error) {
	return completeAndClaim[ClaimFlowControlRow](ctx, db, done, acks, lock, claimFlowControl, arg.MaxConcurrency, arg.Max, arg.Now, arg.LeaseMs)
}

// completeAndClaim sends CompleteStandalone (queueCompleteStandalone), the claim lock, claimSQL (whose arguments are the
// claim's, in the generated method's order) and MarkRunning (when acks has runs) as one batch,
// and reads the rows of the first and the third into their generated row types, whose fields are
// in column order.
func completeAndClaim[C any](ctx context.Context, db Batcher, done CompleteStandaloneParams, acks MarkRunningParams, lock int64, claimSQL string, claimArgs ...any) ([]CompleteStandaloneRow, []C, error) {
	b := &pgx.Batch{}
	var completed []CompleteStandaloneRow
	var claimed []C
	queueCompleteStandalone(b, done)
	b.Queue(lockClaimsGenericPlan, lock)
	b.Queue(claimSQL, claimArgs...)
	withAcks := len(acks.IDs) > 0
	if withAcks {
		b.Queue(markRunning, acks.Leases, acks.IDs)
	}
	err := sendAndRead(ctx, db, b, func(br pgx.BatchResults) (err error) {
		if completed, err = readCompleteStandalone(br); err != nil {
			return err
		}
		if _, err = br.Exec(); err != nil { // the claim lock
			return err
		}
		if claimed, err = queryRows[C](br); err != nil {
			return err
		}
		if withAcks {
			_, err = br.Exec()
		}
		return err
	})
	return completed, claimed, err
}

// CompleteStandaloneCounted runs CompleteStandalone between BulkFinalOn and BulkFinalOff, in
// one round trip: the statement counts and announces its completions once for all
// (migrations/023_bulk_final_counts.sql). Every caller of CompleteStandalone goes through it.
func (q *Queries) CompleteStandaloneCounted(ctx context.Context, db Batcher, done CompleteStandaloneParams) ([]CompleteStandaloneRow, error) {
	b := &pgx.Batch{}
	queueCompleteStandalone(b, done)
	var completed []CompleteStandaloneRow
	err := sendAndRead(ctx, db, b, func(br pgx.BatchResults) (err error) {
		completed, err = readCompleteStandalone(br)
		return err
	})
	return completed, err
}

// queueCompleteStandalone queues BulkFinalOn, CompleteStandalone with done and BulkFinalOff.
func queueCompleteStandalone(b *pgx.Batch, done CompleteStandaloneParams) {
	b.Queue(bulkFinalOn)
	// The arguments in the order of the generated CompleteStandalone's (their first use in the SQL).
	b.Queue(completeStandalone, done.IDs, done.InPipelines, done.Leases, done.OutputPaths, done.Outputs, done.OutputSizes, done.Assets, done.LogsPaths)
	b.Queue(bulkFinalOff)
}

// readCompleteStandalone reads the results of queueCompleteStandalone's statements.
func readCompleteStandalone(br pgx.BatchResults) ([]CompleteStandaloneRow, error) {
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	completed, err := queryRows[CompleteStandaloneRow](br)
	if err != nil {
		return nil, err
	}
	_, err = br.Exec()
	return completed, err
}

// FreeClaim is what the statements of ClaimIfFree found, once their batch's results are
// closed: whether the claim lock was free (Locked), the claimed rows (Claim's or
// ClaimFlowControl's, by the flow argument), or the error reading them.
type FreeClaim struct {
	Locked   bool
	Rows     []ClaimRow
	FlowRows []ClaimFlowControlRow
	Err      error
}

// ClaimIfFree returns TryLockClaimsGenericPlan (lock) and Claim (ClaimFlowControl with flow)
// as statements to queue at the end of a batch: a claim that takes the claim lock only if it is
// free, and claims nothing otherwise. Their results are read into got when the batch's results
// are closed; the callbacks never fail the batch (its COMMIT may have run): an error to read
// them is got.Err.
func (q *Queries) ClaimIfFree(lock int64, flow bool, arg ClaimParams, got *FreeClaim) []*pgx.QueuedQuery {
	try := &pgx.QueuedQuery{SQL: tryLockClaimsGenericPlan, Arguments: []any{lock}}
	try.QueryRow(func(row pgx.Row) error {
		var ignored [3]string
		if err := row.Scan(&got.Locked, &ignored[0], &ignored[1], &ignored[2]); err != nil {
			got.Err = fmt.Errorf("try the claim lock: %w", err)
		}
		return nil
	})
	sql := claim
	if flow {
		sql = claimFlowControl
	}
	c := &pgx.QueuedQuery{SQL: sql, Arguments: []any{arg.MaxConcurrency, arg.Max, arg.Now, arg.LeaseMs}}
	c.Query(func(rows pgx.Rows) error {
		var err error
		if flow {
			got.FlowRows, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ClaimFlowControlRow])
		} else {
			got.Rows, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ClaimRow])
		}
		if err != nil && got.Err == nil {
			got.Err = fmt.Errorf("claim: %w", err)
		}
		return nil
	})
	return []*pgx.QueuedQuery{try, c}
}

// NotifyReadyUnlessClaimedQueued is NotifyReadyUnlessClaimed as a statement to queue after
// those of ClaimIfFree.
func (q *Queries) NotifyReadyUnlessClaimedQueued() *pgx.QueuedQuery {
	return &pgx.QueuedQuery{SQL: notifyReadyUnlessClaimed}
}
