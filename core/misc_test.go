package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// POST /api/process does one bounded batch and reports it.
func TestProcessEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.ProcessBatchSize = 3 })
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	e.enqueueManyQuiet("t", 5)
	var s struct {
		Swept      *int   `json:"swept"`
		Claimed    *int   `json:"claimed"`
		Dispatched *int   `json:"dispatched"`
		Failed     *int   `json:"failed"`
		DurationMs *int64 `json:"durationMs"`
	}
	r := e.do("POST", "/api/process", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r.json(t, &s)
	require.NotNil(t, s.Swept)
	require.NotNil(t, s.DurationMs)
	require.NotNil(t, s.Failed)
	require.Equal(t, 3, *s.Claimed, "bounded by the batch size")
	require.Equal(t, 3, *s.Dispatched)
	e.do("POST", "/api/process", nil, "").json(t, &s)
	require.Equal(t, 2, *s.Claimed)
	e.do("POST", "/api/process", nil, "").json(t, &s)
	require.Equal(t, 0, *s.Claimed)
	require.Equal(t, 5, w.count())
}

// A heartbeat for a run cancelled meanwhile answers shouldCancel.
func TestHeartbeatOfCancelledRunSaysCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	id := e.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(1)
	_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET status = 'cancelled' WHERE id = $1", id)
	require.NoError(t, err)
	status, hb := w.heartbeat(w.all()[0], nil, "")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.ShouldCancel)
	// Its late callback changes nothing.
	d := w.all()[0]
	cbStatus, body := w.callback(d, success(d))
	require.Equal(t, http.StatusOK, cbStatus, string(body))
	require.Equal(t, protocol.StatusCancelled, e.run(id).Status)
}

// PIPEWEAVE_COMPAT=node-sdk-v1: unauthenticated registration and worker calls are accepted and
// the storage token is the Node SDK 1.x format.
func TestCompatNodeSDKv1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Compat = core.CompatNodeSDKv1 })
	w := newWorker(t, e.url)
	r := e.do("POST", "/api/register", protocol.RegisterRequest{ServiceID: "node", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{task("t")}}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Contains(t, e.logs.String(), "node-sdk-v1")

	q := e.enqueue(map[string]any{"taskId": "t"})
	id := q.RunID
	w.waitDispatches(1)
	d := w.all()[0]
	// The Node SDK reads inputs and upstream outputs from storage: nothing is kept inline, and
	// the dispatch has no field upstream's schema lacks.
	require.True(t, e.inStorage(q.InputPath))
	require.NotContains(t, string(w.Bodies()[0]), `"input"`)
	require.NotContains(t, string(w.Bodies()[0]), `"outputInlineMax"`)
	plain, err := token.OpenCompat(testSecret, d.StorageToken)
	require.NoError(t, err)
	var backend map[string]any
	require.NoError(t, json.Unmarshal(plain, &backend))
	require.Equal(t, "local", backend["provider"])

	status, body, err := post(e.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: id, Progress: ptr(50)}, "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	// The Node SDK sends whatever number the task reports: a fraction is recorded rounded, a
	// number outside 0..100 is refused and changes nothing.
	status, body, err = post(e.url+"/api/progress", map[string]any{"runId": id, "progress": 40.5, "message": "p"}, "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, 41, *e.run(id).Progress)
	for _, bad := range []float64{100.5, -0.1} {
		status, body, err = post(e.url+"/api/progress", map[string]any{"runId": id, "progress": bad}, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, status, string(body))
		require.Contains(t, string(body), "INVALID_PROGRESS")
	}
	require.Equal(t, 41, *e.run(id).Progress)
	status, body, err = post(e.url+"/api/callback/"+id, success(d), "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, protocol.StatusCompleted, e.run(id).Status)
	// A token, when sent, is still checked.
	status, _, err = post(e.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: id}, "garbage")
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)
}

// Purge deletes DLQ entries and finished runs past retention and expired idempotency keys,
// and nothing younger or still live.
func TestPurgePastRetention(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.DLQRetention = 30 * 24 * time.Hour })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) {
		w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "no", Retryable: ptr(false)})
	}
	e.register("svc", "1", w.URL(), task("t"))
	var failed []string
	for i := range 4 {
		failed = append(failed, e.enqueue(map[string]any{"taskId": "t", "idempotencyKey": string(rune('a' + i))}).RunID)
	}
	for _, id := range failed {
		e.waitStatus(id, protocol.StatusFailed)
	}
	// Two runs that stay pending: delayed, so that no claim takes them (a callback's inline
	// claim may still be running when they are enqueued).
	var pending []string
	for range 2 {
		pending = append(pending, e.enqueue(map[string]any{"taskId": "t", "delayMs": 3_600_000}).RunID)
	}
	ctx := context.Background()
	// Age half of everything past retention.
	old := failed[:2]
	_, err := e.pool.Exec(ctx, "UPDATE task_runs SET completed_at = now() - interval '31 days' WHERE id = ANY($1)", old)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, "UPDATE dlq SET failed_at = now() - interval '31 days' WHERE task_run_id = ANY($1)", old)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE run_id = ANY($1)", old)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, "UPDATE task_runs SET created_at = now() - interval '60 days' WHERE id = ANY($1)", pending)
	require.NoError(t, err)

	s, err := e.orch.Purge(ctx, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 2, s.DLQ)
	require.EqualValues(t, 2, s.Runs)
	require.EqualValues(t, 2, s.IdempotencyKeys)
	for _, id := range old {
		require.Equal(t, http.StatusNotFound, e.do("GET", "/api/task-runs/"+id, nil, "").Status)
	}
	for _, id := range append(failed[2:], pending...) {
		require.Equal(t, http.StatusOK, e.do("GET", "/api/task-runs/"+id, nil, "").Status)
	}
	var st map[string]any
	e.do("GET", "/api/queue/status", nil, "").json(t, &st)
	require.EqualValues(t, 2, st["failed"], "the counters follow deletions")
	require.EqualValues(t, 2, st["dlq"])
	require.EqualValues(t, 2, st["pending"])
	// The sweep folds the count deltas; the totals stay the same.
	_, err = e.orch.Sweep(ctx)
	require.NoError(t, err)
	var deltas int
	require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM run_status_deltas").Scan(&deltas))
	require.Zero(t, deltas)
	e.do("GET", "/api/queue/status", nil, "").json(t, &st)
	require.EqualValues(t, 2, st["failed"])
	// Nothing left to purge.
	s, err = e.orch.Purge(ctx, time.Minute)
	require.NoError(t, err)
	require.Zero(t, s.DLQ+s.Runs+s.IdempotencyKeys+s.PipelineRuns)
}

// One /api/process claims up to PROCESS_BATCH_SIZE runs in several claims, and stops early at
// the time budget.
func TestProcessClaimsUpToTheBatchSizeInChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.ProcessBatchSize = 450; c.ProcessTimeBudget = time.Minute })
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	e.enqueueManyQuiet("t", 500)
	s := e.process()
	require.Equal(t, 450, s.Claimed)
	require.Equal(t, 450, s.Dispatched)
	s = e.process()
	require.Equal(t, 50, s.Claimed)

	tight := newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 10000; c.ProcessTimeBudget = time.Nanosecond })
	tight.enqueueManyQuiet("t", 500)
	s, err := tight.orch.Process(context.Background())
	require.NoError(t, err)
	require.Less(t, s.Claimed, 500, "the budget stops claiming")
}

// PROCESS_TIME_BUDGET_MS ends a batch part-way: the worker answers each dispatch only once the
// budget has passed since the first dispatch arrived, so the first claim is dispatched and no
// further claim starts. The runs not claimed stay pending for the next batch.
func TestProcessBudgetRunsOutPartWay(t *testing.T) {
	t.Parallel()
	// Generous, so that the sweep before the first claim fits in it however loaded the machine.
	const budget = 2 * time.Second
	e := newEnv(t, func(c *core.Config) {
		c.ProcessBatchSize, c.ProcessTimeBudget, c.DispatchTimeout = 10000, budget, time.Minute
	})
	w := newWorker(t, e.url)
	var once sync.Once
	var firstArrival time.Time
	w.answer = func(protocol.DispatchRequest) int {
		once.Do(func() { firstArrival = time.Now() })
		time.Sleep(time.Until(firstArrival.Add(budget)))
		return http.StatusAccepted
	}
	e.register("svc", "1", w.URL(), task("t"))
	const queued = 450
	e.enqueueManyQuiet("t", queued)
	s := e.process()
	require.Positive(t, s.Claimed, "the first claim starts within the budget")
	require.Less(t, s.Claimed, queued, "the budget stops claiming")
	require.Equal(t, s.Claimed, s.Dispatched)
	require.Equal(t, s.Claimed, w.count())
	require.Equal(t, queued-s.Claimed, e.count("SELECT count(*) FROM task_runs WHERE status = 'pending'"))
}
