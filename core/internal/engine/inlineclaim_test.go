package engine

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// taskIDs are the task ids of claimed runs, in order.
func taskIDs(cs []Claimed) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.TaskID
	}
	return out
}

// diamondHarness is a harness with the pipeline diamond (a → b, c → d) registered and a
// dispatcher set, as while the standalone loop runs, whose hand-overs it returns.
func diamondHarness(t *testing.T) (*harness, *refills) {
	h := newHarness(t, Config{})
	h.register(t, diamondTasks(), protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	r := &refills{}
	h.eng.SetRefill(r.dispatch)
	return h, r
}

// TestInlineClaimsCarryAPipeline: with a dispatcher set (the standalone loop runs), the
// trigger's transaction claims the entry task and each callback's transaction claims the
// successors it made pending: the dispatcher gets every step of a diamond without any other
// claim, each run dispatching once its readying transaction committed, and the callers are
// told no claim needs to follow.
func TestInlineClaimsCarryAPipeline(t *testing.T) {
	t.Parallel()
	h, r := diamondHarness(t)
	ctx := context.Background()

	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.True(t, tr.Dispatched)
	got := r.take()
	require.Len(t, got, 1)
	require.Equal(t, []string{"a"}, taskIDs(got[0]))
	a := got[0][0]
	require.Equal(t, "dispatching", h.run(t, a.RunID).Status)

	res, err := h.eng.Callback(ctx, call(a), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Readied, "b and c are claimed already")
	require.True(t, res.Refilled)
	got = r.take()
	require.Len(t, got, 1)
	require.ElementsMatch(t, []string{"b", "c"}, taskIDs(got[0]))
	branches := got[0]
	for _, c := range branches {
		require.Equal(t, "dispatching", h.run(t, c.RunID).Status)
		require.Contains(t, c.Upstream, "a", "an inline claim carries the upstream outputs too")
	}

	res, err = h.eng.Callback(ctx, call(branches[0]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Readied)
	require.Empty(t, r.take(), "d waits for the other branch: nothing to claim")
	res, err = h.eng.Callback(ctx, call(branches[1]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Readied)
	got = r.take()
	require.Len(t, got, 1)
	require.Equal(t, []string{"d"}, taskIDs(got[0]))

	h.completeJoin(t, got[0][0], tr.PipelineRunID)
	require.Equal(t, 4, h.count(t, `SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND status = 'completed' AND lease = 1`,
		tr.PipelineRunID), "each node claimed once")
}

// holdClaimLock takes the claim lock in a transaction of its own, as a claim that holds it
// does, and returns that transaction (rolled back at the end of the test).
func holdClaimLock(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, claimLock)
	require.NoError(t, err)
	return tx
}

// TestInlineClaimNeverWaitsForTheClaimLock: a transaction that claims inline holds the locks of
// the runs it wrote, and the holder of the claim lock may wait for one of them (a group
// commit's acknowledgements ride after its claim): while the claim lock is held, a callback
// and a trigger neither wait for it nor claim; they commit, the callback's caller is told to
// have the loop claim (Readied), the trigger notifies the loops, and the holder can then
// update the completed run (it would deadlock with a callback that waited).
func TestInlineClaimNeverWaitsForTheClaimLock(t *testing.T) {
	t.Parallel()
	h, r := diamondHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	a := r.take()[0][0]

	holder := holdClaimLock(t, h.pool)
	res, err := h.eng.Callback(ctx, call(a), success())
	require.NoError(t, err, "the callback did not wait for the claim lock")
	require.True(t, res.Applied)
	require.True(t, res.Readied, "the loop must claim b and c")
	require.False(t, res.Refilled)
	require.Empty(t, r.take())
	require.Equal(t, 2, h.count(t, `SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND status = 'pending'`, tr.PipelineRunID))
	// The holder updates the run the callback completed: no lock of it is left.
	_, err = holder.Exec(ctx, `UPDATE task_runs SET updated_at = updated_at WHERE id = $1`, a.RunID)
	require.NoError(t, err)

	// A trigger while the lock is held notifies the loops instead.
	listener, err := h.pool.Acquire(ctx)
	require.NoError(t, err)
	defer listener.Release()
	_, err = listener.Exec(ctx, `LISTEN pipeweave_ready`)
	require.NoError(t, err)
	tr2, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.False(t, tr2.Dispatched)
	require.Empty(t, r.take())
	n, err := listener.Conn().WaitForNotification(ctx)
	require.NoError(t, err, "the trigger notified the loops")
	require.Equal(t, "pipeweave_ready", n.Channel)
	require.Equal(t, "pending", h.run(t, h.nodeRun(t, tr2.PipelineRunID, "a")).Status)
	_, err = listener.Exec(ctx, `UNLISTEN *`)
	require.NoError(t, err)

	// Once the lock is free, the loop's claim takes what was left.
	require.NoError(t, holder.Rollback(ctx))
	left, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a", "b", "c"}, taskIDs(left))
}

// callbacksBusy reports whether a group commit is being led.
func (e *Engine) callbacksBusy() bool {
	e.callbacks.mu.Lock()
	defer e.callbacks.mu.Unlock()
	return e.callbacks.busy
}

// completeJoin calls back the success of d, the diamond's join, and checks that its pipeline
// run prun completed.
func (h *harness) completeJoin(t *testing.T, d Claimed, prun string) {
	t.Helper()
	ctx := context.Background()
	res, err := h.eng.Callback(ctx, call(d), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	run, err := h.eng.GetPipelineRun(ctx, prun)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineCompleted, run.Status)
}

// nodeRun is the id of the task run of node taskID in pipeline run prun.
func (h *harness) nodeRun(t *testing.T, prun, taskID string) string {
	t.Helper()
	var id string
	require.NoError(t, h.pool.QueryRow(context.Background(),
		`SELECT id FROM task_runs WHERE pipeline_run_id = $1 AND task_id = $2`, prun, taskID).Scan(&id))
	return id
}

// TestSiblingCallbacksShareATransaction: the callback of a branch whose sibling this engine
// dispatched and has not heard back from waits for it (siblingWait, lengthened here so that
// the test does not depend on timing), and both complete and ready their join in one
// transaction, which claims the join once.
func TestSiblingCallbacksShareATransaction(t *testing.T) {
	t.Parallel()
	h, r := diamondHarness(t)
	h.eng.siblingWait = time.Minute
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	res, err := h.eng.Callback(ctx, call(r.take()[0][0]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	branches := r.take()[0]
	require.Len(t, branches, 2)

	before := h.eng.callbackTxs.Load()
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	for i := range branches {
		wg.Go(func() { answers[i].res, answers[i].err = h.eng.Callback(ctx, call(branches[i]), success()) })
		if i == 0 {
			// The first leads and waits for its sibling.
			for !h.eng.callbacksBusy() {
				time.Sleep(time.Millisecond)
			}
		}
	}
	wg.Wait()
	for _, a := range answers {
		require.NoError(t, a.err)
		require.True(t, a.res.Applied)
	}
	require.Equal(t, int64(1), h.eng.callbackTxs.Load()-before, "one transaction for both branches")
	got := r.take()
	require.Len(t, got, 1)
	require.Equal(t, []string{"d"}, taskIDs(got[0]), "the join is claimed once, by that transaction")
	h.completeJoin(t, got[0][0], tr.PipelineRunID)
}

// A lone callback without a sibling in flight leads at once: the wait is for siblings only.
func TestLoneCallbackDoesNotWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.eng.siblingWait = time.Hour
	h.register(t, diamondTasks(), protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	res, err := h.eng.Callback(ctx, call(h.claimOne(t)), success())
	require.NoError(t, err, "a's callback has no sibling and does not wait an hour")
	require.True(t, res.Applied)
}

// TestInlineClaimsRace races two engines (two instances) over diamond pipelines triggered on
// either and standalone runs: triggers and callbacks claim inline, group commits of standalone
// successes claim with acknowledgements of dispatches riding after their claims (each handed
// run is acknowledged on a random engine before its worker calls back, so that a pipeline
// callback often completes a run whose acknowledgement another transaction holding the claim
// lock is about to record), and the loops claim now and then. Every pipeline completes, every
// run is claimed once, and no committed state has more runs in flight than MAX_CONCURRENCY.
func TestInlineClaimsRace(t *testing.T) {
	t.Parallel()
	const maxConcurrency, pipelines, standalone, workers = 8, 40, 80, 12
	for round := range 3 {
		cfg := Config{MaxConcurrency: maxConcurrency, ClaimBatch: 4}
		h := newHarness(t, cfg)
		h.register(t, append(diamondTasks(), protocol.TaskDefinition{ID: "solo"}), protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
		h.enqueue(t, "solo", 0, standalone)

		// Each handed run is acknowledged on a random engine before its worker calls back.
		r := newRaceRig(t, h, cfg, round, workers, 4*(pipelines+standalone), func(r *raceRig, c Claimed) {
			r.engines[rand.IntN(2)].deferAcks([]string{c.RunID}, []int64{c.Lease})
		})
		for i := range pipelines {
			r.wg.Go(func() {
				if _, err := r.engines[i%2].Trigger(r.ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)}); err != nil && r.ctx.Err() == nil {
					r.fail("trigger: %v", err)
				}
			})
		}
		r.loops(2 * time.Millisecond)
		most := watchInFlight(r.ctx, &r.wg, h)
		total := 4*pipelines + standalone
		r.await(90*time.Second, func() bool {
			return h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'completed'`) >= total
		})
		require.Equal(t, total, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'completed' AND attempt = 1 AND lease = 1`), "round %d", round)
		require.Equal(t, pipelines, h.count(t, `SELECT count(*) FROM pipeline_runs WHERE status = 'completed'`), "round %d", round)
		require.LessOrEqual(t, most.Load(), int32(maxConcurrency), "round %d", round)
		r.requireClaimedOnce()
	}
}
