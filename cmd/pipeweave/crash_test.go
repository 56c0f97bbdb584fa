package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
	"github.com/pipeweave/pipeweave/worker"
)

// Issue 15's "a 1,000-item map completes with every item once under concurrent callbacks and an
// orchestrator restart midway", with a real crash: the orchestrator is `pipeweave serve` in a
// process of its own (this test binary run as the command, so under -race it is race-checked
// too), and it is killed with SIGKILL while callbacks and dispatches are in flight.
//
// The worker (the Go SDK, one goroutine per attempt, ocr's concurrency 64) reaches the
// orchestrator through a TCP proxy, the load balancer of a deployment, so that its URL stays the
// same across the crash. When 300 callbacks have been answered the proxy stops relaying the
// orchestrator's answers (the callbacks after that commit, but their answers never arrive) and
// the worker stops taking the next dispatch requests until 8 dispatches are held (a batch
// request's all count; in flight at the crash, they never reach it);
// once at least 3 callbacks sent since have committed unanswered and 2 dispatches are held, the
// process is killed. The proxy then drops every connection (the worker's calls in flight fail with connection
// errors; the SDK retries them), a new process starts on the same database, and the proxy sends
// everything to it.
//
// What the architecture promises, and the test checks (docs/architecture.md, Fencing, Sweep;
// docs/dynamic-pipelines.md): every item completes exactly once (one completed row per
// item_index, the map row counted down to 0, merge gets the 1,000 outputs in order, no DLQ
// entry); no (run, attempt) and no (run, lease) is dispatched twice; an item is dispatched again
// only as a new attempt, and only if the crash interrupted it (in flight at the crash: its
// earlier attempt ended by the sweep, DISPATCH_FAILED for an expired dispatch lease or TIMEOUT
// for a missed heartbeat); a dispatch the crash lost comes back as a new attempt; a callback
// committed before the crash whose answer was lost is answered again by the new instance as a
// duplicate (200, applied false); every other item is dispatched once, in the attempt it had at
// the crash; and at most one callback of an item is applied. Neither process reports a data race.
func TestMapNodeSurvivesOrchestratorCrash(t *testing.T) {
	t.Parallel()
	const n = 1_000
	const ocrConcurrency = 64
	ctx := context.Background()
	url := testdb.NewURL(t)
	pool := crashTestPool(t, url)

	w := &crashWorld{killed: make(chan struct{}), callbacks: map[string][]callbackOutcome{}}
	proxy := startTCPProxy(t)
	w.proxy = proxy

	env := serveEnv(t, url, 0)
	for k, v := range map[string]string{
		"PIPEWEAVE_TEST_RUN_MAIN": "1", // this test binary runs as `pipeweave` (help_test.go)
		"MAX_CONCURRENCY":         "100",
		"POLL_INTERVAL_MS":        "200",  // the standalone loop sweeps at most once per poll
		"DISPATCH_TIMEOUT_MS":     "3000", // an unanswered dispatch's lease: 3 s + 10 s
	} {
		env[k] = v
	}
	serve := func() (*proc, int) {
		port := testutil.FreePort(t)
		env["PORT"] = strconv.Itoa(port)
		p := startBin(t, os.Args[0], env, "serve")
		p.waitHealthy(t, port)
		return p, port
	}
	first, firstPort := serve()
	var second *proc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr of the killed orchestrator:\n%s", tail(first.stderr.String(), 8000))
			if second != nil {
				t.Logf("stderr of the new orchestrator:\n%s", tail(second.stderr.String(), 8000))
			}
		}
	})
	proxy.setTarget(fmt.Sprintf("127.0.0.1:%d", firstPort))

	// The worker, served over HTTP, its calls through the proxy.
	srv := httptest.NewUnstartedServer(nil)
	logs := &testutil.SyncBuffer{}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 2 * ocrConcurrency
	sdk, err := worker.New(worker.Config{
		OrchestratorURL: proxy.url, ServiceID: "pages", Version: "1",
		ServiceKey: testorch.ServiceKey(t, env["PIPEWEAVE_SECRET_KEY"], "pages"),
		BaseURL:    "http://" + srv.Listener.Addr().String(), TempDir: t.TempDir(),
		HTTPClient: &http.Client{Timeout: time.Minute, Transport: &callbackTap{base: transport, w: w}},
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
		Pipelines: []protocol.PipelineDefinition{{ID: "pages", EntryTasks: []string{"split"},
			Nodes: map[string]protocol.NodeConfig{"ocr": {Map: &protocol.MapConfig{Over: "split", Items: "/pages"}}}}},
	})
	require.NoError(t, err)
	require.NoError(t, sdk.Register("split", worker.Options{AllowedNext: []string{"ocr"}}, func(*worker.Context) (any, error) {
		pages := make([]map[string]int, n)
		for i := range pages {
			pages[i] = map[string]int{"n": i}
		}
		return map[string]any{"pages": pages}, nil
	}))
	require.NoError(t, sdk.Register("ocr", worker.Options{AllowedNext: []string{"merge"}, Concurrency: ocrConcurrency,
		HeartbeatInterval: 2 * time.Second, RetryDelay: -1}, func(c *worker.Context) (any, error) {
		var in struct {
			N int `json:"n"`
		}
		if err := c.Decode(&in); err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(in.N%4) * time.Millisecond) // spread the callbacks
		return map[string]string{"text": fmt.Sprintf("page-%d", in.N)}, nil
	}))
	var merged atomic.Pointer[[]string]
	require.NoError(t, sdk.Register("merge", worker.Options{}, func(c *worker.Context) (any, error) {
		outs, err := worker.MapOutputs[struct {
			Text string `json:"text"`
		}](c, "ocr")
		if err != nil {
			return nil, err
		}
		texts := make([]string, len(outs))
		for i, o := range outs {
			if o != nil {
				texts[i] = o.Text
			}
		}
		merged.Store(&texts)
		return map[string]int{"pages": len(texts)}, nil
	}))
	srv.Config.Handler = w.holdDispatches(sdk.Handler())
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("worker logs:\n%s", tail(logs.String(), 8000))
		}
	})
	t.Cleanup(sdk.Wait) // before the server closes (cleanups run last first)
	t.Cleanup(func() {  // first of all: a test that fails before the crash releases what it held
		w.kill()
		proxy.drop()
	})
	_, err = sdk.RegisterWithOrchestrator(ctx)
	require.NoError(t, err)

	// The run; the crash once 300 callbacks were answered.
	w.freezeAt.Store(300 + 1) // split's callback and 300 items
	triggered := time.Now()
	runID := triggerPages(t, fmt.Sprintf("http://127.0.0.1:%d", firstPort))
	var held, committed int
	var inflight []string
	waitFor(t, 2*time.Minute, "the freeze after 300 answered callbacks, then 3 callbacks committed unanswered and 2 dispatches held", func() bool {
		if !w.isFrozen() {
			return false
		}
		held, inflight = w.heldAndInFlight()
		committed = 0
		if held < 2 || len(inflight) < 3 {
			return false
		}
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM task_runs WHERE id = ANY($1) AND status = 'completed'`, inflight).Scan(&committed))
		return committed >= 3
	}, func() string {
		return fmt.Sprintf("answered %d, frozen %v, held %d, callbacks in flight %d, of them committed %d", w.answered.Load(), w.isFrozen(), held, len(inflight), committed)
	})
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	<-first.done
	killedAt := time.Now()
	answeredAtCrash := w.answered.Load() - 1 // split's
	// The connections to the dead process go with it: nothing the proxy held is delivered, and
	// the dispatches the worker held are dropped.
	proxy.drop()
	w.kill()
	// Wait until PostgreSQL has ended the dead process's sessions (their transactions are
	// then committed or rolled back for good), and read what the crash left.
	waitFor(t, time.Minute, "the killed orchestrator's sessions end", func() bool {
		var left int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pipeweave'`).Scan(&left))
		return left == 0
	}, nil)
	atCrash := readItems(t, pool, runID)
	second, secondPort := serve()
	proxy.setTarget(fmt.Sprintf("127.0.0.1:%d", secondPort))
	restart := time.Since(killedAt)

	waitFor(t, 2*time.Minute, "the run ends", func() bool {
		var status string
		require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM pipeline_runs WHERE id = $1`, runID).Scan(&status))
		return status != "running"
	}, nil)
	ended := time.Now()
	sdk.Wait()
	end := readItems(t, pool, runID)

	// The run, the map row, the items.
	var runStatus, mapStatus string
	var total, left *int
	require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM pipeline_runs WHERE id = $1`, runID).Scan(&runStatus))
	require.Equal(t, "completed", runStatus)
	require.NoError(t, pool.QueryRow(ctx, `SELECT status, items_total, items_left FROM task_runs
		WHERE pipeline_run_id = $1 AND task_id = 'ocr' AND item_index IS NULL`, runID).Scan(&mapStatus, &total, &left))
	require.Equal(t, "completed", mapStatus)
	require.Equal(t, n, *total)
	require.Zero(t, *left)
	require.Len(t, end, n, "one row per item (none superseded)")
	indexes := map[int]bool{}
	for _, it := range end {
		require.Equal(t, "completed", it.status, "item %d", it.index)
		indexes[it.index] = true
	}
	require.Len(t, indexes, n, "every item_index once")
	var dlq int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id WHERE tr.pipeline_run_id = $1`, runID).Scan(&dlq))
	require.Zero(t, dlq)

	// merge ran once, on the 1,000 outputs in index order.
	texts := merged.Load()
	require.NotNil(t, texts, "merge ran")
	require.Len(t, *texts, n)
	for i, s := range *texts {
		require.Equal(t, fmt.Sprintf("page-%d", i), s)
	}

	// The dispatches the worker received (held ones included): no (run, attempt) or (run,
	// lease) twice; merge once.
	dispatches, heldDispatches := w.dispatchLog()
	perRun := map[string][]dispatched{}
	seenAttempt := map[[2]string]bool{}
	seenLease := map[[2]string]bool{}
	for _, d := range dispatches {
		ka := [2]string{d.runID, strconv.Itoa(d.attempt)}
		kl := [2]string{d.runID, strconv.FormatInt(d.lease, 10)}
		require.False(t, seenAttempt[ka], "run %s attempt %d dispatched twice", d.runID, d.attempt)
		require.False(t, seenLease[kl], "run %s lease %d dispatched twice", d.runID, d.lease)
		seenAttempt[ka], seenLease[kl] = true, true
		perRun[d.runID] = append(perRun[d.runID], d)
	}
	var merges int
	for _, d := range dispatches {
		if d.taskID == "merge" {
			merges++
		}
	}
	require.Equal(t, 1, merges, "merge is dispatched once")

	// Re-dispatches: only of items the crash interrupted, only as new attempts after the sweep.
	inFlight, redispatched, resumed := 0, 0, 0
	for id, it := range end {
		before, ok := atCrash[id]
		require.True(t, ok, "item %d existed at the crash (the fan-out was over)", it.index)
		ds := perRun[id]
		require.NotEmpty(t, ds, "item %d was dispatched", it.index)
		require.Equal(t, it.attempt, ds[len(ds)-1].attempt, "item %d: the attempt that completed is the last dispatched", it.index)
		require.Len(t, it.previous, it.attempt-1, "item %d: its earlier attempts", it.index)
		for _, a := range it.previous {
			require.Contains(t, []string{protocol.CodeDispatchFailed, protocol.CodeTimeout}, a.ErrorCode,
				"item %d: attempt %d ended by the orchestrator (%s)", it.index, a.Attempt, a.Error)
		}
		if before.status == "dispatching" || before.status == "running" {
			inFlight++
			if it.attempt > before.attempt {
				redispatched++
			} else {
				resumed++
			}
			continue
		}
		// Completed at the crash: that attempt is the last, dispatched once. Pending at the
		// crash: that attempt completed, dispatched once, unless a dispatch of it failed after
		// the restart (the worker slower than DISPATCH_TIMEOUT_MS on a machine loaded by the
		// whole suite: seen once in scripts/test), which the orchestrator ended as
		// DISPATCH_FAILED (checked above) and retried as the next attempt, each attempt
		// dispatched once.
		if before.status == "completed" {
			require.Equal(t, before.attempt, it.attempt, "item %d (completed at the crash) completed in that attempt", it.index)
		} else {
			require.GreaterOrEqual(t, it.attempt, before.attempt, "item %d (%s at the crash)", it.index, before.status)
			for _, a := range it.previous[before.attempt-1:] {
				require.Equal(t, protocol.CodeDispatchFailed, a.ErrorCode, "item %d (%s at the crash): attempt %d", it.index, before.status, a.Attempt)
			}
		}
		since := 0
		for _, d := range ds {
			if d.attempt >= before.attempt {
				since++
			}
		}
		require.Equal(t, it.attempt-before.attempt+1, since, "item %d (%s at the crash) dispatched once per attempt", it.index, before.status)
	}
	require.LessOrEqual(t, inFlight, ocrConcurrency, "in flight at the crash")
	require.GreaterOrEqual(t, len(heldDispatches), 2)
	for _, h := range heldDispatches {
		it := end[h.runID]
		require.Greater(t, it.attempt, h.attempt, "item %d: the dispatch the crash lost came back as a new attempt", it.index)
		require.Equal(t, protocol.CodeDispatchFailed, it.previous[h.attempt-1].ErrorCode, "item %d", it.index)
	}

	// The callbacks: at most one applied per item; an item none of whose callbacks was applied
	// was completed by the dead instance (its answer lost), and the new one said duplicate.
	outcomes := w.callbackLog()
	lostAnswers := 0
	for id, it := range end {
		var applied, dup int
		var connErr bool
		for _, o := range outcomes[id] {
			switch {
			case o.err != "":
				connErr = true
			case o.status == http.StatusOK && o.applied:
				applied++
			case o.status == http.StatusOK:
				dup++
			}
		}
		require.LessOrEqual(t, applied, 1, "item %d: callbacks applied %v", it.index, outcomes[id])
		if applied == 0 {
			require.Equal(t, "completed", atCrash[id].status, "item %d: no callback applied, so the dead instance completed it: %v", it.index, outcomes[id])
			require.True(t, connErr, "item %d: %v", it.index, outcomes[id])
			if dup > 0 {
				lostAnswers++
			}
		}
	}
	require.GreaterOrEqual(t, lostAnswers, committed, "callbacks committed before the crash, their answers lost, answered as duplicates after it")

	// Both processes were race-free (under -race the test binary is race-checked); the new one
	// stops cleanly.
	require.Equal(t, 0, second.terminate(t), "stderr:\n%s", tail(second.stderr.String(), 8000))
	for _, p := range []*proc{first, second} {
		require.NotContains(t, p.stderr.String(), "DATA RACE")
	}
	t.Logf("crash %s after the trigger, %d callbacks answered: %d items in flight (%d held dispatches among them), of which %d were dispatched again as new attempts and %d completed in the attempt of the crash; %d callbacks committed unanswered and answered again as duplicates; new instance serving %s after the kill; the run completed %s after it",
		killedAt.Sub(triggered).Round(time.Millisecond), answeredAtCrash, inFlight, len(heldDispatches), redispatched, resumed, lostAnswers, restart.Round(time.Millisecond), ended.Sub(killedAt).Round(time.Millisecond))
}

// crashTestPool is a pool on the test's database whose sessions are told apart from the
// orchestrator's (application_name "pipeweave").
func crashTestPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = "pipeweave-crash-test"
	cfg.ConnConfig.RuntimeParams["search_path"] = migrate.Schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// triggerPages triggers pipeline pages at base and returns the pipeline run's id.
func triggerPages(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/pipelines/pages/trigger", "application/json", strings.NewReader(`{"input":{"doc":"x"}}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var out struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	return out.PipelineRunID
}

// waitFor polls cond until it holds, failing the test after limit (a bound for a stuck run, not
// a timing assertion) with what state says, if not nil.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			if state != nil {
				what += ": " + state()
			}
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// item is an ocr item's row.
type item struct {
	index, attempt int
	status         string
	previous       []protocol.Attempt
}

// readItems reads the ocr items of pipeline run id, by task run id.
func readItems(t *testing.T, pool *pgxpool.Pool, id string) map[string]item {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, item_index, attempt, status, previous_attempts FROM task_runs
		WHERE pipeline_run_id = $1 AND task_id = 'ocr' AND item_index IS NOT NULL`, id)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]item{}
	for rows.Next() {
		var runID string
		var it item
		var prev []byte
		require.NoError(t, rows.Scan(&runID, &it.index, &it.attempt, &it.status, &prev))
		require.NoError(t, json.Unmarshal(prev, &it.previous))
		out[runID] = it
	}
	require.NoError(t, rows.Err())
	return out
}

// crashWorld is what the worker's side saw: the dispatches it received, the callbacks' outcomes,
// and the switch that freezes both before the crash.
type crashWorld struct {
	proxy *tcpProxy
	// freezeAt is the count of answered callbacks at which the freeze starts.
	freezeAt atomic.Int64
	answered atomic.Int64
	killed   chan struct{} // closed once the orchestrator was killed
	killOnce sync.Once

	mu         sync.Mutex
	frozen     bool
	dispatches []dispatched
	held       []dispatched
	// inflight counts, by run id, the callbacks sent since the freeze and not answered (their
	// answers cannot have left the proxy before the freeze).
	inflight  map[string]int
	callbacks map[string][]callbackOutcome
}

// dispatched is one dispatch the worker received.
type dispatched struct {
	runID, taskID string
	attempt       int
	lease         int64
}

// callbackOutcome is how one callback request ended: an error (no answer), or an answer.
type callbackOutcome struct {
	err     string
	status  int
	applied bool
}

// kill says the orchestrator was killed: the held dispatches are dropped, and the worker takes
// dispatches again.
func (w *crashWorld) kill() {
	w.killOnce.Do(func() {
		w.mu.Lock()
		w.frozen = false
		w.mu.Unlock()
		close(w.killed)
	})
}

func (w *crashWorld) isFrozen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frozen
}

// heldAndInFlight returns how many dispatches are held and the runs whose callbacks are in flight.
func (w *crashWorld) heldAndInFlight() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.inflight))
	for id := range w.inflight {
		ids = append(ids, id)
	}
	return len(w.held), ids
}

func (w *crashWorld) dispatchLog() (all, held []dispatched) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.dispatches), slices.Clone(w.held)
}

func (w *crashWorld) callbackLog() map[string][]callbackOutcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]callbackOutcome, len(w.callbacks))
	for k, v := range w.callbacks {
		out[k] = slices.Clone(v)
	}
	return out
}

// maxHeld is how many dispatches holdDispatches holds before it lets the next requests through
// (a batch may take it past): the others run, so that the crash also finds attempts running and
// calling back.
const maxHeld = 8

// holdDispatches records every dispatch and passes it to next, but while frozen it holds the
// dispatch requests that come until maxHeld dispatches are held (a batch request holds all of
// its dispatches) until the orchestrator was killed, and then drops them: dispatches in flight
// at the crash that never reached the worker.
func (w *crashWorld) holdDispatches(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, 1<<20))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		// A single dispatch, or a batch of them (POST /tasks).
		var ds []protocol.DispatchRequest
		if r.URL.Path == protocol.DispatchBatchPath {
			var b protocol.DispatchBatchRequest
			if json.Unmarshal(body, &b) == nil {
				for _, it := range b.Dispatches {
					ds = append(ds, it.DispatchRequest)
				}
			}
		} else if d := (protocol.DispatchRequest{}); json.Unmarshal(body, &d) == nil && d.RunID != "" {
			ds = append(ds, d)
		}
		if len(ds) > 0 {
			recs := make([]dispatched, len(ds))
			for i, d := range ds {
				claims, err := token.ReadRun(d.StorageToken, time.Now())
				if err != nil {
					http.Error(rw, err.Error(), http.StatusUnauthorized)
					return
				}
				recs[i] = dispatched{runID: d.RunID, taskID: d.TaskID, attempt: d.Attempt, lease: claims.Lease}
			}
			w.mu.Lock()
			w.dispatches = append(w.dispatches, recs...)
			frozen := w.frozen && len(w.held) < maxHeld
			if frozen {
				w.held = append(w.held, recs...)
			}
			w.mu.Unlock()
			if frozen {
				<-w.killed
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(rw, r)
	})
}

// callbackTap is the worker's transport: it records the outcome of every callback, single or
// in a batch, and freezes the proxy and the dispatches when the freezeAt-th callback is answered.
type callbackTap struct {
	base http.RoundTripper
	w    *crashWorld
}

// RoundTrip implements http.RoundTripper.
func (c *callbackTap) RoundTrip(req *http.Request) (*http.Response, error) {
	var runIDs []string
	batch := req.URL.Path == protocol.CallbackBatchPath
	if runID, ok := strings.CutPrefix(req.URL.Path, "/api/callback/"); ok {
		runIDs = []string{runID}
	} else if batch {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		var b protocol.CallbackBatchRequest
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, err
		}
		for _, it := range b.Callbacks {
			runIDs = append(runIDs, it.RunID)
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
	} else {
		return c.base.RoundTrip(req)
	}
	w := c.w
	w.mu.Lock()
	frozen := w.frozen
	if frozen {
		if w.inflight == nil {
			w.inflight = map[string]int{}
		}
		for _, id := range runIDs {
			w.inflight[id]++
		}
	}
	w.mu.Unlock()
	record := func(outcomes []callbackOutcome) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i, runID := range runIDs {
			if frozen {
				if w.inflight[runID]--; w.inflight[runID] == 0 {
					delete(w.inflight, runID)
				}
			}
			w.callbacks[runID] = append(w.callbacks[runID], outcomes[i])
		}
	}
	each := func(o callbackOutcome) []callbackOutcome {
		out := make([]callbackOutcome, len(runIDs))
		for i := range out {
			out[i] = o
		}
		return out
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		record(each(callbackOutcome{err: err.Error()}))
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		record(each(callbackOutcome{err: err.Error()}))
		return nil, err
	}
	outcomes := each(callbackOutcome{status: resp.StatusCode})
	if batch && resp.StatusCode == http.StatusOK {
		var answer protocol.CallbackBatchResponse
		if err := json.Unmarshal(body, &answer); err != nil || len(answer.Results) != len(runIDs) {
			return nil, fmt.Errorf("batch answer %s: %v", body, err)
		}
		for i, r := range answer.Results {
			outcomes[i] = callbackOutcome{status: r.HTTPStatus, applied: r.Applied != nil && *r.Applied}
		}
	} else if !batch {
		var answer struct {
			Applied bool `json:"applied"`
		}
		_ = json.Unmarshal(body, &answer)
		outcomes[0].applied = answer.Applied
	}
	record(outcomes)
	for _, o := range outcomes {
		if o.status/100 == 2 && w.answered.Add(1) == w.freezeAt.Load() {
			w.mu.Lock()
			w.frozen = true
			w.mu.Unlock()
			w.proxy.freeze()
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// tcpProxy relays TCP connections to a target that can change: the load balancer in front of
// the orchestrator. Frozen, it keeps relaying requests but holds the answers; drop closes every
// connection (what it held is never delivered) and leaves it without a target until setTarget:
// new connections wait for one (at most proxyWait), as a load balancer's queue does during a
// failover, so that the worker's retries of its calls are not spent while no instance serves.
type tcpProxy struct {
	ln  net.Listener
	url string

	mu     sync.Mutex
	target string
	gen    int
	thaw   chan struct{} // non-nil while frozen
	ready  chan struct{} // closed while there is a target
	closed chan struct{} // closed when the proxy stops
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startTCPProxy(t *testing.T) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, url: "http://" + ln.Addr().String(), conns: map[net.Conn]struct{}{},
		ready: make(chan struct{}), closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		close(p.closed)
		_ = ln.Close()
		p.drop()
		p.wg.Wait()
	})
	return p
}

// proxyWait bounds how long a connection waits for a target.
const proxyWait = 30 * time.Second

func (p *tcpProxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
}

func (p *tcpProxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.target = ""
	select {
	case <-p.ready:
		p.ready = make(chan struct{})
	default:
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	if p.thaw != nil {
		close(p.thaw)
		p.thaw = nil
	}
}

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

func (p *tcpProxy) serve(c net.Conn) {
	give := time.After(proxyWait)
	var target string
	var gen int
	for {
		p.mu.Lock()
		target, gen = p.target, p.gen
		ready := p.ready
		p.mu.Unlock()
		if target != "" {
			break
		}
		select {
		case <-ready:
		case <-give:
			_ = c.Close()
			return
		case <-p.closed:
			_ = c.Close()
			return
		}
	}
	u, err := net.Dial("tcp", target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.gen != gen {
		p.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	closeBoth := func() {
		_ = c.Close()
		_ = u.Close()
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, u)
		p.mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(u, c)
		closeBoth()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thaw := p.thaw
			p.mu.Unlock()
			if thaw != nil {
				<-thaw
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	closeBoth()
	<-done
}
