package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// A worker that acknowledges and then goes silent is timed out by the heartbeat deadline, the
// run is retried with TIMEOUT in previousAttempts, and the silent attempt's late calls get 409.
// The deadline is moved into the past in the database rather than waited for.
func TestSilentWorkerIsTimedOutAndRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("quiet", withHeartbeat(60000), withRetries(2, 0)))
	id := e.enqueue(map[string]any{"taskId": "quiet", "input": 1}).RunID
	w.waitDispatches(1)
	first := w.all()[0]
	e.waitStatus(id, protocol.StatusRunning)

	// The acknowledgement set the deadline two heartbeat intervals ahead: nothing to sweep yet.
	require.Equal(t, 120000, e.count("SELECT (extract(epoch FROM deadline - updated_at) * 1000)::int FROM task_runs WHERE id = $1", id))
	n, err := e.orch.Sweep(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "the deadline has not passed")
	// The worker stays silent past its deadline.
	e.pastDeadline(id)
	n, err = e.orch.Sweep(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	r := e.run(id)
	require.Equal(t, protocol.StatusPending, r.Status)
	require.Equal(t, 2, r.Attempt)
	require.Len(t, r.PreviousAttempts, 1)
	require.Equal(t, protocol.CodeTimeout, r.PreviousAttempts[0].ErrorCode)
	require.Equal(t, 1, r.PreviousAttempts[0].Attempt)
	require.Nil(t, r.Error, "a pending retry has no error of its own: attempt 1's is in previousAttempts")
	require.Nil(t, r.ErrorCode)

	// The late callback and heartbeat of the silent attempt are refused as stale.
	status, body := w.callback(first, success(first))
	require.Equal(t, http.StatusConflict, status, string(body))
	require.Contains(t, string(body), "STALE_LEASE")
	hbStatus, hb := w.heartbeat(first, nil, "")
	require.Equal(t, http.StatusConflict, hbStatus)
	require.True(t, hb.ShouldCancel)

	// The retry is dispatched with the timed-out attempt in previousAttempts.
	e.process()
	require.Equal(t, 2, w.count())
	second := w.all()[1]
	require.Equal(t, 2, second.Attempt)
	require.Len(t, second.PreviousAttempts, 1)
	require.Equal(t, protocol.CodeTimeout, second.PreviousAttempts[0].ErrorCode)
	status, body = w.callback(second, success(second))
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, protocol.StatusCompleted, e.run(id).Status)
}

// A heartbeat pushes the deadline and records progress; a worker that keeps beating is not
// timed out. Each round moves the deadline into the past in the database, as if the worker had
// been quiet that long, before the heartbeat.
func TestHeartbeatKeepsAttemptAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("beating", withHeartbeat(60000)))
	id := e.enqueue(map[string]any{"taskId": "beating"}).RunID
	w.waitDispatches(1)
	d := w.all()[0]
	for i := range 5 {
		e.pastDeadline(id)
		status, hb := w.heartbeat(d, ptr(i*20), "page")
		require.Equal(t, http.StatusOK, status)
		require.True(t, hb.Acknowledged)
		require.False(t, hb.ShouldCancel)
		n, err := e.orch.Sweep(context.Background())
		require.NoError(t, err)
		require.Equal(t, 0, n, "a beating worker must not be swept")
	}
	r := e.run(id)
	require.Equal(t, protocol.StatusRunning, r.Status)
	require.NotNil(t, r.Progress)
	require.Equal(t, 80, *r.Progress)
	require.Equal(t, "page", r.ProgressMessage)

	// Progress outside 0–100 is refused; /api/progress is the same call.
	status, body, err := post(e.url+"/api/progress", map[string]any{"runId": id, "progress": 101}, d.StorageToken)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	status, body, err = post(e.url+"/api/progress", map[string]any{"runId": id, "progress": 90, "message": "almost"}, d.StorageToken)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, 90, *e.run(id).Progress)
}

// The hard timeout ends an attempt even when the worker keeps beating. The timeout is moved
// into the past in the database rather than waited for.
func TestHardTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("long", withHeartbeat(60000), withRetries(0, 0),
		func(td *protocol.TaskDefinition) { td.Timeout = ptr(300) }))
	id := e.enqueue(map[string]any{"taskId": "long"}).RunID
	w.waitDispatches(1)
	d := w.all()[0]
	require.Equal(t, 300, e.count("SELECT extract(epoch FROM timeout_at - started_at)::int FROM task_runs WHERE id = $1", id),
		"the claim sets the timeout from the task's")
	status, _ := w.heartbeat(d, nil, "")
	require.Equal(t, http.StatusOK, status)
	n, err := e.orch.Sweep(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "within its timeout")

	_, err = e.pool.Exec(context.Background(), "UPDATE task_runs SET timeout_at = now() - interval '1 millisecond' WHERE id = $1", id)
	require.NoError(t, err)
	status, _ = w.heartbeat(d, nil, "")
	require.Equal(t, http.StatusOK, status)
	n, err = e.orch.Sweep(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n, "a heartbeat does not outlive the timeout")
	r := e.run(id)
	require.Equal(t, protocol.StatusFailed, r.Status)
	require.Equal(t, protocol.CodeTimeout, *r.ErrorCode)
	require.Contains(t, *r.Error, "timeout")
}

// Retries exhausted land exactly one DLQ entry with the input path, every attempt's error and
// the code version; a DLQ retry queues a new run at the task's current code version.
func TestRetriesExhaustedLandOneDLQEntryAndRetryUsesCurrentVersion(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testRetriesExhaustedLandOneDLQEntryAndRetryUsesCurrentVersion)
}

func testRetriesExhaustedLandOneDLQEntryAndRetryUsesCurrentVersion(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) {
		w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom " + string(rune('0'+d.Attempt)), ErrorCode: "BOOM"})
	}
	e.register("svc", "1", w.URL(), task("flaky", withRetries(2, 0)))
	id := e.enqueue(map[string]any{"taskId": "flaky", "input": "x"}).RunID
	e.waitMoved("three attempts", func() bool {
		e.process()
		return e.run(id).Status == protocol.StatusFailed
	})
	require.Equal(t, 3, w.count())
	r := e.run(id)
	require.Equal(t, 3, r.Attempt)
	require.Equal(t, "boom 3", *r.Error)
	require.Len(t, r.PreviousAttempts, 3)

	var page struct {
		Items []struct {
			ID          string             `json:"id"`
			TaskRunID   string             `json:"taskRunId"`
			TaskID      string             `json:"taskId"`
			InputPath   string             `json:"inputPath"`
			Error       string             `json:"error"`
			Attempts    int                `json:"attempts"`
			History     []protocol.Attempt `json:"attemptHistory"`
			CodeVersion int                `json:"codeVersion"`
			Input       json.RawMessage    `json:"input"`
		} `json:"items"`
	}
	e.do("GET", "/api/dlq", nil, "").json(t, &page)
	require.Len(t, page.Items, 1)
	entry := page.Items[0]
	require.Equal(t, id, entry.TaskRunID)
	require.Equal(t, "flaky", entry.TaskID)
	require.Equal(t, r.InputPath, entry.InputPath)
	require.JSONEq(t, `"x"`, string(entry.Input), "the entry shows its input, stored or inline")
	require.Equal(t, 1, entry.CodeVersion)
	require.Equal(t, 3, entry.Attempts)
	require.Len(t, entry.History, 3)
	for i, a := range entry.History {
		require.Equal(t, i+1, a.Attempt)
		require.Equal(t, "BOOM", a.ErrorCode)
	}
	// Sweeping and processing again changes nothing: still exactly one entry.
	e.process()
	e.do("GET", "/api/dlq", nil, "").json(t, &page)
	require.Len(t, page.Items, 1)

	// The worker ships new code; the retry runs at version 2 and succeeds.
	e.register("svc", "2", w.URL(), task("flaky", withRetries(2, 0), func(td *protocol.TaskDefinition) { td.CodeHash = "v2" }))
	w.mu.Lock()
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	w.mu.Unlock()
	resp := e.do("POST", "/api/dlq/"+entry.ID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var retried enqueued
	resp.json(t, &retried)
	require.NotEqual(t, id, retried.RunID)
	require.Equal(t, r.InputPath, retried.InputPath)
	rr := e.waitStatus(retried.RunID, protocol.StatusCompleted)
	// The retry runs with the same input, read the same way as the failed run's.
	var rd protocol.DispatchRequest
	for _, d := range w.all() {
		if d.RunID == retried.RunID {
			rd = d
		}
	}
	require.Equal(t, r.InputPath, rd.InputPath)
	if e.cfg.InlinePayloadMaxBytes > 0 {
		require.JSONEq(t, `"x"`, string(rd.Input))
	} else {
		require.Nil(t, rd.Input)
	}
	require.JSONEq(t, `"x"`, string(e.object(retried.InputPath).Content))
	require.Equal(t, 2, rr.CodeVersion)
	require.Equal(t, "v2", rr.CodeHash)

	// An entry is retried once; unknown entries are 404.
	again := e.do("POST", "/api/dlq/"+entry.ID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, again.Status)
	require.Equal(t, "ALREADY_RETRIED", again.errorBody(t).Code)
	missing := e.do("POST", "/api/dlq/dlq_nope/retry", nil, "")
	require.Equal(t, http.StatusNotFound, missing.Status)
	missing.errorBody(t)
}

// retryable: false fails the run at once, whatever attempts are left.
func TestNonRetryableFailureGoesStraightToFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) {
		w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "bad input", ErrorCode: "VALIDATION", Retryable: ptr(false)})
	}
	e.register("svc", "1", w.URL(), task("strict", withRetries(5, 0)))
	id := e.enqueue(map[string]any{"taskId": "strict"}).RunID
	r := e.waitStatus(id, protocol.StatusFailed)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, 1, w.count())
	require.Equal(t, "VALIDATION", *r.ErrorCode)
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM dlq WHERE task_run_id = $1", id).Scan(&n))
	require.Equal(t, 1, n)
}

// A failed dispatch (worker 500, or nobody listening) is a failed attempt with DISPATCH_FAILED;
// 429/503 is back-pressure: the run waits and keeps its attempt.
func TestDispatchFailureAndBackPressure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	answers := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusAccepted}
	w.answer = func(d protocol.DispatchRequest) int {
		a := answers[0]
		answers = answers[1:]
		return a
	}
	e.register("svc", "1", w.URL(), task("picky", withRetries(3, 0)))
	id := e.enqueue(map[string]any{"taskId": "picky"}).RunID
	e.waitFor("four dispatches", func() bool {
		e.process()
		return w.count() == 4
	})
	ds := w.all()
	require.Equal(t, []int{1, 1, 1, 2}, []int{ds[0].Attempt, ds[1].Attempt, ds[2].Attempt, ds[3].Attempt})
	r := e.waitStatus(id, protocol.StatusRunning)
	require.Equal(t, 2, r.Attempt)
	require.Len(t, r.PreviousAttempts, 1)
	require.Equal(t, protocol.CodeDispatchFailed, r.PreviousAttempts[0].ErrorCode)
	require.Contains(t, r.PreviousAttempts[0].Error, "500")

	// A worker that is gone: connection refused.
	e.register("gone", "1", "http://127.0.0.1:1", task("unreachable", withRetries(0, 0)))
	id2 := e.enqueue(map[string]any{"taskId": "unreachable"}).RunID
	r2 := e.waitStatus(id2, protocol.StatusFailed)
	require.Equal(t, protocol.CodeDispatchFailed, *r2.ErrorCode)
}

// The backoff formula, evaluated by the database: fixed, exponential, the cap, and ±20% jitter.
func TestRetryDelayFormula(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		backoff     string
		delay, cap  int64
		attempt     int
		base, limit float64
	}{
		{"fixed", 1000, 86400000, 1, 1000, 0},
		{"fixed", 1000, 86400000, 7, 1000, 0},
		{"exponential", 1000, 86400000, 1, 1000, 0},
		{"exponential", 1000, 86400000, 3, 4000, 0},
		{"exponential", 1000, 5000, 10, 5000, 5000},
		{"exponential", 1000, 86400000, 60, 86400000, 86400000},
		{"fixed", 0, 1000, 3, 0, 0},
	}
	for _, c := range cases {
		minSeen, maxSeen := int64(1<<62), int64(0)
		for range 200 {
			var d int64
			require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT retry_delay_ms($1, $2, $3, $4)", c.backoff, c.delay, c.cap, c.attempt).Scan(&d))
			minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
		}
		require.GreaterOrEqual(t, float64(minSeen), c.base*0.8, "%+v", c)
		require.LessOrEqual(t, float64(maxSeen), c.base*1.2, "%+v", c)
		if c.limit > 0 {
			require.LessOrEqual(t, float64(maxSeen), c.limit, "cap exceeded: %+v", c)
		}
		if c.base > 0 && c.limit == 0 {
			require.Less(t, minSeen, maxSeen, "no jitter: %+v", c)
		}
	}
}

// Lower priority numbers run first, then the oldest.
func TestClaimOrderIsPriorityThenAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("ordered", withConcurrency(1)))
	var want []string
	ids := map[int][]string{}
	for _, p := range []int{50, 10, 50, 10, 30} {
		r := newEnvOn(t, e.pool, func(c *core.Config) { c.Mode = core.ModeStandalone }).do("POST", "/api/queue/task", map[string]any{"taskId": "ordered", "priority": p}, "")
		require.Equal(t, http.StatusCreated, r.Status)
		var q enqueued
		r.json(t, &q)
		ids[p] = append(ids[p], q.RunID)
	}
	want = append(append(append(want, ids[10]...), ids[30]...), ids[50]...)
	// With concurrency 1 each callback frees the slot and dispatches the next run inline.
	var got []string
	e.process()
	for i := range want {
		w.waitDispatches(i + 1)
		d := w.all()[i]
		got = append(got, d.RunID)
		status, _ := w.callback(d, success(d))
		require.Equal(t, http.StatusOK, status)
	}
	require.Equal(t, want, got)
}

// pastDeadline moves the deadline of run id into the past, as if its worker had been silent for
// longer than it: the next sweep ends the attempt unless something pushes the deadline first.
func (e *env) pastDeadline(id string) {
	e.t.Helper()
	tag, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET deadline = now() - interval '1 millisecond' WHERE id = $1 AND deadline IS NOT NULL", id)
	require.NoError(e.t, err)
	require.EqualValues(e.t, 1, tag.RowsAffected(), "run %s has no deadline", id)
}

// A failed attempt's retry waits its backoff: available_at lies in the jittered window (±20%)
// of the task's delay, doubling per attempt under exponential backoff up to the cap
// (MAX_RETRY_DELAY_MS here, as the task sets none), and Process does not dispatch the run
// before then. The clock is moved on by moving available_at into the past. (Attempt 4's
// uncapped window lies wholly above the cap.)
func TestRetryWaitsItsBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.MaxRetryDelay = 200 * time.Second })
	w := newWorker(t, e.url)
	failed := make(chan int, 5)
	w.after = func(d protocol.DispatchRequest) {
		w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom", ErrorCode: "BOOM"})
		failed <- d.Attempt
	}
	e.register("svc", "1", w.URL(), task("flaky", func(td *protocol.TaskDefinition) {
		td.Retries, td.RetryDelayMs, td.RetryBackoff = ptr(4), ptr(int64(60000)), protocol.BackoffExponential
	}))
	id := e.enqueue(map[string]any{"taskId": "flaky"}).RunID
	// 60 s × 2^(attempt-1), capped at 200 s, each ±20% and never above the cap.
	windows := []struct{ lo, hi int }{{48000, 72000}, {96000, 144000}, {160000, 200000}, {160000, 200000}}
	for i, win := range windows {
		attempt := i + 1
		require.Equal(t, attempt, recv(t, failed, fmt.Sprintf("attempt %d to fail", attempt)))
		r := e.run(id)
		require.Equal(t, protocol.StatusPending, r.Status)
		require.Equal(t, attempt+1, r.Attempt)
		// fail_attempts stamps the failure and sets available_at with one now().
		delay := e.count(`SELECT (extract(epoch FROM available_at - (previous_attempts->-1->>'timestamp')::timestamptz) * 1000)::int
			FROM task_runs WHERE id = $1`, id)
		require.GreaterOrEqual(t, delay, win.lo, "attempt %d", attempt)
		require.LessOrEqual(t, delay, win.hi, "attempt %d", attempt)

		s := e.process()
		require.Zero(t, s.Claimed, "attempt %d's retry was claimed before its backoff ran out", attempt)
		require.Equal(t, attempt, w.count())
		_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET available_at = now() - interval '1 millisecond' WHERE id = $1", id)
		require.NoError(t, err)
		s = e.process()
		require.Equal(t, 1, s.Dispatched, "the retry is due")
	}
	require.Equal(t, 5, recv(t, failed, "the last attempt to fail"))
	require.Equal(t, protocol.StatusFailed, e.run(id).Status)
}
