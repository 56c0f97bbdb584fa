package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

func TestClaimOrdersByPriorityThenAge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}, {ID: "u"}})
	// Spread over two tasks: the order holds across tasks, not only within one.
	oldLow := h.enqueue(t, "t", 5, 1)[0]
	newLow := h.enqueue(t, "u", 5, 1)[0]
	newestHigh := h.enqueue(t, "u", 1, 1)[0]
	oldestLast := h.enqueue(t, "t", 9, 1)[0]
	// Ages set in the database, so that the order does not hang on the enqueue's timing.
	for id, age := range map[string]string{oldLow: "3 minutes", newLow: "2 minutes", newestHigh: "1 minute", oldestLast: "1 hour"} {
		h.exec(t, `UPDATE task_runs SET available_at = now() - $2::interval WHERE id = $1`, id, age)
	}
	later := h.enqueue(t, "t", 0, 1)[0]
	h.exec(t, `UPDATE task_runs SET available_at = now() + interval '1 hour' WHERE id = $1`, later)

	var got []string
	for range 4 {
		got = append(got, h.claimOne(t).RunID)
	}
	require.Equal(t, []string{newestHigh, oldLow, newLow, oldestLast}, got, "lower priority first, then the oldest")
	none, err := h.eng.Claim(context.Background(), 10)
	require.NoError(t, err)
	require.Empty(t, none, "a run not yet available is not claimed, whatever its priority")

	h.clock.Advance(2 * time.Hour)
	require.Equal(t, later, h.claimOne(t).RunID, "it is claimed once its time has come")
}

func TestClaimHonoursTaskConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "capped", Concurrency: ptr(2)}, {ID: "free"}})
	h.enqueue(t, "capped", 0, 5)
	h.enqueue(t, "free", 0, 5)
	ctx := context.Background()

	claimed, err := h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	byTask := map[string][]Claimed{}
	for _, c := range claimed {
		byTask[c.TaskID] = append(byTask[c.TaskID], c)
	}
	require.Len(t, byTask["capped"], 2, "the capped task's concurrency")
	require.Len(t, byTask["free"], 5, "an uncapped task takes all it has")

	again, err := h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, again, "runs in flight count against the cap across claims")

	h.succeed(t, byTask["capped"][0])
	again, err = h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	require.Len(t, again, 1, "an ended run frees one place")
	require.Equal(t, "capped", again[0].TaskID)
}

func TestClaimHonoursMaxConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{MaxConcurrency: 3})
	h.register(t, []protocol.TaskDefinition{{ID: "a"}, {ID: "b"}})
	h.enqueue(t, "a", 0, 4)
	h.enqueue(t, "b", 0, 4)
	ctx := context.Background()

	claimed, err := h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	require.Len(t, claimed, 3, "MAX_CONCURRENCY across all tasks")
	again, err := h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, again)

	h.succeed(t, claimed[0])
	again, err = h.eng.Claim(ctx, 100)
	require.NoError(t, err)
	require.Len(t, again, 1)
}

// TestConcurrentClaimsNeverShareARun races claimers of two engines (as two instances would) over
// one queue, round after round: no run is claimed twice, and MAX_CONCURRENCY, when set, holds
// for all of them together.
func TestConcurrentClaimsNeverShareARun(t *testing.T) {
	t.Parallel()
	const claimers, batch, runs = 6, 5, 30
	for _, maxConcurrency := range []int{0, 12} {
		t.Run(fmt.Sprintf("max %d", maxConcurrency), func(t *testing.T) {
			t.Parallel()
			want := runs // claimers × batch: together they can take every run
			if maxConcurrency > 0 {
				want = maxConcurrency
			}
			h := newHarness(t, Config{MaxConcurrency: maxConcurrency})
			other, err := New(h.pool, h.eng.keys, h.eng.storage, Config{MaxConcurrency: maxConcurrency}, h.eng.log)
			require.NoError(t, err)
			h.register(t, []protocol.TaskDefinition{{ID: "t"}})
			ctx := context.Background()
			for round := range 5 {
				queued := h.enqueue(t, "t", 0, runs)
				var (
					mu      sync.Mutex
					claimed []string
					errs    []error
					wg      sync.WaitGroup
				)
				for i := range claimers {
					eng := h.eng
					if i%2 == 1 {
						eng = other
					}
					wg.Go(func() {
						c, err := eng.Claim(ctx, batch)
						mu.Lock()
						defer mu.Unlock()
						errs = append(errs, err)
						claimed = append(claimed, runIDs(c)...)
					})
				}
				wg.Wait()
				for _, err := range errs {
					require.NoError(t, err)
				}
				seen := map[string]bool{}
				for _, id := range claimed {
					require.False(t, seen[id], "round %d: run %s claimed twice", round, id)
					seen[id] = true
					require.Contains(t, queued, id)
				}
				require.Len(t, claimed, want, "round %d", round)
				require.Equal(t, want, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'dispatching'`), "round %d", round)
				// End this round's runs so that the next round starts from nothing in flight.
				h.exec(t, `UPDATE task_runs SET status = 'cancelled', completed_at = now(), deadline = NULL`)
			}
		})
	}
}

func TestClaimCapsATaskAcrossPriorities(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "capped", Concurrency: ptr(3)}})
	// Ready runs of one task at three priorities: each priority is read on its own, and the
	// task's places are shared between them, most urgent first.
	low := h.enqueue(t, "capped", 9, 2)
	mid := h.enqueue(t, "capped", 5, 2)
	high := h.enqueue(t, "capped", 1, 2)

	claimed, err := h.eng.Claim(context.Background(), 100)
	require.NoError(t, err)
	var got []string
	for _, c := range claimed {
		got = append(got, c.RunID)
	}
	require.ElementsMatch(t, append(append([]string{}, high...), mid[0]), got, "three places: both of priority 1, the older of priority 5")
	require.NotContains(t, got, low[0])
}

func TestClaimFindsReadyRunsBehindDelayedOnes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	// Many runs not ready yet, at the most urgent priority, ahead in the index of a ready one.
	delayed := h.enqueue(t, "t", 0, 50)
	h.exec(t, `UPDATE task_runs SET available_at = now() + interval '1 day' WHERE id = ANY($1)`, delayed)
	ready := h.enqueue(t, "t", 7, 1)[0]

	claimed, err := h.eng.Claim(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, ready, claimed[0].RunID)
}
