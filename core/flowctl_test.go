package core_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// enqueueInputs queues one run of taskID per input through an instance that claims nothing
// itself, so that the test's claimers take them.
func (e *env) enqueueInputs(taskID string, inputs []any) []string {
	e.t.Helper()
	quiet := newEnvOn(e.t, e.pool, func(c *core.Config) { c.Mode = core.ModeStandalone })
	var ids []string
	for len(inputs) > 0 {
		n := min(len(inputs), 100)
		tasks := make([]map[string]any, n)
		for i := range tasks {
			tasks[i] = map[string]any{"taskId": taskID, "input": inputs[i]}
		}
		r := quiet.do("POST", "/api/queue/batch", map[string]any{"tasks": tasks}, "")
		require.Equal(e.t, http.StatusCreated, r.Status, "batch: %s", r.Body)
		var out struct {
			Results []enqueued `json:"results"`
		}
		r.json(e.t, &out)
		for _, x := range out.Results {
			ids = append(ids, x.RunID)
		}
		inputs = inputs[n:]
	}
	return ids
}

// One hot key with a backlog queued before twenty runs of ten cold keys, claimed by four
// instances at once while the worker finishes runs at random moments: no key ever has more than
// its limit in flight (the worker's own record), and the cold keys finish while the hot key's
// backlog still waits.
func TestConcurrencyPerKeyAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	var mu sync.Mutex
	active, maxSeen := map[string]int{}, map[string]int{}
	keyOf := func(d protocol.DispatchRequest) string {
		var in struct {
			Customer string `json:"customerId"`
		}
		require.NoError(t, json.Unmarshal(d.Input, &in))
		return in.Customer
	}
	w.answer = func(d protocol.DispatchRequest) int {
		mu.Lock()
		defer mu.Unlock()
		k := keyOf(d)
		active[k]++
		maxSeen[k] = max(maxSeen[k], active[k])
		return http.StatusAccepted
	}
	// Once the test has seen what it needs, the worker stops calling back (the orchestrators
	// are about to close); callbacks under way finish first.
	var callbacks sync.WaitGroup
	stopped := false
	w.after = func(d protocol.DispatchRequest) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		callbacks.Add(1)
		mu.Unlock()
		defer callbacks.Done()
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		mu.Lock()
		active[keyOf(d)]--
		mu.Unlock()
		w.callback(d, success(d))
	}
	e.register("svc", "1", w.URL(), task("k", func(td *protocol.TaskDefinition) {
		td.ConcurrencyKey, td.ConcurrencyPerKey = "/customerId", ptr(2)
	}))
	var hot, cold []any
	for range 300 {
		hot = append(hot, map[string]any{"customerId": "hot"})
	}
	for i := range 20 {
		cold = append(cold, map[string]any{"customerId": string(rune('a' + i%10))})
	}
	e.enqueueInputs("k", hot)
	coldIDs := e.enqueueInputs("k", cold)

	instances := []*env{e}
	for range 3 {
		instances = append(instances, newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 7 }))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, inst := range instances {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := inst.orch.Process(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("process: %v", err)
					return
				}
			}
		})
	}
	for _, id := range coldIDs {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	pendingHot := e.count(`SELECT count(*) FROM task_runs WHERE concurrency_key = '"hot"' AND status = 'pending'`)
	cancel()
	wg.Wait()
	mu.Lock()
	stopped = true
	mu.Unlock()
	callbacks.Wait()
	require.Positive(t, pendingHot, "the cold keys finished before the hot key's backlog")
	mu.Lock()
	defer mu.Unlock()
	for k, n := range maxSeen {
		require.LessOrEqual(t, n, 2, "key %s: more than 2 in flight", k)
	}
	require.Equal(t, 2, maxSeen["hot"], "the hot key reaches its limit")
}

// The standalone loop dispatches a rate-limited backlog window after window, waking when the
// window refills (not only at its poll), and never more than the limit in one window; the
// named limit's routes answer as documented.
func TestRateLimitedBacklogDrainsAtItsRateInTheLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone; c.PollInterval = time.Hour })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	r := e.do("PUT", "/api/rate-limits/slow", map[string]any{"limit": 4, "periodMs": 100}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var rl protocol.NamedRateLimit
	r.json(t, &rl)
	require.Equal(t, protocol.NamedRateLimit{Key: "slow", Limit: 4, PeriodMs: 100, CreatedAt: rl.CreatedAt, UpdatedAt: rl.UpdatedAt}, rl)
	r = e.do("GET", "/api/rate-limits", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	var list protocol.RateLimitList
	r.json(t, &list)
	require.Len(t, list.RateLimits, 1)
	e.register("svc", "1", w.URL(), task("t", func(td *protocol.TaskDefinition) { td.RateLimitKey = "slow" }))
	require.Equal(t, "slow", e.taskOf("svc", "t", "").RateLimitKey)
	ids := e.enqueueManyQuiet("t", 24)
	e.runLoop()
	for _, id := range ids {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	rows, err := e.pool.Query(context.Background(), `SELECT count(*) FROM task_runs WHERE task_id = 't'
		GROUP BY (extract(epoch FROM started_at) * 1000)::bigint / 100`)
	require.NoError(t, err)
	windows := 0
	for rows.Next() {
		var n int
		require.NoError(t, rows.Scan(&n))
		require.LessOrEqual(t, n, 4)
		windows++
	}
	require.NoError(t, rows.Err())
	require.GreaterOrEqual(t, windows, 6)
	require.Positive(t, e.scrape("").get("pipeweave_rate_limited_claims_total"), "claims held runs back")
	r = e.do("DELETE", "/api/rate-limits/slow", nil, "")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "RATE_LIMIT_IN_USE", r.errorBody(t).Code)
	e.register("svc", "2", w.URL(), task("t"))
	require.Equal(t, http.StatusOK, e.do("DELETE", "/api/rate-limits/slow", nil, "").Status)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/rate-limits/slow", nil, "").Status)
}
