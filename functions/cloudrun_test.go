package functions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

type processSummary struct {
	Swept      int   `json:"swept"`
	Claimed    int   `json:"claimed"`
	Dispatched int   `json:"dispatched"`
	Failed     int   `json:"failed"`
	DurationMs int64 `json:"durationMs"`
}

type sweepSummary struct {
	Swept      int    `json:"swept"`
	DurationMs *int64 `json:"durationMs"`
}

type purgeSummary struct {
	DLQ             int64  `json:"dlq"`
	IdempotencyKeys int64  `json:"idempotencyKeys"`
	Runs            int64  `json:"runs"`
	PipelineRuns    int64  `json:"pipelineRuns"`
	DurationMs      *int64 `json:"durationMs"`
}

// processBatch is PROCESS_BATCH_SIZE of the process functions of the Cloud Run test.
const processBatch = 50

// callProcess is one scheduler tick on a process function.
func callProcess(t *testing.T, url string) processSummary {
	t.Helper()
	var s processSummary
	doJSON(t, "POST", url+"/", nil, http.StatusOK, &s)
	require.LessOrEqual(t, s.Claimed, processBatch, "one invocation claims at most PROCESS_BATCH_SIZE")
	require.GreaterOrEqual(t, s.Claimed, s.Dispatched+s.Failed, "the rest were deferred by the busy worker: %+v", s)
	return s
}

// TestCloudRunFunctionsDriveAPipeline runs the four functions as Cloud Run style servers (the
// built binaries on free ports, against one database) and drives work through them with a test
// scheduler: a pipeline and standalone tasks whose worker is busy at first (so only the process
// function gets them dispatched), a burst processed by two process instances at once, a silent
// task that the heartbeat sweep fails into the DLQ, and the purge of what is past retention.
func TestCloudRunFunctionsDriveAPipeline(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	dbURL := testdb.NewURL(t)
	pool := openPool(t, dbURL)
	env := with(functionEnv(t, dbURL), "MAX_CONCURRENCY", "100", "PROCESS_BATCH_SIZE", fmt.Sprint(processBatch))

	api := serveHTTP(t, "api", bins["api"], env)
	processes := []string{serveHTTP(t, "process-1", bins["process"], env), serveHTTP(t, "process-2", bins["process"], env)}
	sweeper := serveHTTP(t, "heartbeat-sweep", bins["heartbeat-sweep"], env)
	purger := serveHTTP(t, "dlq-purge", bins["dlq-purge"], env)

	var health map[string]any
	doJSON(t, "GET", api+"/health", nil, http.StatusOK, &health)
	require.Equal(t, "serverless", health["mode"], "MODE defaults to serverless")

	w := newWorker(t, api)
	w.set(w.busy, "a", "b", "c", "d", "solo")
	w.set(w.silent, "silent")
	hb, zero := int64(200), 0
	register(t, api, protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{
			{ID: "a", CodeHash: "a", AllowedNext: []string{"b", "c"}},
			{ID: "b", CodeHash: "b", AllowedNext: []string{"d"}},
			{ID: "c", CodeHash: "c", AllowedNext: []string{"d"}},
			{ID: "d", CodeHash: "d"},
			{ID: "solo", CodeHash: "solo"},
			{ID: "burst", CodeHash: "burst"},
			{ID: "silent", CodeHash: "silent", HeartbeatIntervalMs: &hb, Retries: &zero},
		},
		Pipelines: []protocol.PipelineDefinition{{ID: "diamond", EntryTasks: []string{"a"}}}})

	countStatus := func(ids []string, status string) int {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(),
			"SELECT count(*) FROM task_runs WHERE id = ANY($1) AND status = $2", ids, status).Scan(&n))
		return n
	}

	// A pipeline and five standalone tasks through the API. The worker is busy (503) the first
	// time each run is dispatched, so the inline dispatch of the API only defers them: the
	// scheduler's process calls carry them on.
	var trig struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	doJSON(t, "POST", api+"/api/pipelines/diamond/trigger", map[string]any{"input": map[string]string{"doc": "x.pdf"}}, http.StatusCreated, &trig)
	solos := enqueueBatch(t, api, "solo", 5, 0)

	var processed processSummary
	tick := func(t *testing.T) {
		for _, p := range processes {
			s := callProcess(t, p)
			processed.Claimed += s.Claimed
			processed.Dispatched += s.Dispatched
		}
		var sw sweepSummary
		doJSON(t, "POST", sweeper+"/", nil, http.StatusOK, &sw)
		require.NotNil(t, sw.DurationMs)
		var pu purgeSummary
		doJSON(t, "POST", purger+"/", nil, http.StatusOK, &pu)
		require.Equal(t, purgeSummary{DurationMs: pu.DurationMs}, pu, "nothing is past retention yet")
	}
	pipelineStatus := func() string {
		var pr struct {
			Status string `json:"status"`
		}
		doJSON(t, "GET", api+"/api/runs/"+trig.PipelineRunID, nil, http.StatusOK, &pr)
		return pr.Status
	}
	deadline := time.Now().Add(60 * time.Second)
	for pipelineStatus() != "completed" || countStatus(solos, "completed") < len(solos) {
		require.True(t, time.Now().Before(deadline), "the pipeline did not complete; process did %+v", processed)
		tick(t)
		time.Sleep(100 * time.Millisecond)
	}
	require.Positive(t, processed.Dispatched, "the busy worker's runs were dispatched by the process function")
	d := w.dispatchesOf("d")
	require.Len(t, d, 1, "the join ran once")
	require.ElementsMatch(t, []string{"b", "c"}, keys(d[0].UpstreamRefs))

	// A burst that two process instances take on at once: 300 runs that become ready together
	// (delayMs keeps the API from dispatching them inline). No run may be dispatched twice.
	burst := enqueueBatch(t, api, "burst", 300, 1000)
	var mu sync.Mutex
	perInstance := make([]int, len(processes))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, p := range processes {
		for range 2 { // two concurrent invocations per instance, too
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					status, raw, err := post(p + "/")
					var s processSummary
					if err != nil || status != http.StatusOK || json.Unmarshal(raw, &s) != nil || s.Claimed > processBatch {
						t.Errorf("process: %d %s %v", status, raw, err)
						return
					}
					mu.Lock()
					perInstance[i] += s.Dispatched
					mu.Unlock()
				}
			}()
		}
	}
	deadline = time.Now().Add(60 * time.Second)
	for countStatus(burst, "completed") < len(burst) && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	require.Equal(t, len(burst), countStatus(burst, "completed"), "the burst completed")
	mu.Lock()
	require.GreaterOrEqual(t, perInstance[0]+perInstance[1], processBatch,
		"the first claim of the ready burst is a process invocation's (by instance: %v)", perInstance)
	mu.Unlock()
	w.requireEachRunAcceptedOnce(t, append(burst, solos...), 2)
	w.mu.Lock()
	for _, id := range burst {
		require.Equal(t, 1, w.requests[id], "burst run %s was dispatched %d times", id, w.requests[id])
	}
	w.mu.Unlock()

	// A task whose worker goes silent: no heartbeat within 2 × 200 ms, so the heartbeat sweep
	// fails it (no retries) into the DLQ. Nothing else sweeps meanwhile.
	silent := enqueueBatch(t, api, "silent", 1, 0)[0]
	require.Eventually(t, func() bool { return len(w.dispatchesOf("silent")) == 1 }, 30*time.Second, 10*time.Millisecond)
	swept := 0
	deadline = time.Now().Add(30 * time.Second)
	for swept == 0 {
		require.True(t, time.Now().Before(deadline), "the sweep never ended the silent run")
		var sw sweepSummary
		doJSON(t, "POST", sweeper+"/", nil, http.StatusOK, &sw)
		swept += sw.Swept
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 1, swept)
	require.Equal(t, 1, countStatus([]string{silent}, "failed"))
	var inDLQ int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM dlq WHERE task_run_id = $1", silent).Scan(&inDLQ))
	require.Equal(t, 1, inDLQ)

	// Retention: age the DLQ entry, the failed run and the pipeline run past DLQ_RETENTION_DAYS
	// (30) and add an expired idempotency key; one purge deletes exactly those.
	ctx := context.Background()
	_, err := pool.Exec(ctx, "UPDATE dlq SET failed_at = now() - interval '31 days' WHERE task_run_id = $1", silent)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "UPDATE task_runs SET completed_at = now() - interval '31 days' WHERE id = $1", silent)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "UPDATE pipeline_runs SET completed_at = now() - interval '31 days' WHERE id = $1", trig.PipelineRunID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO idempotency_keys (task_id, key, run_id, expires_at) VALUES ('solo', 'k', $1, now() - interval '1 minute')", solos[0])
	require.NoError(t, err)
	var pu purgeSummary
	doJSON(t, "POST", purger+"/", nil, http.StatusOK, &pu)
	require.NotNil(t, pu.DurationMs)
	require.Equal(t, purgeSummary{DLQ: 1, IdempotencyKeys: 1, Runs: 1, PipelineRuns: 1, DurationMs: pu.DurationMs}, pu)
	var left int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM dlq) + (SELECT count(*) FROM idempotency_keys)
		+ (SELECT count(*) FROM task_runs WHERE id = $1 OR pipeline_run_id = $2)
		+ (SELECT count(*) FROM pipeline_runs WHERE id = $2)`, silent, trig.PipelineRunID).Scan(&left))
	require.Zero(t, left)
	require.Equal(t, len(burst)+len(solos), countStatus(append(burst, solos...), "completed"), "live history is kept")
}

// TestCloudRunFunctionsWhileTheDatabaseRefusesConnections starts the api and process functions
// on a port where nothing listens: they start, and answer 503 until PostgreSQL is back.
func TestCloudRunFunctionsWhileTheDatabaseRefusesConnections(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	env := functionEnv(t, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?sslmode=disable&connect_timeout=5", testutil.FreePort(t)))
	api := serveHTTP(t, "api", bins["api"], env)
	process := serveHTTP(t, "process", bins["process"], env)

	status, _, raw := do(t, "GET", api+"/health", nil, "")
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", raw)
	require.JSONEq(t, `{"status":"unavailable","database":"unreachable","mode":"serverless"}`, string(raw))
	status, hdr, raw := do(t, "POST", api+"/api/queue/task", map[string]any{"taskId": "t", "input": map[string]int{"n": 1}}, "")
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", raw)
	require.Equal(t, "5", hdr.Get("Retry-After"))
	requireCode(t, raw, "DATABASE_UNAVAILABLE")

	status, hdr, raw = do(t, "POST", process+"/", nil, "")
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", raw)
	require.Equal(t, "5", hdr.Get("Retry-After"))
	requireCode(t, raw, "DATABASE_UNAVAILABLE")
	status, _, _ = do(t, "GET", process+"/health", nil, "")
	require.Equal(t, http.StatusServiceUnavailable, status)
}

func requireCode(t *testing.T, raw []byte, code string) {
	t.Helper()
	var b protocol.ErrorBody
	require.NoError(t, json.Unmarshal(raw, &b), "%s", raw)
	require.Equal(t, code, b.Code, "%s", raw)
	require.NotEmpty(t, b.Error)
}

// enqueueBatch queues n runs of task through the API's batch endpoint and returns their ids.
func enqueueBatch(t *testing.T, api, task string, n int, delayMs int) []string {
	t.Helper()
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"taskId": task, "input": map[string]int{"i": i}, "delayMs": delayMs}
	}
	var out struct {
		Results []struct {
			RunID string `json:"runId"`
		} `json:"results"`
	}
	doJSON(t, "POST", api+"/api/queue/batch", map[string]any{"tasks": tasks}, http.StatusCreated, &out)
	require.Len(t, out.Results, n)
	ids := make([]string, n)
	for i, r := range out.Results {
		ids[i] = r.RunID
	}
	return ids
}

// post sends an empty POST, for goroutines that must not stop the test.
func post(url string) (int, []byte, error) {
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
