package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// While the standalone loop runs (SetRefill), the workers' acknowledgements of dispatches (202:
// the run is running) are not recorded by a transaction of their own per dispatch batch: they
// wait, at most ackDelay, for the next group commit that claims, whose transaction records them
// with its completions and its claim (MarkRunning in the same batch), else a flush of their own. A 202 only
// moves a run from dispatching to running and sets its heartbeat deadline, which nothing
// authorises: a callback or heartbeat that arrives first is accepted from dispatching as from
// running, and losing an ack (a crash) costs what losing its asynchronous commit always did (the
// sweep takes the run back when its dispatch lease ends). With four replicas this saved one
// transaction in three (README, Performance).
const ackDelay = 50 * time.Millisecond

// maxPendingAcks bounds the acknowledgements that wait: beyond it they are recorded at once.
const maxPendingAcks = 4096

// pendingAcks are the acknowledgements waiting to be recorded.
type pendingAcks struct {
	mu     sync.Mutex
	ids    []string
	leases []int64
	// armed: a flush is scheduled.
	armed bool
	// wait is how long they wait for a group commit (0: ackDelay; tests set it).
	wait time.Duration
}

// deferAcks queues the acknowledgements of runs ids (under leases) for the next group commit or
// a flush within ackDelay. It reports false when they must be recorded at once instead (no
// standalone loop, or too many wait).
func (e *Engine) deferAcks(ids []string, leases []int64) bool {
	if e.refill.Load() == nil {
		return false
	}
	a := &e.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ids)+len(ids) > maxPendingAcks {
		return false
	}
	a.ids, a.leases = append(a.ids, ids...), append(a.leases, leases...)
	e.armAcksLocked()
	return true
}

// takeAcks removes and returns the acknowledgements that wait.
func (e *Engine) takeAcks() dbsqlc.MarkRunningParams {
	a := &e.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	p := dbsqlc.MarkRunningParams{IDs: a.ids, Leases: a.leases}
	a.ids, a.leases, a.armed = nil, nil, false
	return p
}

// returnAcks puts back acknowledgements whose transaction did not commit, to be recorded by the
// next group commit or flush. They go before those queued since, and only as many as keep
// the queue within maxPendingAcks: while the transaction was under way new ones may have filled
// it, and a database that keeps failing would otherwise let it grow by that much each time.
// The rest are dropped, as a flush that fails drops them: the sweep recovers their runs.
func (e *Engine) returnAcks(p dbsqlc.MarkRunningParams) {
	if len(p.IDs) == 0 {
		return
	}
	a := &e.acks
	a.mu.Lock()
	keep := min(len(p.IDs), max(0, maxPendingAcks-len(a.ids)))
	a.ids = append(p.IDs[:keep:keep], a.ids...)
	a.leases = append(p.Leases[:keep:keep], a.leases...)
	e.armAcksLocked()
	a.mu.Unlock()
	if dropped := len(p.IDs) - keep; dropped > 0 {
		e.log.Warn("dispatch acknowledgements dropped: too many wait; the sweep will recover the runs", "dropped", dropped)
	}
}

// armAcksLocked schedules a flush ackDelay from now unless one is; e.acks.mu is held.
func (e *Engine) armAcksLocked() {
	a := &e.acks
	if a.armed {
		return
	}
	a.armed = true
	wait := a.wait
	if wait == 0 {
		wait = ackDelay
	}
	time.AfterFunc(wait, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.FlushAcks(ctx); err != nil {
			e.log.Warn("recording dispatch acknowledgements failed; the sweep will recover the runs", "err", err)
		}
	})
}

// FlushAcks records the acknowledgements that wait, in a transaction of their own. Close calls
// it; so does the flush ackDelay after the first of them.
func (e *Engine) FlushAcks(ctx context.Context) error {
	p := e.takeAcks()
	if len(p.IDs) == 0 {
		return nil
	}
	if err := e.recordAcks(ctx, p); err != nil {
		return fmt.Errorf("record %d dispatch acknowledgements: %w", len(p.IDs), err)
	}
	return nil
}

// recordAcks runs MarkRunning for p with an asynchronous commit and signals the runs' status.
func (e *Engine) recordAcks(ctx context.Context, p dbsqlc.MarkRunningParams) error {
	err := e.db.Pipelined(ctx, func(tx dbtx) error {
		if err := queries.AsyncCommit(ctx, tx); err != nil {
			return err
		}
		return queries.MarkRunning(ctx, tx, p)
	})
	if err != nil {
		return err
	}
	e.acked(p)
	return nil
}

// acked signals that the runs of recorded acknowledgements are running.
func (e *Engine) acked(p dbsqlc.MarkRunningParams) {
	for _, id := range p.IDs {
		e.cfg.Signals.RunStatus.Send(RunStatus{ID: id, Status: protocol.StatusRunning})
	}
}
