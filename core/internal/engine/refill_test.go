package engine

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// refills collects what a group commit's claims hand to the dispatcher SetRefill sets.
type refills struct {
	mu  sync.Mutex
	got [][]Claimed
}

func (r *refills) dispatch(c []Claimed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, c)
}

func (r *refills) take() [][]Claimed {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestRefillClaimsTheFreedPlaces: with a dispatcher set, the commit that completes callbacks
// claims the places they freed under MAX_CONCURRENCY and hands those runs over; the callers
// are told (Refilled) that nobody need claim for them.
func TestRefillClaimsTheFreedPlaces(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{MaxConcurrency: 3})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.enqueue(t, "t", 0, 7)
	var r refills
	h.eng.SetRefill(r.dispatch)
	ctx := context.Background()
	first, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, first, 3, "MAX_CONCURRENCY")

	res, err := h.eng.Callback(ctx, call(first[0]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.True(t, res.Refilled)
	got := r.take()
	require.Len(t, got, 1)
	require.Len(t, got[0], 1, "one place freed, one run claimed")
	next := got[0][0]
	require.Equal(t, "dispatching", h.run(t, next.RunID).Status)
	require.Equal(t, protocol.StatusCompleted, protocol.TaskRunStatus(h.run(t, first[0].RunID).Status))
	require.Equal(t, 3, h.count(t, `SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running')`))
	// The claimed run is an ordinary claim: its callback under its lease applies.
	res, err = h.eng.Callback(ctx, call(next), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.Len(t, r.take(), 1)

	// A failure goes through the transaction that may retry the run: no claim, the loop's
	// wake-up is needed.
	res, err = h.eng.Callback(ctx, call(first[1]), &protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom"})
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Refilled)
	require.Empty(t, r.take())

	// A duplicate changes nothing; its commit's claim takes the place the failure freed, as
	// any claim would.
	res, err = h.eng.Callback(ctx, call(first[0]), success())
	require.NoError(t, err)
	require.False(t, res.Applied)
	require.False(t, res.Refilled)
	got = r.take()
	require.Len(t, got, 1)
	require.Len(t, got[0], 1)
	require.Equal(t, 3, h.count(t, `SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running')`))

	// Without a dispatcher the completion claims nothing.
	h.eng.SetRefill(nil)
	res, err = h.eng.Callback(ctx, call(first[2]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Refilled)
	require.Empty(t, r.take())
	require.Equal(t, 2, h.count(t, `SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running')`))
}

// TestRefillFullClaimWakesTheLoop: a claim that took all it may (ClaimBatch) may have left ready
// runs behind, so the callback is not Refilled and its handler wakes the loop; in maintenance
// the claim takes nothing.
func TestRefillFullClaimWakesTheLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{ClaimBatch: 2})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.enqueue(t, "t", 0, 6)
	var r refills
	h.eng.SetRefill(r.dispatch)
	ctx := context.Background()
	c := h.claimOne(t)
	res, err := h.eng.Callback(ctx, call(c), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Refilled, "the claim came back full")
	got := r.take()
	require.Len(t, got, 1)
	require.Len(t, got[0], 2)

	_, err = h.eng.EnterMaintenance(ctx)
	require.NoError(t, err)
	res, err = h.eng.Callback(ctx, call(got[0][0]), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.True(t, res.Refilled)
	require.Empty(t, r.take(), "maintenance: nothing is claimed")
	require.Equal(t, 3, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'pending'`))
}

// TestRefillClaimFailureCompletesAlone: when the claim fails, the completions it would have
// committed with are applied on their own and the callers get their answers; the runs the
// claim could not take stay pending.
func TestRefillClaimFailureCompletesAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}, {ID: "cursed"}})
	h.enqueue(t, "t", 0, 1)
	c := h.claimOne(t)
	// From now on every claim of the cursed task's runs fails.
	h.exec(t, `CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'no claim of %', NEW.id; END $$`)
	h.exec(t, `CREATE TRIGGER refuse_claim BEFORE UPDATE OF status ON task_runs FOR EACH ROW
		WHEN (NEW.task_id = 'cursed' AND NEW.status = 'dispatching') EXECUTE FUNCTION refuse_claim()`)
	cursed := h.enqueue(t, "cursed", 0, 1)
	var r refills
	h.eng.SetRefill(r.dispatch)
	res, err := h.eng.Callback(context.Background(), call(c), success())
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.False(t, res.Refilled)
	require.Empty(t, r.take())
	require.Equal(t, "completed", h.run(t, c.RunID).Status)
	require.Equal(t, "pending", h.run(t, cursed[0]).Status)
}

// raceRig is a race of two engines (two instances) on one database, until ctx ends: each
// engine's dispatcher (SetRefill) hands the runs it claims to workers that call back success on
// either engine, and the rig counts how often each run was claimed. A failed call fails the
// test's round and cancels.
type raceRig struct {
	t       *testing.T
	round   int
	engines []*Engine
	ctx     context.Context
	cancel  func()
	wg      sync.WaitGroup
	work    chan Claimed
	// onHand (may be nil) sees each run as it is handed over.
	onHand func(*raceRig, Claimed)
	claims sync.Map // run id → times claimed
	// done counts the callbacks applied.
	done atomic.Int32
}

// newRaceRig starts workers workers over h's engine and another on its database, built with
// cfg; capacity bounds the runs handed over and not yet called back, and onHand (may be nil)
// sees each run as it is handed over.
func newRaceRig(t *testing.T, h *harness, cfg Config, round, workers, capacity int, onHand func(*raceRig, Claimed)) *raceRig {
	other, err := New(h.pool, h.eng.keys, h.eng.storage, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(other.Close)
	r := &raceRig{t: t, round: round, engines: []*Engine{h.eng, other}, work: make(chan Claimed, capacity), onHand: onHand}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, e := range r.engines {
		e.SetRefill(r.hand)
	}
	for i := range workers {
		r.wg.Go(func() {
			for {
				select {
				case <-r.ctx.Done():
					return
				case c := <-r.work:
					res, err := r.engines[(i+rand.IntN(2))%2].Callback(r.ctx, call(c), success())
					if err != nil || !res.Applied {
						r.fail("callback of %s (%s): %+v, %v", c.RunID, c.TaskID, res, err)
						return
					}
					r.done.Add(1)
				}
			}
		})
	}
	return r
}

// hand counts the claims of cs and hands them to the workers.
func (r *raceRig) hand(cs []Claimed) {
	for _, c := range cs {
		n, _ := r.claims.LoadOrStore(c.RunID, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if r.onHand != nil {
			r.onHand(r, c)
		}
		r.work <- c
	}
}

// fail fails the test's round and ends the race.
func (r *raceRig) fail(format string, args ...any) {
	r.t.Errorf("round %d: "+format, append([]any{r.round}, args...)...)
	r.cancel()
}

// loops runs a loop per engine that claims up to 4 runs every pause and hands them over, as a
// woken loop does.
func (r *raceRig) loops(pause time.Duration) {
	for _, e := range r.engines {
		r.wg.Go(func() {
			for r.ctx.Err() == nil {
				cs, err := e.Claim(r.ctx, 4)
				if err != nil && r.ctx.Err() == nil {
					r.fail("claim: %v", err)
					return
				}
				r.hand(cs)
				time.Sleep(pause)
			}
		})
	}
}

// await waits until until reports true, the race fails or timeout passes, then ends the race.
func (r *raceRig) await(timeout time.Duration, until func() bool) {
	deadline := time.Now().Add(timeout)
	for r.ctx.Err() == nil && time.Now().Before(deadline) && !until() {
		time.Sleep(5 * time.Millisecond)
	}
	r.cancel()
	r.wg.Wait()
	for _, e := range r.engines {
		e.SetRefill(nil)
	}
}

// requireClaimedOnce checks that every run handed over was claimed once.
func (r *raceRig) requireClaimedOnce() {
	r.claims.Range(func(id, n any) bool {
		require.Equal(r.t, int32(1), n.(*atomic.Int32).Load(), "round %d: run %s", r.round, id)
		return true
	})
}

// watchInFlight samples, until ctx ends, how many runs are in flight in committed state, and
// returns the most it saw.
func watchInFlight(ctx context.Context, wg *sync.WaitGroup, h *harness) *atomic.Int32 {
	var most atomic.Int32
	wg.Go(func() {
		for ctx.Err() == nil {
			var n int32
			if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running')`).Scan(&n); err == nil && n > most.Load() {
				most.Store(n)
			}
		}
	})
	return &most
}

// TestRefillRacesNeverExceedTheCap races two engines (two instances) whose group commits claim
// for their dispatchers, their loops' claims and workers calling back on either engine, over
// one queue under MAX_CONCURRENCY: every run is claimed once and completes, and no committed
// state ever has more runs in flight than the cap.
func TestRefillRacesNeverExceedTheCap(t *testing.T) {
	t.Parallel()
	const maxConcurrency, runs, workers = 6, 240, 12
	for round := range 3 {
		cfg := Config{MaxConcurrency: maxConcurrency, ClaimBatch: 4}
		h := newHarness(t, cfg)
		h.register(t, []protocol.TaskDefinition{{ID: "t"}})
		h.enqueue(t, "t", 0, runs)

		r := newRaceRig(t, h, cfg, round, workers, runs, nil)
		// The loops: each engine claims now and then, as a woken loop does.
		r.loops(time.Millisecond)
		most := watchInFlight(r.ctx, &r.wg, h)
		r.await(60*time.Second, func() bool { return r.done.Load() >= runs })
		require.Equal(t, int32(runs), r.done.Load(), "round %d", round)
		require.LessOrEqual(t, most.Load(), int32(maxConcurrency), "round %d", round)
		require.Equal(t, runs, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'completed' AND attempt = 1 AND lease = 1`), "round %d", round)
		r.requireClaimedOnce()
	}
}
