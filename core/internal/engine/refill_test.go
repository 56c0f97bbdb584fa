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

// raceLoops runs, until ctx ends, a loop per engine that claims up to 4 runs every pause and
// hands them over, as a woken loop does; a failed claim fails the test (round) and cancels.
func raceLoops(ctx context.Context, t *testing.T, cancel func(), wg *sync.WaitGroup, engines []*Engine, hand func([]Claimed),
	pause time.Duration, round int) {
	for _, e := range engines {
		wg.Go(func() {
			for ctx.Err() == nil {
				cs, err := e.Claim(ctx, 4)
				if err != nil && ctx.Err() == nil {
					t.Errorf("round %d: claim: %v", round, err)
					cancel()
					return
				}
				hand(cs)
				time.Sleep(pause)
			}
		})
	}
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
		h := newHarness(t, Config{MaxConcurrency: maxConcurrency, ClaimBatch: 4})
		other, err := New(h.pool, h.eng.keys, h.eng.storage, Config{MaxConcurrency: maxConcurrency, ClaimBatch: 4}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(other.Close)
		engines := []*Engine{h.eng, other}
		h.register(t, []protocol.TaskDefinition{{ID: "t"}})
		h.enqueue(t, "t", 0, runs)

		ctx, cancel := context.WithCancel(context.Background())
		work := make(chan Claimed, runs)
		var claims sync.Map // run id → times claimed
		hand := func(cs []Claimed) {
			for _, c := range cs {
				n, _ := claims.LoadOrStore(c.RunID, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				work <- c
			}
		}
		for _, e := range engines {
			e.SetRefill(hand)
		}
		var done atomic.Int32
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case c := <-work:
						res, err := engines[(i+rand.IntN(2))%2].Callback(ctx, call(c), success())
						if err != nil || !res.Applied {
							t.Errorf("round %d: callback of %s: %+v, %v", round, c.RunID, res, err)
							cancel()
							return
						}
						done.Add(1)
					}
				}
			})
		}
		// The loops: each engine claims now and then, as a woken loop does.
		raceLoops(ctx, t, cancel, &wg, engines, hand, time.Millisecond, round)
		most := watchInFlight(ctx, &wg, h)
		deadline := time.Now().Add(60 * time.Second)
		for done.Load() < runs && ctx.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		for _, e := range engines {
			e.SetRefill(nil)
		}
		require.Equal(t, int32(runs), done.Load(), "round %d", round)
		require.LessOrEqual(t, most.Load(), int32(maxConcurrency), "round %d", round)
		require.Equal(t, runs, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'completed' AND attempt = 1 AND lease = 1`), "round %d", round)
		claims.Range(func(id, n any) bool {
			require.Equal(t, int32(1), n.(*atomic.Int32).Load(), "round %d: run %s", round, id)
			return true
		})
	}
}
