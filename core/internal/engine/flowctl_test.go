package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// fixedClock is a clock that moves only when told: three engines share it, so that the test,
// not the machine's speed, decides which window each claim falls in.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// claimers are three engines on one database with a shared clock, claiming as three instances do.
func claimers(t *testing.T, h *harness, c *fixedClock) []*Engine {
	t.Helper()
	engs := make([]*Engine, 3)
	for i := range engs {
		eng, err := New(h.pool, h.eng.keys, h.eng.storage, Config{Now: c.Now}, h.eng.log)
		require.NoError(t, err)
		t.Cleanup(eng.Close)
		engs[i] = eng
	}
	return engs
}

// drain has every engine claim (batches of batch, concurrently) until none takes anything.
func drain(t *testing.T, engs []*Engine, batch int) []Claimed {
	t.Helper()
	var (
		mu  sync.Mutex
		out []Claimed
		wg  sync.WaitGroup
	)
	errs := make([]error, len(engs))
	for i, eng := range engs {
		wg.Go(func() {
			for {
				c, err := eng.Claim(context.Background(), batch)
				if err != nil {
					errs[i] = err
					return
				}
				if len(c) == 0 {
					return
				}
				mu.Lock()
				out = append(out, c...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return out
}

func (h *harness) enqueueInputs(t *testing.T, task string, inputs []string) []string {
	t.Helper()
	var ids []string
	for len(inputs) > 0 {
		n := min(len(inputs), 1000)
		reqs := make([]EnqueueRequest, n)
		for i := range reqs {
			reqs[i] = EnqueueRequest{TaskID: task, Input: json.RawMessage(inputs[i])}
		}
		res, _, err := h.eng.Enqueue(context.Background(), reqs)
		require.NoError(t, err)
		for _, r := range res {
			ids = append(ids, r.RunID)
		}
		inputs = inputs[n:]
	}
	return ids
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// A burst of 10,000 runs of a task limited to 500 per second, claimed by three engines at once
// while the clock moves a quarter period at a time, dispatches 500 in each window (counted from
// the runs' dispatch times), never more; the claim reports when the spent window refills.
func TestRateLimitHoldsUnderABurstWithThreeClaimers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	clock := &fixedClock{t: time.UnixMilli(1_800_000_000_000)}
	engs := claimers(t, h, clock)
	const limit, period, runs = 500, 1000, 10_000
	h.register(t, []protocol.TaskDefinition{{ID: "limited", RateLimit: &protocol.RateLimit{Limit: limit, PeriodMs: period}}, {ID: "free"}})
	h.enqueueInputs(t, "limited", repeat(`{}`, runs))
	total := 0
	for step := 0; total < runs; step++ {
		require.Less(t, step, 4*runs/limit+8, "the backlog should drain at the limit's rate")
		got := drain(t, engs, 64)
		total += len(got)
		if total < runs {
			// The window is spent: every engine knows when it refills (each one's last claim,
			// which took nothing, found the budget spent).
			now := clock.Now()
			for i, e := range engs {
				r := e.RateLimitRefill()
				require.False(t, r.IsZero(), "engine %d reports the refill", i)
				require.True(t, r.After(now), "the refill is ahead")
				require.Equal(t, int64(0), r.UnixMilli()%period, "the refill is the next window's start")
			}
			// Runs of an unlimited task are taken meanwhile.
			h.enqueue(t, "free", 0, 3)
			require.Len(t, drain(t, engs[:1], 10), 3)
		}
		clock.Advance(period / 4 * time.Millisecond)
	}
	require.Equal(t, runs, total)
	rows, err := h.pool.Query(context.Background(), `SELECT (extract(epoch FROM started_at) * 1000)::bigint / $1 AS w, count(*)
		FROM task_runs WHERE task_id = 'limited' GROUP BY w ORDER BY w`, period)
	require.NoError(t, err)
	windows := 0
	for rows.Next() {
		var w, n int64
		require.NoError(t, rows.Scan(&w, &n))
		require.LessOrEqual(t, n, int64(limit), "window %d", w)
		require.Equal(t, int64(limit), n, "window %d: a backlog dispatches at the full rate", w)
		windows++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, runs/limit, windows)
}

// Two tasks that name one rate limit share its budget; a changed limit applies at once; a limit in
// use cannot be deleted.
func TestNamedRateLimitIsShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	clock := &fixedClock{t: time.UnixMilli(1_800_000_000_000)}
	engs := claimers(t, h, clock)
	ctx := context.Background()
	_, err := h.eng.PutRateLimit(ctx, "shared", 10, 60_000)
	require.NoError(t, err)
	h.register(t, []protocol.TaskDefinition{{ID: "a", RateLimitKey: "shared"}, {ID: "b", RateLimitKey: "shared"}})
	h.enqueue(t, "a", 0, 5)
	h.enqueue(t, "b", 0, 30)
	got := drain(t, engs, 7)
	require.Len(t, got, 10)
	byTask := map[string]int{}
	for _, c := range got {
		byTask[c.TaskID]++
	}
	require.Equal(t, map[string]int{"a": 5, "b": 5}, byTask, "both tasks draw on one budget, oldest runs first")

	// Raising the limit within the window gives the difference.
	_, err = h.eng.PutRateLimit(ctx, "shared", 15, 60_000)
	require.NoError(t, err)
	require.Len(t, drain(t, engs, 7), 5)
	clock.Advance(time.Minute)
	require.Len(t, drain(t, engs, 7), 15)

	err = h.eng.DeleteRateLimit(ctx, "shared")
	require.ErrorIs(t, err, ErrConflict)
	require.Contains(t, err.Error(), "a, b")
	// Registered without it, the tasks are free and the limit can go.
	h.register(t, []protocol.TaskDefinition{{ID: "a"}, {ID: "b"}})
	require.NoError(t, h.eng.DeleteRateLimit(ctx, "shared"))
	require.Len(t, drain(t, engs, 100), 35-30)
	require.ErrorIs(t, h.eng.DeleteRateLimit(ctx, "shared"), ErrNotFound)
}

// Re-registration changes a task's limit (a new period starts a new window) and removes it.
func TestReRegistrationChangesAndRemovesARateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	clock := &fixedClock{t: time.UnixMilli(1_800_000_000_000)}
	engs := claimers(t, h, clock)
	h.register(t, []protocol.TaskDefinition{{ID: "t", RateLimit: &protocol.RateLimit{Limit: 5, PeriodMs: 60_000}}})
	h.enqueue(t, "t", 0, 100)
	require.Len(t, drain(t, engs, 50), 5)
	h.register(t, []protocol.TaskDefinition{{ID: "t", RateLimit: &protocol.RateLimit{Limit: 8, PeriodMs: 60_000}}})
	require.Len(t, drain(t, engs, 50), 3, "same window: 8 - 5")
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	require.Len(t, drain(t, engs, 50), 92, "no limit any more")
}

// Bad rate limits and concurrency keys are refused at registration with the field named, and
// nothing is written.
func TestFlowControlRegistrationRefusesBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	cases := []struct {
		def   protocol.TaskDefinition
		code  string
		field string
	}{
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: 0, PeriodMs: 1000}}, "INVALID_RATE_LIMIT", "tasks[0].rateLimit.limit"},
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: -1, PeriodMs: 1000}}, "INVALID_RATE_LIMIT", "tasks[0].rateLimit.limit"},
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: 0}}, "INVALID_RATE_LIMIT_PERIOD", "tasks[0].rateLimit.periodMs"},
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: -5}}, "INVALID_RATE_LIMIT_PERIOD", "tasks[0].rateLimit.periodMs"},
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: MaxRateLimitPeriodMs + 1}}, "INVALID_RATE_LIMIT_PERIOD", "tasks[0].rateLimit.periodMs"},
		{protocol.TaskDefinition{RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: 1}, RateLimitKey: "k"}, "INVALID_RATE_LIMIT", "tasks[0].rateLimitKey"},
		{protocol.TaskDefinition{RateLimitKey: "nope"}, "UNKNOWN_RATE_LIMIT_KEY", "tasks[0].rateLimitKey"},
		{protocol.TaskDefinition{RateLimitKey: "bad key"}, "INVALID_RATE_LIMIT_KEY", "tasks[0].rateLimitKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "customerId", ConcurrencyPerKey: ptr(1)}, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "/a~2b", ConcurrencyPerKey: ptr(1)}, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "/a~", ConcurrencyPerKey: ptr(1)}, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "/" + string(make([]byte, 300)), ConcurrencyPerKey: ptr(1)}, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "/a"}, "INVALID_CONCURRENCY_PER_KEY", "tasks[0].concurrencyPerKey"},
		{protocol.TaskDefinition{ConcurrencyKey: "/a", ConcurrencyPerKey: ptr(0)}, "INVALID_CONCURRENCY_PER_KEY", "tasks[0].concurrencyPerKey"},
		{protocol.TaskDefinition{ConcurrencyPerKey: ptr(2)}, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
	}
	for i, c := range cases {
		c.def.ID, c.def.CodeHash = fmt.Sprintf("t%d", i), "h"
		_, err := h.eng.Register(context.Background(), &protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: h.baseURL,
			Tasks: []protocol.TaskDefinition{c.def}}, "")
		require.ErrorIs(t, err, ErrInvalid, "case %d", i)
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, c.code, e.Code, "case %d: %v", i, err)
		require.Equal(t, map[string]string{"field": c.field}, e.Details, "case %d", i)
	}
	require.Zero(t, h.count(t, `SELECT count(*) FROM tasks`))
	for _, bad := range []struct {
		limit int
		ms    int64
	}{{0, 1000}, {-1, 1000}, {1, 0}, {1, -1}, {1, MaxRateLimitPeriodMs + 1}} {
		_, err := h.eng.PutRateLimit(context.Background(), "k", bad.limit, bad.ms)
		require.ErrorIs(t, err, ErrInvalid)
	}
	_, err := h.eng.PutRateLimit(context.Background(), "bad key", 1, 1)
	require.ErrorIs(t, err, ErrInvalid)
	require.Zero(t, h.count(t, `SELECT count(*) FROM rate_limits`))
}

func TestConcurrencyKeyOf(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pointer, input string
		want           *string
	}{
		{"", `{"a":1}`, nil},
		{"/a", `{"a": "x"}`, ptr(`"x"`)},
		{"/a", `{"a": 12345678901234567890}`, ptr(`12345678901234567890`)},
		{"/a/b", `{"a": {"b": [1, 2]}}`, ptr(`[1,2]`)},
		{"/a/1", `{"a": [1, {"c": true}]}`, ptr(`{"c":true}`)},
		{"/a/01", `{"a": [1, 2]}`, ptr(``)},
		{"/m~1n~0", `{"m/n~": 7}`, ptr(`7`)},
		{"/a", `{"b": 1}`, ptr(``)},
		{"/a", `{"a": null}`, ptr(``)},
		{"/a", `[1]`, ptr(``)},
		{"/a", `null`, ptr(``)},
	} {
		require.Equal(t, c.want, concurrencyKeyOf(c.pointer, []byte(c.input)), "%s in %s", c.pointer, c.input)
	}
	long := concurrencyKeyOf("/a", []byte(`{"a": "`+string(make([]byte, 0))+fmt.Sprintf("%0300d", 1)+`"}`))
	require.Len(t, *long, len("sha256:")+64)
}

// One hot key with a deep backlog queued before ten cold keys: three engines claiming at once
// take every cold run in their first claims, and never more than the per-key limit of any key.
func TestConcurrencyPerKeyHasNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	clock := &fixedClock{t: time.UnixMilli(1_800_000_000_000)}
	engs := claimers(t, h, clock)
	h.register(t, []protocol.TaskDefinition{{ID: "k", ConcurrencyKey: "/customerId", ConcurrencyPerKey: ptr(2)}})
	h.enqueueInputs(t, "k", repeat(`{"customerId": "hot"}`, 1000))
	var cold []string
	for i := range 10 {
		cold = append(cold, fmt.Sprintf(`{"customerId": "cold-%d"}`, i))
	}
	cold = append(cold, `{"other": 1}`, `{"other": 2}`) // no key: limited by the task alone
	coldIDs := h.enqueueInputs(t, "k", cold)
	got := drain(t, engs, 5)
	ids := runIDs(got)
	for _, id := range coldIDs {
		require.Contains(t, ids, id)
	}
	require.Len(t, got, len(coldIDs)+2)
	perKey := func() map[string]int {
		m := map[string]int{}
		rows, err := h.pool.Query(context.Background(), `SELECT concurrency_key, count(*) FROM task_runs
			WHERE status IN ('dispatching', 'running') GROUP BY concurrency_key`)
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int
			require.NoError(t, rows.Scan(&k, &n))
			m[k] = n
		}
		require.NoError(t, rows.Err())
		return m
	}
	require.Equal(t, 2, perKey()[`"hot"`])
	// Finishing one hot run frees one place for the key, and only one.
	for _, c := range got {
		if c.RunID != "" && h.count(t, `SELECT count(*) FROM task_runs WHERE id = $1 AND concurrency_key = '"hot"'`, c.RunID) == 1 {
			h.succeed(t, c)
			break
		}
	}
	require.Len(t, drain(t, engs, 5), 1)
	require.Equal(t, 2, perKey()[`"hot"`])
	// Without the key, the task's backlog is free.
	h.register(t, []protocol.TaskDefinition{{ID: "k"}})
	require.Len(t, drain(t, engs, 500), 1000-3)
}

// An engine that has not seen a task's new rate limit yet (it read that no task had one less
// than a second ago) leaves the task's runs to the claims that know: it never takes them unlimited.
func TestStaleFlowControlFlagNeverExceedsALimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	clock := &fixedClock{t: time.UnixMilli(1_800_000_000_000)}
	engs := claimers(t, h, clock)
	h.register(t, []protocol.TaskDefinition{{ID: "free"}})
	h.enqueue(t, "free", 0, 2)
	require.Len(t, drain(t, engs[:1], 10), 2)
	// engs[0] now believes no task has flow control, and keeps believing it however slow the
	// machine is (its next read would be a second later).
	engs[0].flowMu.Lock()
	require.False(t, engs[0].flowInUse)
	engs[0].flowChecked = time.Now().Add(time.Hour)
	engs[0].flowMu.Unlock()
	h.register(t, []protocol.TaskDefinition{{ID: "free"}, {ID: "limited", RateLimit: &protocol.RateLimit{Limit: 3, PeriodMs: 60_000}}})
	h.enqueue(t, "limited", 0, 10)
	h.enqueue(t, "free", 0, 2)
	got := drain(t, engs[:1], 10)
	require.Len(t, got, 2, "the stale engine takes the unlimited runs only")
	for _, c := range got {
		require.Equal(t, "free", c.TaskID)
	}
	require.Len(t, drain(t, engs[1:], 10), 3, "an engine that reads the flag takes the limit's budget")
	require.Empty(t, drain(t, engs, 10))
}

// The nodes of a pipeline run take their key from the run's input, which is theirs: triggers
// for one customer run one at a time, other customers' alongside.
func TestConcurrencyKeyOfPipelineNodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "k", ConcurrencyKey: "/customerId", ConcurrencyPerKey: ptr(1)}},
		protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"k"}})
	for _, in := range []string{`{"customerId": 1}`, `{"customerId": 1}`, `{"customerId": 1}`, `{"customerId": 2}`, `{}`} {
		_, err := h.eng.Trigger(context.Background(), "p", TriggerRequest{Input: json.RawMessage(in)})
		require.NoError(t, err)
	}
	got, err := h.eng.Claim(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, got, 3, "one of customer 1, customer 2, and the run without a key")
	require.Equal(t, 2, h.count(t, `SELECT count(*) FROM task_runs WHERE concurrency_key = '1' AND status = 'pending'`))
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM task_runs WHERE concurrency_key = '' AND status = 'dispatching'`))
}

// Two claims serialized by the claim lock can see their times out of order (each took its time
// before the lock, or instances' clocks differ): a claim whose time is behind a window already
// counted must not move the window row back, which reset the newer window's count and let it
// dispatch twice its limit. The injected clock goes back across a window boundary to simulate it.
func TestRateLimitWindowNeverMovesBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	const limit, period = 10, 1000
	w1 := int64(1_800_000_001_000)
	clock := &fixedClock{t: time.UnixMilli(w1 + 10)}
	eng := claimers(t, h, clock)[0]
	h.register(t, []protocol.TaskDefinition{{ID: "limited", RateLimit: &protocol.RateLimit{Limit: limit, PeriodMs: period}}})
	h.enqueueInputs(t, "limited", repeat(`{}`, 100))
	claim := func() int {
		c, err := eng.Claim(context.Background(), 64)
		require.NoError(t, err)
		return len(c)
	}
	require.Equal(t, limit, claim(), "W1 takes its limit")
	clock.Advance(-20 * time.Millisecond) // behind W1's start: the reordered claim
	require.Equal(t, 0, claim(), "a claim behind a counted window takes nothing")
	require.False(t, eng.RateLimitRefill().IsZero())
	require.Equal(t, w1+period, eng.RateLimitRefill().UnixMilli(), "it claims again when W1 ends")
	clock.Advance(30 * time.Millisecond) // W1 again
	require.Equal(t, 0, claim(), "W1's count survived")
	require.Equal(t, limit, h.count(t, `SELECT used FROM rate_limit_windows WHERE window_start_ms = $1`, w1))
	require.Equal(t, limit, h.count(t, `SELECT count(*) FROM task_runs WHERE task_id = 'limited' AND started_at IS NOT NULL`))
	clock.Advance(period * time.Millisecond) // W2
	require.Equal(t, limit, claim())
}

// One database holds at most MaxRateLimits named rate limits, so that GET /api/rate-limits lists
// them all: concurrent creations cannot pass the cap together; replacing one at the cap works.
func TestNamedRateLimitsAreCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ctx := context.Background()
	const before = MaxRateLimits - 10
	h.exec(t, `INSERT INTO rate_limits (key, max_runs, period_ms) SELECT 'pre-' || lpad(i::text, 4, '0'), 1, 1000 FROM generate_series(1, $1) i`, before)
	const creators = 30
	errs := make([]error, creators)
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() { _, errs[i] = h.eng.PutRateLimit(ctx, fmt.Sprintf("new-%02d", i), 5, 1000) })
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		require.ErrorIs(t, err, ErrConflict)
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, "TOO_MANY_RATE_LIMITS", e.Code)
	}
	require.Equal(t, MaxRateLimits-before, created)
	require.Equal(t, MaxRateLimits, h.count(t, `SELECT count(*) FROM rate_limits`))
	r, err := h.eng.PutRateLimit(ctx, "pre-0001", 7, 2000)
	require.NoError(t, err, "replacing one at the cap")
	require.Equal(t, 7, r.Limit)
	all, err := h.eng.RateLimits(ctx)
	require.NoError(t, err)
	require.Len(t, all, MaxRateLimits, "the list holds them all")
}
