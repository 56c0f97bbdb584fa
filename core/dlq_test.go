package core_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

type dlqPage struct {
	Items []struct {
		ID            string `json:"id"`
		TaskID        string `json:"taskId"`
		PipelineRunID string `json:"pipelineRunId"`
		PipelineID    string `json:"pipelineId"`
		RetryRunID    string `json:"retryRunId"`
	} `json:"items"`
}

type retryAll struct {
	Retried int `json:"retried"`
	Runs    []struct {
		DLQID  string `json:"dlqId"`
		RunID  string `json:"runId"`
		TaskID string `json:"taskId"`
	} `json:"runs"`
	Failed []struct {
		DLQID string `json:"dlqId"`
		Code  string `json:"code"`
	} `json:"failed"`
	More bool `json:"more"`
}

func (e *env) dlq(query string) dlqPage {
	e.t.Helper()
	r := e.do("GET", "/api/dlq"+query, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	var p dlqPage
	r.json(e.t, &p)
	return p
}

// The DLQ filters by task, pipeline and state; retry-all retries what a filter selects, once
// even when two operators press the button together; purge deletes entries past an age.
func TestDLQFiltersRetryAllAndPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("jobs", "1", w.URL(), task("a"), task("b"))
	e.register("flow", "1", w.URL(), task("p1"))
	for _, id := range []string{"a", "b", "p1"} {
		w.on(id, failWith("down", false))
	}
	var standalone []string
	for i := range 3 {
		standalone = append(standalone, e.enqueue(map[string]any{"taskId": "a", "input": i}).RunID)
	}
	for i := range 2 {
		standalone = append(standalone, e.enqueue(map[string]any{"taskId": "b", "input": i}).RunID)
	}
	prun := e.trigger("flow", map[string]any{"input": "x"})
	for _, id := range standalone {
		e.waitStatus(id, protocol.StatusFailed)
	}
	e.waitRun(prun, "failed")

	require.Len(t, e.dlq("").Items, 6)
	require.Len(t, e.dlq("?taskId=a").Items, 3)
	byPipeline := e.dlq("?pipelineId=flow").Items
	require.Len(t, byPipeline, 1)
	require.Equal(t, "flow", byPipeline[0].PipelineID)
	require.Equal(t, prun, byPipeline[0].PipelineRunID)
	require.Len(t, e.dlq("?state=open").Items, 6)
	require.Empty(t, e.dlq("?state=retried").Items)
	bad := e.do("GET", "/api/dlq?state=sideways", nil, "")
	require.Equal(t, http.StatusBadRequest, bad.Status)
	require.Equal(t, "INVALID_STATE", bad.errorBody(t).Code)

	// Bad bulk requests change nothing.
	for _, body := range []any{nil, "{", map[string]any{"limit": -1}, map[string]any{"taskId": 7}} {
		r := e.do("POST", "/api/dlq/retry-all", body, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%v: %s", body, r.Body)
		r.errorBody(t)
	}
	// A misspelt filter would retry every entry: it is refused instead.
	r := e.do("POST", "/api/dlq/retry-all", map[string]any{"task": "a"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	eb := r.errorBody(t)
	require.Equal(t, "UNKNOWN_FIELD", eb.Code)
	require.Contains(t, eb.Error, `"task"`)
	require.Len(t, e.dlq("?state=open").Items, 6)

	// A limit leaves the rest for the next call.
	w.on("a", nil)
	var first retryAll
	r = e.do("POST", "/api/dlq/retry-all", map[string]any{"taskId": "a", "limit": 1}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r.json(t, &first)
	require.Equal(t, 1, first.Retried)
	require.True(t, first.More)

	// Two operators retry the rest of a's entries at the same time: each entry is retried once.
	var wg sync.WaitGroup
	answers := make([]response, 2)
	errs := make([]error, 2)
	for i := range answers {
		wg.Go(func() { answers[i], errs[i] = e.send("POST", "/api/dlq/retry-all", map[string]any{"taskId": "a"}, "") })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	results := make([]retryAll, 2)
	for i, r := range answers {
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		r.json(t, &results[i])
	}
	require.Equal(t, 2, results[0].Retried+results[1].Retried)
	require.Empty(t, results[0].Failed)
	require.Empty(t, results[1].Failed)
	runs := []string{first.Runs[0].RunID}
	for _, res := range results {
		require.False(t, res.More)
		for _, x := range res.Runs {
			require.Equal(t, "a", x.TaskID)
			runs = append(runs, x.RunID)
		}
	}
	for _, id := range runs {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	require.Len(t, e.dlq("?taskId=a&state=retried").Items, 3)
	require.Empty(t, e.dlq("?taskId=a&state=open").Items)

	// Retry-all by pipeline re-opens the run, which completes.
	w.on("p1", nil)
	var byFlow retryAll
	e.do("POST", "/api/dlq/retry-all", map[string]any{"pipelineId": "flow"}, "").json(t, &byFlow)
	require.Equal(t, 1, byFlow.Retried)
	e.waitRun(prun, "completed")

	// Purge: bad ages are refused, fresh entries are kept, old ones go.
	for _, age := range []string{"", "abc", "-1d", "0d", "0s", "7days"} {
		r := e.do("POST", "/api/dlq/purge", map[string]any{"olderThan": age}, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%q: %s", age, r.Body)
		require.Equal(t, "INVALID_OLDER_THAN", r.errorBody(t).Code)
	}
	var purged struct {
		Deleted int `json:"deleted"`
	}
	e.do("POST", "/api/dlq/purge", map[string]any{"olderThan": "1h"}, "").json(t, &purged)
	require.Zero(t, purged.Deleted)
	_, err := e.pool.Exec(t.Context(), "UPDATE dlq SET failed_at = now() - interval '8 days' WHERE task_id = 'b'")
	require.NoError(t, err)
	e.do("POST", "/api/dlq/purge", map[string]any{"olderThan": "7d"}, "").json(t, &purged)
	require.Equal(t, 2, purged.Deleted)
	require.Len(t, e.dlq("").Items, 4)
	require.Empty(t, e.dlq("?taskId=b").Items)
}

// Bulk retries race single retries of the same entries: every entry is retried exactly once,
// the losers of a single retry get 409 ALREADY_RETRIED, and no bulk retry reports a failure.
func TestDLQRetryAllRacesSingleRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("jobs", "1", w.URL(), task("racy"))
	for round := range 8 {
		w.on("racy", failWith("down", false))
		var failed []string
		for i := range 6 {
			failed = append(failed, e.enqueue(map[string]any{"taskId": "racy", "input": []int{round, i}}).RunID)
		}
		for _, id := range failed {
			e.waitStatus(id, protocol.StatusFailed)
		}
		open := e.dlq("?state=open").Items
		require.Len(t, open, 6, "round %d", round)
		w.on("racy", nil)

		// Two retry-alls and three single retries at once; the answers are read after Wait.
		calls := []string{"/api/dlq/retry-all", "/api/dlq/retry-all"}
		for _, entry := range open[:3] {
			calls = append(calls, "/api/dlq/"+entry.ID+"/retry")
		}
		answers := make([]response, len(calls))
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for i, path := range calls {
			wg.Go(func() {
				var body any
				if i < 2 {
					body = map[string]any{"taskId": "racy"}
				}
				answers[i], errs[i] = e.send("POST", path, body, "")
			})
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		retriedBy := map[string][]string{} // DLQ entry → runs that retried it
		for _, r := range answers[:2] {
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			var res retryAll
			r.json(t, &res)
			require.Empty(t, res.Failed)
			for _, x := range res.Runs {
				retriedBy[x.DLQID] = append(retriedBy[x.DLQID], x.RunID)
			}
		}
		for i, entry := range open[:3] {
			r := answers[2+i]
			switch r.Status {
			case http.StatusCreated:
				var res enqueued
				r.json(t, &res)
				retriedBy[entry.ID] = append(retriedBy[entry.ID], res.RunID)
			case http.StatusConflict:
				require.Equal(t, "ALREADY_RETRIED", r.errorBody(t).Code)
			default:
				t.Fatalf("retry %s: %d %s", entry.ID, r.Status, r.Body)
			}
		}
		require.Len(t, retriedBy, 6, "round %d: every entry was retried", round)
		for _, entry := range e.dlq("?taskId=racy&limit=6").Items {
			runs := retriedBy[entry.ID]
			require.Len(t, runs, 1, "round %d: entry %s retried by %v", round, entry.ID, runs)
			require.Equal(t, runs[0], entry.RetryRunID)
			e.waitStatus(runs[0], protocol.StatusCompleted)
		}
	}
}
