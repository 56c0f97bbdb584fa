package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// Small inputs are kept in PostgreSQL and never also written to storage: a batch of them and a
// pipeline trigger leave the local backend empty; an input over the threshold is written there
// as before, and reads the same through the API.
func TestInlineInputsAreNotWrittenToStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 1024 })
	w := newPWorker(t, e)
	e.register("svc", "1", w.URL(), task("t", next("u")), task("u"))
	var tasks []map[string]any
	for i := range 20 {
		tasks = append(tasks, map[string]any{"taskId": "t", "input": map[string]int{"i": i}})
	}
	r := e.do("POST", "/api/queue/batch", map[string]any{"tasks": tasks}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	id := e.trigger("svc", map[string]any{"input": map[string]string{"doc": "x"}})
	require.Zero(t, countFiles(t, e.storageDir), "no small input was written to storage")
	require.JSONEq(t, `{"doc":"x"}`, string(e.object(protocol.PipelineInputPath(id)).Content))

	// Exactly at the threshold: inline; one byte more: stored.
	at := `"` + strings.Repeat("a", 1022) + `"`
	q := e.enqueue(map[string]any{"taskId": "t", "input": json.RawMessage(at)})
	require.False(t, e.inStorage(q.InputPath))
	require.Equal(t, at, string(e.object(q.InputPath).Content), "the bytes are kept exactly")
	over := `"` + strings.Repeat("b", 1023) + `"`
	q = e.enqueue(map[string]any{"taskId": "t", "input": json.RawMessage(over)})
	require.True(t, e.inStorage(q.InputPath))
	require.Equal(t, 1, countFiles(t, e.storageDir))
	require.Equal(t, over, string(e.object(q.InputPath).Content))
	e.waitFor("the stored input's run", func() bool {
		e.process()
		return e.run(q.RunID).Status == protocol.StatusCompleted
	})
	for _, d := range w.dispatchesOf("t") {
		if d.RunID == q.RunID {
			require.Nil(t, d.Input, "a stored input is read from storage")
		}
	}
}

// An inline output is checked before anything is written: over outputInlineMax is 413, not
// under the run's own outputPath or with another outputSize is 400, malformed JSON is 400; the
// run stays running and the worker may send a corrected callback. With inline payloads off,
// any inline output is too large.
func TestInlineOutputIsChecked(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{0, 64} {
		t.Run(fmt.Sprintf("inline=%d", limit), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = limit })
			_, d := dispatched(t, e)
			require.Equal(t, limit, d.OutputInlineMax)
			own := protocol.OutputPath(d.RunID)
			callback := func(body string) response {
				t.Helper()
				return e.do("POST", "/api/callback/"+d.RunID, body, d.StorageToken)
			}
			big := `"` + strings.Repeat("x", int(limit)) + `"`
			r := callback(fmt.Sprintf(`{"status":"success","outputPath":%q,"output":%s}`, own, big))
			require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)
			require.Equal(t, "OUTPUT_TOO_LARGE", r.errorBody(t).Code)
			if limit > 0 {
				r = callback(`{"status":"success","outputPath":"runs/other/output.json","output":{"a":1}}`)
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				require.Equal(t, "INVALID_OUTPUT_PATH", r.errorBody(t).Code)
				r = callback(`{"status":"success","output":{"a":1}}`)
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				require.Equal(t, "INVALID_OUTPUT_PATH", r.errorBody(t).Code)
				r = callback(fmt.Sprintf(`{"status":"success","outputPath":%q,"outputSize":3,"output":{"a":1}}`, own))
				require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
				require.Equal(t, "INVALID_OUTPUT_SIZE", r.errorBody(t).Code)
			}
			r = callback(fmt.Sprintf(`{"status":"success","outputPath":%q,"output":{"a":}}`, own))
			require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
			require.Equal(t, "MALFORMED_JSON", r.errorBody(t).Code)
			require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status, "a refused callback changes nothing")
			require.Equal(t, http.StatusNotFound, e.do("GET", "/api/storage/"+own, nil, "").Status)

			if limit == 0 {
				return
			}
			r = callback(fmt.Sprintf(`{"status":"success","outputPath":%q,"outputSize":7,"output":{"a":1}}`, own))
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			done := e.run(d.RunID)
			require.Equal(t, protocol.StatusCompleted, done.Status)
			require.Equal(t, own, *done.OutputPath)
			require.EqualValues(t, 7, *done.OutputSize)
			require.JSONEq(t, `{"a":1}`, string(e.object(own).Content))
			require.False(t, e.inStorage(own))
		})
	}
}

// Purge removes inline payloads with their runs, and nothing is left behind. Until then a DLQ
// retry's input stays readable under the failed run's path even after that run and its entry
// are purged.
func TestInlinePayloadsArePurgedWithTheirRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("svc", "1", w.URL(), task("ok", next("then")), task("then"))
	e.register("other", "1", w.URL(), task("bad"))
	w.on("ok", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"ok":true}`) })
	w.on("bad", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if d.InputPath == protocol.StandaloneInputPath(d.RunID) { // the first run fails, its retry succeeds
			return protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "no", Retryable: ptr(false)}
		}
		return e.result(d, `{"retried":true}`)
	})
	ok := e.enqueue(map[string]any{"taskId": "ok", "input": map[string]int{"n": 1}})
	e.waitStatus(ok.RunID, protocol.StatusCompleted)
	prun := e.waitRun(e.trigger("svc", map[string]any{"input": map[string]int{"n": 2}}), "completed")
	bad := e.enqueue(map[string]any{"taskId": "bad", "input": "again"})
	e.waitStatus(bad.RunID, protocol.StatusFailed)
	var dlqID string
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT id FROM dlq WHERE task_run_id = $1", bad.RunID).Scan(&dlqID))
	r := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var retried enqueued
	r.json(t, &retried)
	e.waitStatus(retried.RunID, protocol.StatusCompleted)
	require.Equal(t, bad.InputPath, retried.InputPath)
	require.Zero(t, countFiles(t, e.storageDir), "every payload was small: all inline")
	held := func() int {
		return e.count(`SELECT (SELECT count(*) FROM task_runs WHERE input IS NOT NULL OR output IS NOT NULL)
			+ (SELECT count(*) FROM pipeline_runs WHERE input IS NOT NULL) + (SELECT count(*) FROM dlq WHERE input IS NOT NULL)`)
	}
	require.Positive(t, held())

	// The failed run and its DLQ entry go first: the retry's copy still answers for the path.
	ctx := context.Background()
	age := func(query string, args ...any) {
		t.Helper()
		_, err := e.pool.Exec(ctx, query, args...)
		require.NoError(t, err)
	}
	age("UPDATE task_runs SET completed_at = now() - interval '31 days' WHERE id = $1", bad.RunID)
	age("UPDATE dlq SET failed_at = now() - interval '31 days' WHERE task_run_id = $1", bad.RunID)
	s, err := e.orch.Purge(ctx, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Runs)
	require.EqualValues(t, 1, s.DLQ)
	require.JSONEq(t, `"again"`, string(e.object(bad.InputPath).Content))

	// Then everything: no inline payload is left, and their paths are gone.
	age("UPDATE task_runs SET completed_at = now() - interval '31 days' WHERE completed_at IS NOT NULL")
	age("UPDATE pipeline_runs SET completed_at = now() - interval '31 days'")
	_, err = e.orch.Purge(ctx, time.Minute)
	require.NoError(t, err)
	require.Zero(t, held(), "no inline payload outlives its run")
	for _, path := range []string{ok.InputPath, protocol.OutputPath(ok.RunID), bad.InputPath, protocol.OutputPath(retried.RunID),
		prun.InputPath, protocol.OutputPath(prun.node("ok").ID)} {
		require.Equal(t, http.StatusNotFound, e.do("GET", "/api/storage/"+path, nil, "").Status, path)
	}
}

// With a threshold above the DLQ list's inline cap, an input kept inline but larger than that
// cap is left out of the list like a stored one, and still reads whole at its path.
func TestDLQLeavesOutLargeInlineInputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 2 * protocol.DLQInputInlineMax })
	w := newPWorker(t, e)
	e.register("svc", "1", w.URL(), task("bad"))
	w.on("bad", func(protocol.DispatchRequest) protocol.CallbackRequest {
		return protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "no", Retryable: ptr(false)}
	})
	big := strings.Repeat("x", protocol.DLQInputInlineMax+100)
	run := e.enqueue(map[string]any{"taskId": "bad", "input": big})
	e.waitStatus(run.RunID, protocol.StatusFailed)
	require.Zero(t, countFiles(t, e.storageDir), "the input is kept inline")

	r := e.do("GET", "/api/dlq", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var page struct {
		Items []map[string]json.RawMessage `json:"items"`
	}
	r.json(t, &page)
	require.Len(t, page.Items, 1)
	require.NotContains(t, page.Items[0], "input", "over the list's inline cap")
	require.JSONEq(t, fmt.Sprintf("%q", run.InputPath), string(page.Items[0]["inputPath"]))
	require.JSONEq(t, fmt.Sprintf("%q", big), string(e.object(run.InputPath).Content))
}
