package core_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// batchItem is the callback of dispatch d in a batch, with its own token.
func batchItem(d protocol.DispatchRequest, cb protocol.CallbackRequest) protocol.CallbackBatchItem {
	return protocol.CallbackBatchItem{RunID: d.RunID, Token: d.StorageToken, CallbackRequest: cb}
}

// postBatch sends POST /api/callbacks with bearer and decodes a 200's results.
func (e *env) postBatch(bearer string, items ...protocol.CallbackBatchItem) (int, []protocol.CallbackBatchResult, []byte) {
	e.t.Helper()
	status, out, err := post(e.url+protocol.CallbackBatchPath, protocol.CallbackBatchRequest{Callbacks: items}, bearer)
	require.NoError(e.t, err)
	if status != http.StatusOK {
		return status, nil, out
	}
	var resp protocol.CallbackBatchResponse
	require.NoError(e.t, json.Unmarshal(out, &resp), "body: %s", out)
	require.Len(e.t, resp.Results, len(items), "one result per callback")
	return status, resp.Results, out
}

// dispatchRuns enqueues n runs of task t, dispatches them with one process call and returns
// their dispatches.
func dispatchRuns(t *testing.T, e *env, w *worker, taskID string, n int) []protocol.DispatchRequest {
	t.Helper()
	e.enqueueMany(taskID, n)
	e.process()
	w.waitDispatches(n)
	return w.all()
}

// A batch applies each callback as the single callback would, answers each in order, and
// applies those that pass in one group commit; the dispatch says how many one may carry.
func TestCallbackBatchAppliesEachInOneTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t", withRetries(0, 0)))
	ds := dispatchRuns(t, e, w, "t", 6)
	require.Equal(t, 256, ds[0].CallbackBatchMax, "the dispatch offers the batch callback")

	failed := protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom", ErrorCode: "E", Retryable: ptr(false)}
	status, res, _ := e.postBatch(ds[0].StorageToken,
		batchItem(ds[0], e.result(ds[0], `{"n":0}`)),
		batchItem(ds[1], e.result(ds[1], `{"n":1}`)),
		batchItem(ds[2], failed),
		batchItem(ds[3], protocol.CallbackRequest{Status: "done"}), // refused alone
		protocol.CallbackBatchItem{RunID: ds[4].RunID, Token: ds[5].StorageToken, CallbackRequest: success(ds[4])}, // another run's token
		batchItem(ds[5], e.result(ds[5], `{"n":5}`)),
	)
	require.Equal(t, http.StatusOK, status)
	for i, want := range []struct {
		status int
		run    string
		code   string
	}{{200, "completed", ""}, {200, "completed", ""}, {200, "failed", ""}, {400, "", "INVALID_STATUS"}, {401, "", "UNAUTHORIZED"}, {200, "completed", ""}} {
		require.Equal(t, ds[i].RunID, res[i].RunID, "result %d", i)
		require.Equal(t, want.status, res[i].HTTPStatus, "result %d: %+v", i, res[i])
		require.Equal(t, want.code, res[i].Code, "result %d", i)
		if want.status == 200 {
			require.True(t, res[i].Acknowledged)
			require.NotNil(t, res[i].Applied)
			require.True(t, *res[i].Applied, "result %d", i)
			require.Equal(t, want.run, res[i].Status)
		} else {
			require.NotEmpty(t, res[i].Error)
			require.Nil(t, res[i].Applied)
		}
	}
	// The refused callbacks changed nothing; the successes were committed by one transaction
	// (a failure takes the group commit's second one).
	require.Equal(t, protocol.StatusRunning, e.run(ds[3].RunID).Status)
	require.Equal(t, protocol.StatusRunning, e.run(ds[4].RunID).Status)
	require.Equal(t, 1, e.count(`SELECT count(DISTINCT xmin::text)::int FROM task_runs WHERE id = ANY($1)`,
		[]string{ds[0].RunID, ds[1].RunID, ds[5].RunID}))
	require.Equal(t, 1, e.count(`SELECT count(*)::int FROM dlq WHERE task_run_id = $1`, ds[2].RunID))
	var out map[string]any
	e.do("GET", "/api/storage/"+protocol.OutputPath(ds[1].RunID), nil, "").json(t, &out)
	require.Equal(t, map[string]any{"n": float64(1)}, out["content"])

	// A repeat is answered 200, not applied; a callback for a lease no longer current is 409.
	status, res, _ = e.postBatch(ds[0].StorageToken, batchItem(ds[0], success(ds[0])), batchItem(ds[4], success(ds[4])))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 200, res[0].HTTPStatus)
	require.False(t, *res[0].Applied)
	require.Equal(t, "completed", res[0].Status)
	require.Equal(t, 200, res[1].HTTPStatus)
	require.True(t, *res[1].Applied)
	stale := ds[3]
	claims, err := e.keys.VerifyRun(stale.StorageToken, time.Now())
	require.NoError(t, err)
	claims.Lease++
	stale.StorageToken, err = e.keys.SignRun(claims)
	require.NoError(t, err)
	status, res, _ = e.postBatch(ds[0].StorageToken, batchItem(stale, success(stale)))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 409, res[0].HTTPStatus, "%+v", res[0])
	require.Equal(t, "STALE_LEASE", res[0].Code)
	require.Equal(t, protocol.StatusRunning, e.run(stale.RunID).Status)
}

// The request itself: its bearer must be a valid run token, read before the body; it must list
// 1 to 256 callbacks; a malformed body is 400. None of them changes a run.
func TestCallbackBatchRefusesBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	ds := dispatchRuns(t, e, w, "t", 1)
	d := ds[0]
	one := batchItem(d, success(d))

	many := make([]protocol.CallbackBatchItem, 257)
	for i := range many {
		many[i] = one
	}
	expired, err := e.keys.SignRun(token.RunClaims{RunID: d.RunID, TaskID: "t", Attempt: 1, Lease: 1,
		IssuedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	for name, c := range map[string]struct {
		bearer string
		body   any
		status int
		code   string
	}{
		"no bearer":       {"", protocol.CallbackBatchRequest{Callbacks: []protocol.CallbackBatchItem{one}}, 401, "UNAUTHORIZED"},
		"forged bearer":   {d.StorageToken + "x", protocol.CallbackBatchRequest{Callbacks: []protocol.CallbackBatchItem{one}}, 401, "UNAUTHORIZED"},
		"expired bearer":  {expired, protocol.CallbackBatchRequest{Callbacks: []protocol.CallbackBatchItem{one}}, 401, "UNAUTHORIZED"},
		"no callbacks":    {d.StorageToken, protocol.CallbackBatchRequest{}, 400, "INVALID_BATCH"},
		"257 callbacks":   {d.StorageToken, protocol.CallbackBatchRequest{Callbacks: many}, 400, "BATCH_TOO_LARGE"},
		"not JSON":        {d.StorageToken, "{", 400, ""},
		"callbacks a map": {d.StorageToken, map[string]any{"callbacks": map[string]any{}}, 400, ""},
		"over MAX_BODY_BYTES": {d.StorageToken, protocol.CallbackBatchRequest{Callbacks: []protocol.CallbackBatchItem{
			batchItem(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: strings.Repeat("x", 2<<20)})}}, 413, "BODY_TOO_LARGE"},
	} {
		r := e.do("POST", protocol.CallbackBatchPath, c.body, c.bearer)
		require.Equal(t, c.status, r.Status, "%s: %s", name, r.Body)
		if c.code != "" {
			require.Equal(t, c.code, r.errorBody(t).Code, name)
		}
	}
	require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status)

	// Per callback: no runId, no token, an expired token, a forged one, an unknown run, an
	// inline output over the dispatch's outputInlineMax.
	big := success(d)
	big.Output = json.RawMessage(fmt.Sprintf("%q", strings.Repeat("x", int(d.OutputInlineMax))))
	big.OutputSize = int64(len(big.Output))
	other, err := e.keys.SignRun(token.RunClaims{RunID: "trun_unknown", TaskID: "t", Attempt: 1, Lease: 1,
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	status, res, _ := e.postBatch(d.StorageToken,
		protocol.CallbackBatchItem{Token: d.StorageToken, CallbackRequest: success(d)},
		protocol.CallbackBatchItem{RunID: d.RunID, CallbackRequest: success(d)},
		protocol.CallbackBatchItem{RunID: d.RunID, Token: expired, CallbackRequest: success(d)},
		protocol.CallbackBatchItem{RunID: d.RunID, Token: strings.ToUpper(d.StorageToken), CallbackRequest: success(d)},
		protocol.CallbackBatchItem{RunID: "trun_unknown", Token: other, CallbackRequest: success(d)},
		batchItem(d, big),
	)
	require.Equal(t, http.StatusOK, status)
	for i, want := range []struct {
		status int
		code   string
	}{{400, "INVALID_RUN_ID"}, {401, "UNAUTHORIZED"}, {401, "UNAUTHORIZED"}, {401, "UNAUTHORIZED"}, {404, "RUN_NOT_FOUND"}, {413, "OUTPUT_TOO_LARGE"}} {
		require.Equal(t, want.status, res[i].HTTPStatus, "result %d: %+v", i, res[i])
		require.Equal(t, want.code, res[i].Code, "result %d", i)
	}
	require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status)
	// The server still serves: the same callback twice in one batch completes the run once;
	// both are answered 200, one of them applied.
	status, res, _ = e.postBatch(d.StorageToken, one, one)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 200, res[0].HTTPStatus)
	require.Equal(t, 200, res[1].HTTPStatus)
	require.NotEqual(t, *res[0].Applied, *res[1].Applied, "exactly one applied")
	require.Equal(t, "completed", res[0].Status)
	require.Equal(t, "completed", res[1].Status)
	require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)
}

// In node-sdk-v1 compat mode a batch without tokens is accepted, as a single callback is.
func TestCallbackBatchCompatWithoutTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Compat = core.CompatNodeSDKv1 })
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	ds := dispatchRuns(t, e, w, "t", 2)
	require.Zero(t, ds[0].CallbackBatchMax, "a compat dispatch is upstream's")
	status, res, body := e.postBatch("",
		protocol.CallbackBatchItem{RunID: ds[0].RunID, CallbackRequest: success(ds[0])},
		protocol.CallbackBatchItem{RunID: ds[1].RunID, CallbackRequest: success(ds[1])})
	require.Equal(t, http.StatusOK, status, "%s", body)
	for i := range res {
		require.Equal(t, 200, res[i].HTTPStatus, "%+v", res[i])
		require.Equal(t, protocol.StatusCompleted, e.run(ds[i].RunID).Status)
	}
}

// Batches and single callbacks of the same runs racing each other on two instances: each
// attempt is applied exactly once, and every caller gets an answer.
func TestCallbackBatchRacesSingleCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newEnvOn(t, e.pool)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	for round := range 3 {
		e.enqueueMany("t", 40)
		e.process()
		w.waitUntil("40 dispatches", func() bool { return w.count() >= 40*(round+1) })
		ds := w.all()[40*round:]
		var mu sync.Mutex
		applied := map[string]int{} // run id → times applied
		count := func(runID string, a *bool) {
			if a != nil && *a {
				mu.Lock()
				applied[runID]++
				mu.Unlock()
			}
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				inst := []*env{e, other}[g%2]
				items := make([]protocol.CallbackBatchItem, 0, len(ds))
				for k := range ds {
					d := ds[(k+g*7)%len(ds)]
					items = append(items, batchItem(d, success(d)))
				}
				status, out, err := post(inst.url+protocol.CallbackBatchPath, protocol.CallbackBatchRequest{Callbacks: items}, items[0].Token)
				if err != nil || status != http.StatusOK {
					t.Errorf("round %d batch %d: %d %v %s", round, g, status, err, out)
					return
				}
				var resp protocol.CallbackBatchResponse
				if err := json.Unmarshal(out, &resp); err != nil {
					t.Errorf("round %d batch %d: %v", round, g, err)
					return
				}
				for _, r := range resp.Results {
					if r.HTTPStatus != 200 || r.Status != "completed" {
						t.Errorf("round %d batch %d: %+v", round, g, r)
					}
					count(r.RunID, r.Applied)
				}
			})
		}
		for _, d := range ds {
			wg.Go(func() {
				status, out := w.callback(d, success(d))
				var r struct {
					Applied bool   `json:"applied"`
					Status  string `json:"status"`
				}
				if status != http.StatusOK || json.Unmarshal(out, &r) != nil || r.Status != "completed" {
					t.Errorf("round %d single %s: %d %s", round, d.RunID, status, out)
				}
				count(d.RunID, &r.Applied)
			})
		}
		wg.Wait()
		require.Len(t, applied, len(ds), "round %d: every run applied", round)
		for _, d := range ds {
			require.Equal(t, 1, applied[d.RunID], "round %d: %s applied once", round, d.RunID)
			require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)
		}
	}
}
