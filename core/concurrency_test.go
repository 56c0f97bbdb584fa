package core_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// Twenty processors, each its own orchestrator instance on one database, race over 1,000 ready
// runs: every (run, attempt) is dispatched exactly once.
func TestConcurrentProcessorsDispatchEachRunOnce(t *testing.T) {
	t.Parallel()
	for round := range 2 {
		e := newEnv(t)
		w := newWorker(t, e.url)
		e.register("svc", "1", w.URL(), task("noop"))
		// Enqueue on an instance whose inline dispatch is off: the runs wait for the processors.
		ids := make(map[string]bool)
		for range 4 {
			for _, id := range e.enqueueManyQuiet("noop", 250) {
				ids[id] = true
			}
		}
		require.Len(t, ids, 1000)

		instances := make([]*env, 20)
		for i := range instances {
			instances[i] = newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 17 })
		}
		var wg sync.WaitGroup
		var claimed atomic.Int64
		for _, inst := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					s, err := inst.orch.Process(context.Background())
					if err != nil {
						t.Errorf("process: %v", err)
						return
					}
					claimed.Add(int64(s.Claimed))
					if s.Claimed == 0 {
						return
					}
				}
			}()
		}
		wg.Wait()
		require.EqualValues(t, 1000, claimed.Load(), "round %d", round)
		require.Equal(t, 1000, w.count())
		w.mu.Lock()
		for key, n := range w.seen {
			require.Equal(t, 1, n, "run/attempt %s dispatched %d times", key, n)
		}
		w.mu.Unlock()
		for _, d := range w.all() {
			require.True(t, ids[d.RunID], "unknown run %s", d.RunID)
		}
	}
}

// enqueueManyQuiet enqueues through the engine without waking anything: the runs stay pending.
func (e *env) enqueueManyQuiet(taskID string, n int) []string {
	e.t.Helper()
	quiet := newEnvOn(e.t, e.pool, func(c *core.Config) { c.Mode = core.ModeStandalone })
	return quiet.enqueueMany(taskID, n)
}

// Per-task concurrency and MAX_CONCURRENCY hold while several instances claim at once and
// workers finish at random moments.
func TestConcurrencyLimitsNeverExceeded(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		e := newEnv(t, func(c *core.Config) { c.MaxConcurrency = 3 })
		w := newWorker(t, e.url)
		var mu sync.Mutex
		active := map[string]int{}
		maxSeen := map[string]int{}
		total, maxTotal := 0, 0
		w.answer = func(d protocol.DispatchRequest) int {
			mu.Lock()
			defer mu.Unlock()
			active[d.TaskID]++
			total++
			maxSeen[d.TaskID] = max(maxSeen[d.TaskID], active[d.TaskID])
			maxTotal = max(maxTotal, total)
			return http.StatusAccepted
		}
		w.after = func(d protocol.DispatchRequest) {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			mu.Lock()
			active[d.TaskID]--
			total--
			mu.Unlock()
			w.callback(d, success(d))
		}
		e.register("svc", "1", w.URL(), task("limited", withConcurrency(2)), task("free"))
		limited := e.enqueueManyQuiet("limited", 40)
		free := e.enqueueManyQuiet("free", 40)

		instances := []*env{e}
		for range 4 {
			instances = append(instances, newEnvOn(t, e.pool, func(c *core.Config) { c.MaxConcurrency = 3; c.ProcessBatchSize = 5 }))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, inst := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if _, err := inst.orch.Process(ctx); err != nil && ctx.Err() == nil {
						t.Errorf("process: %v", err)
						return
					}
				}
			}()
		}
		for _, id := range append(limited, free...) {
			e.waitStatus(id, protocol.StatusCompleted)
		}
		cancel()
		wg.Wait()
		mu.Lock()
		require.LessOrEqual(t, maxSeen["limited"], 2, "round %d: task concurrency exceeded", round)
		require.LessOrEqual(t, maxTotal, 3, "round %d: MAX_CONCURRENCY exceeded", round)
		require.Equal(t, 2, maxSeen["limited"], "round %d: the limit should be reached", round)
		mu.Unlock()
	}
}

// Two concurrent enqueues with one idempotency key make one run, and both answers name it.
func TestConcurrentEnqueuesWithOneIdempotencyKeyMakeOneRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("charge"))
	for round := range rounds(20) {
		key := "order-" + string(rune('a'+round))
		const n = 8
		var wg sync.WaitGroup
		results := make([]response, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = e.send("POST", "/api/queue/task", map[string]any{"taskId": "charge", "input": i, "idempotencyKey": key}, "")
			}()
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		created := 0
		runIDs := map[string]bool{}
		for _, r := range results {
			var q enqueued
			r.json(t, &q)
			runIDs[q.RunID] = true
			switch r.Status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
				require.True(t, q.Deduplicated)
			default:
				t.Fatalf("unexpected status %d: %s", r.Status, r.Body)
			}
		}
		require.Equal(t, 1, created, "round %d", round)
		require.Len(t, runIDs, 1, "round %d", round)
		var count int
		require.NoError(t, e.pool.QueryRow(context.Background(),
			"SELECT count(*) FROM task_runs WHERE idempotency_key = $1", key).Scan(&count))
		require.Equal(t, 1, count)
	}
}

// The sweep and a late callback race on one expired run: whichever commits first wins, and the
// other changes nothing. A callback that was answered 200 always leaves its result.
func TestSweepRacingCallbackKeepsOneOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("slow", withRetries(3, 60000)))
	callbackWon, sweepWon := 0, 0
	for range rounds(40) {
		q := e.enqueueQuiet("slow")
		s := e.process()
		require.Equal(t, 1, s.Dispatched)
		d := w.all()[w.count()-1]
		require.Equal(t, q, d.RunID)
		// Expire the attempt's deadline as if the worker had gone silent.
		_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET deadline = now() - interval '1 second' WHERE id = $1", q)
		require.NoError(t, err)

		var wg sync.WaitGroup
		var cbStatus int
		var swept int
		var sweepErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			cbStatus, _ = w.callback(d, success(d))
		}()
		go func() {
			defer wg.Done()
			swept, sweepErr = e.orch.Sweep(context.Background())
		}()
		wg.Wait()
		require.NoError(t, sweepErr)
		r := e.run(q)
		switch cbStatus {
		case http.StatusOK:
			callbackWon++
			require.Equal(t, protocol.StatusCompleted, r.Status)
			require.Equal(t, 1, r.Attempt)
			require.Empty(t, r.PreviousAttempts)
			require.Equal(t, 0, swept)
		case http.StatusConflict:
			sweepWon++
			require.Equal(t, protocol.StatusPending, r.Status)
			require.Equal(t, 2, r.Attempt)
			require.Len(t, r.PreviousAttempts, 1)
			require.Equal(t, protocol.CodeTimeout, r.PreviousAttempts[0].ErrorCode)
			require.Equal(t, 1, swept)
			// Clear the way for the next round.
			_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET status = 'cancelled' WHERE id = $1", q)
			require.NoError(t, err)
		default:
			t.Fatalf("callback answered %d", cbStatus)
		}
	}
	t.Logf("callback won %d times, sweep won %d times", callbackWon, sweepWon)
}

// enqueueQuiet queues one run of taskID without dispatching it.
func (e *env) enqueueQuiet(taskID string) string {
	return e.enqueueManyQuiet(taskID, 1)[0]
}

// Duplicate callbacks racing each other (a worker retrying on a timeout) apply exactly once.
func TestConcurrentDuplicateCallbacksApplyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t", withRetries(3, 0)))
	for round := range rounds(15) {
		id := e.enqueueQuiet("t")
		e.process()
		d := w.all()[w.count()-1]
		require.Equal(t, id, d.RunID)
		body := success(d)
		if round%2 == 1 {
			body = protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "x", Retryable: ptr(false)}
		}
		const n = 6
		var wg sync.WaitGroup
		statuses := make([]int, n)
		answers := make([][]byte, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i], answers[i] = w.callback(d, body)
			}()
		}
		wg.Wait()
		count := 0
		for i, raw := range answers {
			require.Equal(t, http.StatusOK, statuses[i], string(raw))
			if strings.Contains(string(raw), `"applied":true`) {
				count++
			}
		}
		require.Equal(t, 1, count, "round %d", round)
		var dlq int
		require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM dlq WHERE task_run_id = $1", id).Scan(&dlq))
		require.Equal(t, round%2, dlq)
		r := e.run(id)
		require.Len(t, r.PreviousAttempts, round%2)
	}
}
