package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// maxCallbackBatch bounds the callbacks one group commit applies.
const maxCallbackBatch = 256

// Callbacks are applied by group commit, leader/follower style: a callback that arrives while
// no batch is being applied leads one at once, alone; callbacks that arrive while one is in
// flight queue up, and when it is over the first of them leads the next batch with the others
// (at most maxCallbackBatch, one callback per run). Each caller is answered only after the
// transaction that applied its callback committed; when it did not commit, with an error.
type groupCommit struct {
	mu sync.Mutex
	// queue holds the callbacks waiting for the next batch, in arrival order.
	queue []*callbackItem
	// busy: a batch is being applied; its leader hands over to queue[0] when it is done.
	busy bool
	// arrived is signalled when a callback is queued (awaitSibling).
	arrived chan struct{}
}

// siblingWait bounds how long a pipeline run's callback that would lead a batch alone waits
// for the callback of another run of the same pipeline run that this engine dispatched and
// has not heard back from: parallel branches that end together (b and c of a → b, c → d)
// then advance in one transaction instead of two in a row, each with its commit. Only a lone
// callback with such a sibling in flight waits, and at most this long.
const siblingWait = 500 * time.Microsecond

// awaitSibling waits until a callback of pipeline run p is queued, for at most d, or until ctx
// ends.
func (g *groupCommit) awaitSibling(ctx context.Context, p string, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		g.mu.Lock()
		if g.arrived == nil {
			g.arrived = make(chan struct{}, 1)
		}
		arrived := g.arrived
		found := slices.ContainsFunc(g.queue, func(it *callbackItem) bool { return it.pipelineRun == p })
		g.mu.Unlock()
		if found {
			return
		}
		select {
		case <-arrived:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// itemState is where a callback is in its group commit.
type itemState int

const (
	queued   itemState = iota // waiting in the queue
	leading                   // leads the next batch
	taken                     // in the batch being applied
	answered                  // dropped from the queue with its answer (its caller is gone)
)

// callbackItem is one caller's callback in a group commit, then its answer.
type callbackItem struct {
	ctx  context.Context
	call WorkerCall
	cb   *protocol.CallbackRequest
	// pipelineRun is the run's pipeline run ('' = none) once known (lookedUp).
	pipelineRun string
	lookedUp    bool

	res CallbackResult
	err error
	// state is guarded by groupCommit.mu.
	state itemState
	// wake receives true when the item leads the next batch, false once it is answered.
	wake chan bool
}

// queued returns how many callbacks wait for the next batch (tests wait on it).
func (g *groupCommit) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// pipelineHints remembers the pipeline run of each run an engine claimed for a pipeline, until
// its callback: such a callback goes straight to the transaction that locks its pipeline run,
// without first trying the one statement that completes runs outside pipelines (a round trip
// that finds it is a pipeline's). A callback that reaches another instance, or whose hint was
// dropped, takes that round trip: the hint saves time, never decides an outcome (a run's
// pipeline run never changes).
type pipelineHints struct {
	mu sync.Mutex
	m  map[string]string
	// open counts the hints of each pipeline run.
	open map[string]int
}

// maxPipelineHints bounds the hints; when full they are dropped (runs whose callbacks never
// came, timed out or went to other instances), which costs only the round trip.
const maxPipelineHints = 1 << 16

// add remembers the pipeline runs of claimed runs.
func (h *pipelineHints) add(claimed []Claimed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range claimed {
		if c.PipelineRunID == "" {
			continue
		}
		if h.m == nil || len(h.m) >= maxPipelineHints {
			h.m, h.open = make(map[string]string), make(map[string]int)
		}
		if _, dup := h.m[c.RunID]; !dup {
			h.open[c.PipelineRunID]++
		}
		h.m[c.RunID] = c.PipelineRunID
	}
}

// inFlight reports whether a run of pipeline run p that this engine claimed has not called
// back yet.
func (h *pipelineHints) inFlight(p string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open[p] > 0
}

// take returns and forgets the pipeline run of runID, if known.
func (h *pipelineHints) take(runID string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.m[runID]
	if ok {
		delete(h.m, runID)
		if h.open[p]--; h.open[p] <= 0 {
			delete(h.open, p)
		}
	}
	return p, ok
}

// groupCallback applies a validated callback in a group commit and returns its answer once
// the callback committed, or failed.
func (e *Engine) groupCallback(ctx context.Context, call WorkerCall, cb *protocol.CallbackRequest) (CallbackResult, error) {
	it := &callbackItem{ctx: ctx, call: call, cb: cb, wake: make(chan bool, 1)}
	it.pipelineRun, it.lookedUp = e.pipelineOf.take(call.RunID)
	g := &e.callbacks
	var lead bool
	if call.gate != nil {
		lead = call.gate.arrive(g, call.gateIndex, it)
	} else {
		lead = g.submit(it)
	}
	if !lead {
		select {
		case lead = <-it.wake:
		case <-ctx.Done():
			g.mu.Lock()
			if it.state == queued {
				g.queue = slices.DeleteFunc(g.queue, func(x *callbackItem) bool { return x == it })
				g.mu.Unlock()
				return CallbackResult{}, fmt.Errorf("callback of %s: %w", call.RunID, ctx.Err())
			}
			g.mu.Unlock()
			lead = <-it.wake
		}
		if !lead {
			return it.res, it.err
		}
	} else if it.pipelineRun != "" && e.pipelineOf.inFlight(it.pipelineRun) {
		// A lone pipeline callback whose sibling is on its way waits for it (siblingWait).
		g.awaitSibling(ctx, it.pipelineRun, e.siblingWait)
	}
	e.leadBatch(it)
	return it.res, it.err
}

// submit queues items for the next batch, in order, and reports whether items[0] leads it
// (no batch was being applied: it is to be applied at once, with the others).
func (g *groupCommit) submit(items ...*callbackItem) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	lead := !g.busy
	if lead {
		g.busy, items[0].state = true, leading
		items = items[1:]
	}
	g.queue = append(g.queue, items...)
	if len(items) > 0 && g.arrived != nil {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
	}
	return lead
}

// callbackGate holds the callbacks of one batch request (POST /api/callbacks) until each has
// been checked, then queues those that passed together, so that they are applied in one
// transaction rather than the first alone and the others after it.
type callbackGate struct {
	mu      sync.Mutex
	items   []*callbackItem // by index in the request; nil: refused, or not there yet
	arrived []bool
	left    int
	leader  *callbackItem
	open    chan struct{}
}

// newCallbackGate makes the gate of a request of n callbacks.
func newCallbackGate(n int) *callbackGate {
	return &callbackGate{items: make([]*callbackItem, n), arrived: make([]bool, n), left: n, open: make(chan struct{})}
}

// arrive registers callback i (it nil: refused before its group commit) and waits until every
// callback of the request has arrived; it reports whether it leads the batch. A second arrival
// of i does nothing.
func (gt *callbackGate) arrive(g *groupCommit, i int, it *callbackItem) bool {
	gt.mu.Lock()
	if gt.arrived[i] {
		gt.mu.Unlock()
		return false
	}
	gt.arrived[i], gt.items[i] = true, it
	gt.left--
	last := gt.left == 0
	gt.mu.Unlock()
	if last {
		var items []*callbackItem
		for _, x := range gt.items {
			if x != nil {
				items = append(items, x)
			}
		}
		if len(items) > 0 && g.submit(items...) {
			gt.leader = items[0]
		}
		close(gt.open)
	} else if it != nil {
		<-gt.open
	}
	return it != nil && it == gt.leader
}

// leadBatch applies the batch that leader leads, answers its callers and hands over to the
// first callback still queued, if any.
func (e *Engine) leadBatch(leader *callbackItem) {
	g := &e.callbacks
	batch := g.take(leader)
	if len(batch) > 0 {
		// The batch is everyone's: the leader's caller going away must not fail it.
		e.applyCallbacks(context.WithoutCancel(leader.ctx), batch, true)
	}
	for _, it := range batch {
		if it != leader {
			it.wake <- false
		}
	}
	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		g.queue = slices.Delete(g.queue, 0, 1)
		next.state = leading
		next.wake <- true
	} else {
		g.busy = false
	}
	g.mu.Unlock()
}

// take makes the next batch: leader, then the queued callbacks in arrival order, at most
// maxCallbackBatch and one per run (a second callback of a run waits for the next batch).
// Callbacks whose callers are gone are answered with their context's error and dropped.
func (g *groupCommit) take(leader *callbackItem) []*callbackItem {
	g.mu.Lock()
	defer g.mu.Unlock()
	var batch []*callbackItem
	runs := map[string]bool{}
	if err := leader.ctx.Err(); err != nil {
		leader.err = fmt.Errorf("callback of %s: %w", leader.call.RunID, err)
	} else {
		batch, runs[leader.call.RunID] = append(batch, leader), true
	}
	rest := g.queue[:0]
	for _, it := range g.queue {
		switch {
		case it.ctx.Err() != nil:
			it.err, it.state = fmt.Errorf("callback of %s: %w", it.call.RunID, it.ctx.Err()), answered
			it.wake <- false
		case len(batch) < maxCallbackBatch && !runs[it.call.RunID]:
			it.state = taken
			batch, runs[it.call.RunID] = append(batch, it), true
		default:
			rest = append(rest, it)
		}
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return batch
}

// plain reports whether a callback is the common case the batch completes with one statement:
// a success with no idempotency key, no selectedNext and no spawn whose output, if any, is its run's own
// (sent inline or stored, never a copy of another run's).
func (it *callbackItem) plain() bool {
	cb := it.cb
	return cb.Status == protocol.CallbackSuccess && cb.IdempotencyKey == "" && len(cb.SelectedNext) == 0 && len(cb.Spawn) == 0 &&
		(cb.OutputPath == "" || strings.HasPrefix(cb.OutputPath, "runs/"+it.call.RunID+"/"))
}

// applyCallbacks applies a batch and sets each item's answer. The plain successes of runs not
// known to be a pipeline's complete in one statement that also finds the pipeline runs of
// those it did not complete (and, with refill and a dispatcher set, claims the places they
// freed in the same transaction: SetRefill); the rest apply in one transaction that locks
// their pipeline runs first. When a statement fails for another reason than the database
// being out of reach, the batch is applied again one callback at a time and without the claim,
// so that one callback's failure is its own answer alone.
func (e *Engine) applyCallbacks(ctx context.Context, items []*callbackItem, refill bool) {
	var plain, rest []*callbackItem
	for _, it := range items {
		if it.plain() && !it.lookedUp {
			plain = append(plain, it)
		} else {
			rest = append(rest, it)
		}
	}
	if len(plain) > 0 {
		dispatch := e.dispatcher(refill)
		left, err := e.completeStandalone(ctx, plain, dispatch)
		if err != nil && dispatch != nil && !errors.Is(err, database.ErrUnavailable) {
			// The claim may be what failed (it rolled the completions back with it): complete
			// without it, and leave the claim to the loop.
			e.log.Warn("a group commit's claim failed; completing without it", "err", err)
			left, err = e.completeStandalone(ctx, plain, nil)
		}
		if err != nil {
			e.failBatch(ctx, plain, err)
		}
		rest = append(rest, left...)
	}
	if len(rest) > 0 {
		if err := e.callbacksInTx(ctx, rest, e.dispatcher(refill)); err != nil {
			e.failBatch(ctx, rest, err)
		}
	}
}

// failBatch answers the items of a batch whose statement failed with err: with err when the
// database is out of reach (whether the batch committed is unknown; a worker's callback sent
// again finds out) or the batch was one callback, else by applying each callback again on its
// own.
func (e *Engine) failBatch(ctx context.Context, items []*callbackItem, err error) {
	if len(items) == 1 || errors.Is(err, database.ErrUnavailable) {
		for _, it := range items {
			it.res, it.err = CallbackResult{}, err
		}
		return
	}
	for _, it := range items {
		e.applyCallbacks(ctx, []*callbackItem{it}, false)
	}
}

// dispatcher is SetRefill's dispatcher when a transaction may claim for it (refill, and no
// test hook before the commit), else nil.
func (e *Engine) dispatcher(refill bool) func([]Claimed) {
	if d := e.refill.Load(); d != nil && refill && e.beforeCommit == nil {
		return *d
	}
	return nil
}

// SetRefill sets the dispatcher of the runs that group commits claim (nil: none). While one is
// set, a group commit of plain successes claims up to ClaimBatch runs in the transaction that
// completes them, after taking the claim lock: the places the completions freed are taken
// before any other claim can see them free, so that several instances' loops do not queue on
// the claim lock to find nothing, and a callback's completion and the claim it makes possible
// are one transaction instead of two. The callers are answered after the commit; dispatch gets
// the claimed runs at once (it must not block). Standalone mode's loop sets it while it runs;
// while it is set, the workers' acknowledgements of dispatches ride on those transactions
// (acks.go).
func (e *Engine) SetRefill(dispatch func([]Claimed)) {
	if dispatch == nil {
		e.refill.Store(nil)
		return
	}
	e.refill.Store(&dispatch)
}

// completeStandalone completes the plain successes of runs outside pipelines with one
// statement (it commits as it runs) and answers them; it returns the others, their pipeline
// runs now known. With dispatch (SetRefill's) the statement goes with a claim, whose runs
// dispatch gets once committed.
func (e *Engine) completeStandalone(ctx context.Context, items []*callbackItem, dispatch func([]Claimed)) ([]*callbackItem, error) {
	p, err := completeManyParams(items)
	if err != nil {
		return nil, err
	}
	var rows []dbsqlc.CompleteStandaloneRow
	var claimed []Claimed
	var full bool
	if dispatch != nil {
		var err error
		if rows, claimed, full, err = e.completeAndClaim(ctx, p); err != nil {
			return nil, fmt.Errorf("complete %d runs and claim: %w", len(items), err)
		}
	} else {
		err := e.db.WithConn(ctx, func(x dbtx) error {
			if e.beforeCommit != nil {
				e.beforeCommit(ctx, x)
			}
			e.callbackTxs.Add(1)
			var err error
			rows, err = queries.CompleteStandaloneCounted(ctx, x, p)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("complete %d runs: %w", len(items), err)
		}
	}
	if len(claimed) > 0 {
		dispatch(claimed)
	}
	byID := make(map[string]*callbackItem, len(items))
	for _, it := range items {
		byID[it.call.RunID] = it
	}
	for _, r := range rows {
		it := byID[r.ID]
		if r.Completed {
			// A claim that came back full may have left ready runs for the loop.
			it.res = CallbackResult{Applied: true, Status: protocol.StatusCompleted, Refilled: dispatch != nil && !full,
				taskID: r.TaskID, seconds: r.Seconds}
			delete(byID, r.ID)
		} else {
			it.pipelineRun, it.lookedUp = r.PipelineRunID, true
		}
	}
	var left []*callbackItem
	for _, it := range items {
		if byID[it.call.RunID] != nil {
			// Not completed: a pipeline run's task (its callback advances the pipeline run), a
			// duplicate, a stale lease or an unknown run (the transaction tells which).
			it.lookedUp = true
			left = append(left, it)
		}
	}
	return left, nil
}

// completeManyParams are the arguments of CompleteStandalone for the plain successes items
// (of runs outside pipelines; the caller sets InPipelines for runs of locked pipeline runs).
func completeManyParams(items []*callbackItem) (dbsqlc.CompleteStandaloneParams, error) {
	var p dbsqlc.CompleteStandaloneParams
	for _, it := range items {
		cb := it.cb
		assets, err := assetsJSON(cb)
		if err != nil {
			return p, err
		}
		p.IDs, p.Leases = append(p.IDs, it.call.RunID), append(p.Leases, it.call.lease())
		p.OutputPaths, p.Outputs = append(p.OutputPaths, cb.OutputPath), append(p.Outputs, []byte(cb.Output))
		p.OutputSizes = append(p.OutputSizes, cb.OutputSize)
		p.Assets, p.LogsPaths = append(p.Assets, string(assets)), append(p.LogsPaths, cb.LogsPath)
	}
	return p, nil
}

// completeInPipelines completes, in one statement, the plain successes among items (after
// the first, which the lock's statement completed) whose pipeline runs tx has locked
// (CompleteStandalone with InPipelines), and
// returns each one's completion by run id: the row, or database.ErrNotFound when it did not
// complete (callbackIn tells why, as after Complete). Items of a batch that are a map's items
// (the common case of a large batch) thus cost the batch one statement, not one each.
func completeInPipelines(ctx context.Context, tx dbtx, items []*callbackItem) (map[string]*completion, error) {
	var many []*callbackItem
	for _, it := range items[1:] {
		if it.pipelineRun != "" && it.plain() {
			many = append(many, it)
		}
	}
	if len(many) < 2 {
		return nil, nil
	}
	p, err := completeManyParams(many)
	if err != nil {
		return nil, err
	}
	p.InPipelines = true
	rows, err := queries.CompleteStandaloneCounted(ctx, tx, p)
	if err != nil {
		return nil, fmt.Errorf("complete %d runs of pipelines: %w", len(many), err)
	}
	out := make(map[string]*completion, len(many))
	for _, it := range many {
		out[it.call.RunID] = &completion{err: database.ErrNotFound}
	}
	for _, r := range rows {
		if r.Completed {
			out[r.ID] = &completion{row: dbsqlc.CompleteRow{TaskID: r.TaskID, Seconds: r.Seconds}}
		}
	}
	return out, nil
}

// completeAndClaim runs CompleteStandalone with p, the acknowledgements that wait (acks.go) and a
// claim of up to ClaimBatch runs under the claim lock, in one round trip and one transaction.
// full reports whether the claim may have left ready runs behind (it took all it asked for, or
// found a rate limit spent, whose refill the loop waits for).
func (e *Engine) completeAndClaim(ctx context.Context, p dbsqlc.CompleteStandaloneParams) (rows []dbsqlc.CompleteStandaloneRow, out []Claimed, full bool, err error) {
	flow, err := e.flowControlInUse(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	start := time.Now()
	limit := e.cfg.ClaimBatch
	params := e.claimParams(limit)
	e.callbackTxs.Add(1)
	var claimRows []dbsqlc.ClaimRow
	var refill int64
	// The acknowledgements of earlier dispatches ride along (acks.go).
	acks := e.takeAcks()
	if flow {
		var fc []dbsqlc.ClaimFlowControlRow
		rows, fc, err = queries.CompleteStandaloneAndClaimFlowControl(ctx, e.db, p, acks, claimLock, dbsqlc.ClaimFlowControlParams(params))
		claimRows, refill = flowControlRows(fc)
	} else {
		rows, claimRows, err = queries.CompleteStandaloneAndClaim(ctx, e.db, p, acks, claimLock, params)
	}
	if err != nil {
		e.returnAcks(acks)
		e.claimSpan(ctx, start, limit, nil, err)
		return nil, nil, false, err
	}
	e.acked(acks)
	out, full = e.committedClaim(ctx, start, limit, claimRows, refill)
	return rows, out, full, nil
}

// committedClaim records a claim that committed with other work (a group commit's, an inline
// claim) and returns its runs, and whether it may have left ready runs behind (it took all it
// asked for, limit, or found a rate limit spent, whose refill the loop waits for). The work is
// committed: a claimed run that cannot be read is left to the sweep (its dispatch lease runs
// out) rather than fail it.
func (e *Engine) committedClaim(ctx context.Context, start time.Time, limit int, rows []dbsqlc.ClaimRow, refill int64) ([]Claimed, bool) {
	out, err := claimedOf(rows)
	if err != nil {
		e.log.Error("a transaction claimed runs it cannot dispatch; the sweep will recover them", "err", err)
		out = nil
	}
	e.claimSpan(ctx, start, limit, out, nil)
	e.claimed(out, refill)
	return out, len(out) == limit || refill != 0
}

// callbacksInTx applies callbacks one by one in one transaction that first locks their
// pipeline runs (in id order, like every writer), and answers them once it committed. An
// answer that is an engine error (a stale lease, an unknown run) is the callback's own; any
// other error rolls the transaction back and is returned. With dispatch (SetRefill's), the
// transaction also claims, if the claim lock is free, when its commit travels with the
// advance's last statements anyway or when it made a successor pending: the pipeline's next
// step is claimed in the transaction that readied it, and dispatch gets it once committed
// (inlineClaim).
func (e *Engine) callbacksInTx(ctx context.Context, items []*callbackItem, dispatch func([]Claimed)) error {
	// Task runs are locked in id order too, so that two batches never wait on each other.
	items = slices.SortedFunc(slices.Values(items), func(a, b *callbackItem) int { return strings.Compare(a.call.RunID, b.call.RunID) })
	results := make([]CallbackResult, len(items))
	errs := make([]error, len(items))
	e.callbackTxs.Add(1)
	var runs map[string]*lockedRun
	// ids are the items' pipeline runs ('' = none).
	ids := make([]string, len(items))
	// A batch of one callback, without a test's hook before the commit, may commit with its
	// advance's last statements.
	last := len(items) == 1 && e.beforeCommit == nil
	var claim *inlineClaim
	err := e.db.InTx(ctx, func(tx dbtx) error {
		if claim = e.newInlineClaim(ctx, dispatch); claim != nil {
			database.SetCommitTail(tx, claim.tail...)
		}
		var unknown []string
		for _, it := range items {
			if !it.lookedUp {
				unknown = append(unknown, it.call.RunID)
			}
		}
		if len(unknown) > 0 {
			rows, err := queries.PipelineRunsOfTaskRuns(ctx, tx, unknown)
			if err != nil {
				return fmt.Errorf("read the pipeline runs of %d runs: %w", len(unknown), err)
			}
			found := make(map[string]string, len(rows))
			for _, r := range rows {
				found[r.ID] = r.PipelineRunID
			}
			for _, it := range items {
				if !it.lookedUp {
					it.pipelineRun, it.lookedUp = found[it.call.RunID], true
				}
			}
		}
		for i, it := range items {
			ids[i] = it.pipelineRun
		}
		// The first callback's Complete, when it is a success whose next steps are not chosen
		// (selectedNext, checked before) and that spawns nothing (a map item's spawn is checked
		// before its Complete), goes with the lock of the pipeline runs: one round trip for both.
		var first *completion
		want := pipelineRunsToLock(ids)
		if cb := items[0].cb; len(want) > 0 && cb.Status == protocol.CallbackSuccess && len(cb.SelectedNext) == 0 && len(cb.Spawn) == 0 {
			if p, err := completeParams(items[0].call, cb); err == nil {
				rows, done, err := queries.LockPipelineRunsAndComplete(ctx, tx, want, p)
				if err != nil && !errors.Is(err, database.ErrNotFound) {
					return fmt.Errorf("lock pipeline runs and complete %s: %w", items[0].call.RunID, err)
				}
				first = &completion{row: done, err: err}
				if runs, err = lockedRuns(rows); err != nil {
					return err
				}
			}
		}
		if first == nil {
			var err error
			if runs, err = e.lockRuns(ctx, tx, want); err != nil {
				return err
			}
		}
		many, err := completeInPipelines(ctx, tx, items)
		if err != nil {
			return err
		}
		// The completions of a batch of several callbacks advance their pipeline runs together,
		// once per run, after every callback of the batch (lockedRun.items): map items count
		// their map rows down together, and branches that ended together readied their join.
		for _, run := range runs {
			run.deferItems = len(items) > 1
		}
		for i, it := range items {
			done := many[it.call.RunID]
			if i == 0 {
				done = first
			}
			results[i], errs[i] = e.callbackIn(ctx, tx, it.call, it.cb, runs[ids[i]], done, last)
			var answer *Error
			if errs[i] != nil && !errors.As(errs[i], &answer) {
				return errs[i]
			}
		}
		for _, id := range slices.Sorted(maps.Keys(runs)) {
			if run := runs[id]; len(run.items) > 0 {
				if err := e.advance(ctx, tx, run, run.items, false); err != nil {
					return err
				}
				run.items = nil
			}
		}
		if claim != nil && !database.CommitTailSent(tx) {
			if !readiedAny(runs) {
				// Nothing new to claim: the commit goes alone, as without a dispatcher.
				database.SetCommitTail(tx)
				claim = nil
			} else if err := claim.send(ctx, tx); err != nil {
				return err
			}
		}
		if e.beforeCommit != nil {
			e.beforeCommit(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.analyzeIfGrown()
	e.cfg.Signals.signalEnded(runs)
	// locked: the transaction claimed (the lock was free); full: its claim may have left ready
	// runs behind, for the loop.
	locked, full := e.inlineClaimed(ctx, claim)
	for i, it := range items {
		it.res, it.err = results[i], errs[i]
		if run := runs[ids[i]]; run != nil && it.err == nil && it.res.Applied {
			// A successor the transaction's claim took needs no claim after it.
			it.res.Readied = run.readied && (!locked || full)
			it.res.Refilled = locked && !full
		}
	}
	return nil
}

// readiedAny reports whether the transaction made a node of one of runs pending.
func readiedAny(runs map[string]*lockedRun) bool {
	for _, run := range runs {
		if run.readied {
			return true
		}
	}
	return false
}

// inlineClaim is a claim that a callback transaction makes before it commits, with its COMMIT
// (database.SetCommitTail): TryLockClaimsGenericPlan and a claim of up to ClaimBatch runs. It
// never waits for the claim lock: the transaction holds pipeline-run and task-run locks that a
// group commit holding the claim lock may wait for (its acknowledgements ride after its
// claim), and the two would deadlock. When the lock is taken it claims nothing, and the
// callback's caller has the loop claim after it, as without it.
type inlineClaim struct {
	tail     []*pgx.QueuedQuery
	got      dbsqlc.FreeClaim
	flow     bool
	start    time.Time
	dispatch func([]Claimed)
}

// newInlineClaim prepares an inline claim whose runs go to dispatch (nil without a dispatcher,
// or when whether flow control is in use cannot be read: the loop claims then).
func (e *Engine) newInlineClaim(ctx context.Context, dispatch func([]Claimed)) *inlineClaim {
	if dispatch == nil {
		return nil
	}
	flow, err := e.flowControlInUse(ctx)
	if err != nil {
		return nil
	}
	c := &inlineClaim{flow: flow, start: time.Now(), dispatch: dispatch}
	params := e.claimParams(e.cfg.ClaimBatch)
	// The database's clock, always: the runs the transaction readies are available from its
	// now(), which a test's clock (Config.Now), read before the transaction began, precedes.
	params.Now = nil
	c.tail = queries.ClaimIfFree(claimLock, flow, params, &c.got)
	return c
}

// send sends the claim with COMMIT, in a batch of their own: the transaction's last round trip.
func (c *inlineClaim) send(ctx context.Context, tx dbtx) error {
	commit, ok := database.CommitWithBatch(tx)
	if !ok {
		return errors.New("an inline claim outside a transaction of InTx")
	}
	if err := commit.SendBatch(ctx, &pgx.Batch{}).Close(); err != nil {
		return fmt.Errorf("claim and commit: %w", err)
	}
	return nil
}

// inlineClaimed records the inline claim c (nil: none) once its transaction committed and hands
// its runs to its dispatcher; it returns whether the claim had the lock, and whether it may
// have left ready runs behind (committedClaim).
func (e *Engine) inlineClaimed(ctx context.Context, c *inlineClaim) (locked, full bool) {
	switch {
	case c == nil:
		return false, false
	case c.got.Err != nil:
		e.log.Error("a transaction's inline claim cannot be read; the sweep will recover what it claimed", "err", c.got.Err)
		return true, true
	case !c.got.Locked:
		return false, false
	}
	rows, refill := c.got.Rows, int64(0)
	if c.flow {
		rows, refill = flowControlRows(c.got.FlowRows)
	}
	out, full := e.committedClaim(ctx, c.start, e.cfg.ClaimBatch, rows, refill)
	if len(out) > 0 {
		c.dispatch(out)
	}
	return true, full
}
