package core_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// dispatched registers one task "t" with a recording worker, queues one run and returns its
// dispatch (the run is running after it).
func dispatched(t *testing.T, e *env) (*worker, protocol.DispatchRequest) {
	t.Helper()
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{}})
	e.process()
	w.waitDispatches(1)
	return w, w.all()[0]
}

// Every cap at its limit is accepted and at limit+1 refused with its code, writing nothing.
func TestCapsBatchSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.MaxBatchSize = 3 })
	e.register("svc", "1", "http://127.0.0.1:1", task("t"))
	batch := func(n int) response {
		tasks := make([]map[string]any, n)
		for i := range tasks {
			tasks[i] = map[string]any{"taskId": "t", "input": map[string]int{"i": i}}
		}
		return e.do("POST", "/api/queue/batch", map[string]any{"tasks": tasks}, "")
	}
	r := batch(4)
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	b := r.errorBody(t)
	require.Equal(t, "BATCH_TOO_LARGE", b.Code)
	require.Contains(t, b.Error, "MAX_BATCH_SIZE")
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"), "a refused batch writes nothing")
	require.Equal(t, http.StatusCreated, batch(3).Status)
	require.Equal(t, 3, e.count("SELECT count(*) FROM task_runs"))
	require.Equal(t, 1000, core.DefaultConfig().MaxBatchSize)
}

func TestCapsTasksPerRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.MaxTasksPerRegistration = 2 })
	reg := func(tasks ...protocol.TaskDefinition) response {
		return e.postReg("svc", protocol.RegisterRequest{ServiceID: "svc", Version: "1",
			BaseURL: "http://127.0.0.1:1", Tasks: tasks})
	}
	r := reg(task("a"), task("b"), task("c"))
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "TOO_MANY_TASKS", r.errorBody(t).Code)
	require.Zero(t, e.count("SELECT count(*) FROM tasks"))
	require.Equal(t, http.StatusOK, reg(task("a"), task("b")).Status)
}

func TestCapsDescriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	desc := func(n int) func(*protocol.TaskDefinition) {
		return func(td *protocol.TaskDefinition) { td.Description = strings.Repeat("d", n) }
	}
	r := e.postReg("svc", protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: "http://127.0.0.1:1",
		Tasks: []protocol.TaskDefinition{task("a", desc(4097))}})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "DESCRIPTION_TOO_LONG", r.errorBody(t).Code)
	r = e.postReg("svc", protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: "http://127.0.0.1:1",
		Tasks:     []protocol.TaskDefinition{task("a")},
		Pipelines: []protocol.PipelineDefinition{{ID: "p", EntryTasks: []string{"a"}, Description: strings.Repeat("d", 4097)}}})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "DESCRIPTION_TOO_LONG", r.errorBody(t).Code)
	require.Zero(t, e.count("SELECT count(*) FROM tasks"))
	e.register("svc", "1", "http://127.0.0.1:1", task("a", desc(4096)))

	put := func(n int) response {
		return e.do("PUT", "/api/pipelines/p", protocol.PipelineDefinition{EntryTasks: []string{"a"}, Description: strings.Repeat("d", n)}, "")
	}
	r = put(4097)
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "DESCRIPTION_TOO_LONG", r.errorBody(t).Code)
	require.Zero(t, e.count("SELECT count(*) FROM pipelines WHERE id = 'p'"))
	r = put(4096)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}

func TestCapsHeartbeatMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, d := dispatched(t, e)
	for _, path := range []string{"/api/heartbeat", "/api/progress"} {
		status, body, err := post(e.url+path, protocol.HeartbeatRequest{RunID: d.RunID, Message: strings.Repeat("m", 1001)}, d.StorageToken)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, status, "%s", body)
		require.Contains(t, string(body), "MESSAGE_TOO_LONG")
	}
	require.Empty(t, e.run(d.RunID).ProgressMessage, "a refused message is not stored")
	status, body, err := post(e.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: d.RunID, Message: strings.Repeat("m", 1000)}, d.StorageToken)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Len(t, e.run(d.RunID).ProgressMessage, 1000)
}

// An over-long error is cut with a marker, not refused: the failure is recorded.
func TestCapsCallbackErrorTruncated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w, d := dispatched(t, e)
	status, body := w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Retryable: ptr(false),
		Error: strings.Repeat("é", 10000), ErrorCode: strings.Repeat("C", 200)})
	require.Equal(t, http.StatusOK, status, "%s", body)
	r := e.run(d.RunID)
	require.Equal(t, protocol.StatusFailed, r.Status)
	require.NotNil(t, r.Error)
	require.LessOrEqual(t, len(*r.Error), 16<<10)
	require.True(t, strings.HasSuffix(*r.Error, "… [truncated]"), "marked")
	require.True(t, strings.HasPrefix(*r.Error, "éé"))
	require.NotContains(t, *r.Error, "\uFFFD", "no split UTF-8 sequence")
	require.Len(t, *r.ErrorCode, 128)

	// At the cap the text is kept as it is.
	e2 := newEnv(t)
	w2, d2 := dispatched(t, e2)
	status, body = w2.callback(d2, protocol.CallbackRequest{Status: protocol.CallbackFailed, Retryable: ptr(false),
		Error: strings.Repeat("x", 16<<10), ErrorCode: strings.Repeat("C", 128)})
	require.Equal(t, http.StatusOK, status, "%s", body)
	r = e2.run(d2.RunID)
	require.Equal(t, strings.Repeat("x", 16<<10), *r.Error)
	require.Equal(t, strings.Repeat("C", 128), *r.ErrorCode)
}

// Worker routes take at most MAX_WORKER_BODY_BYTES, and without a valid token no body is read.
func TestCapsWorkerBody(t *testing.T) {
	t.Parallel()
	const limit = 2048
	e := newEnv(t, func(c *core.Config) { c.MaxWorkerBodyBytes = limit })
	_, d := dispatched(t, e)
	// A body of exactly limit bytes: a valid heartbeat padded with a field it ignores.
	hb := func(n int) string {
		head := fmt.Sprintf(`{"runId":%q,"pad":"`, d.RunID)
		return head + strings.Repeat("p", n-len(head)-2) + `"}`
	}
	r := e.do("POST", "/api/heartbeat", hb(limit), d.StorageToken)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	r = e.do("POST", "/api/heartbeat", hb(limit+1), d.StorageToken)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)
	require.Equal(t, "BODY_TOO_LARGE", r.errorBody(t).Code)
	// Without a valid token: 401, whatever the body.
	for _, path := range []string{"/api/heartbeat", "/api/progress", "/api/idempotency/check", "/api/callback/" + d.RunID} {
		r = e.do("POST", path, strings.Repeat("x", 1<<19), "not-a-token")
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", path, r.Body)
		r = e.do("POST", path, strings.Repeat("x", 1<<19), "")
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", path, r.Body)
	}
	// With a valid token the body is read: a missing runId is 400.
	r = e.do("POST", "/api/heartbeat", `{}`, d.StorageToken)
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Equal(t, "INVALID_RUN_ID", r.errorBody(t).Code)
	// With a valid token, a big callback is 413 and the run stays running (the worker resends).
	// A callback may be longer by the largest inline output (INLINE_PAYLOAD_MAX_BYTES).
	cb := fmt.Sprintf(`{"status":"failed","error":%q}`, strings.Repeat("e", limit+int(e.cfg.InlinePayloadMaxBytes)))
	r = e.do("POST", "/api/callback/"+d.RunID, cb, d.StorageToken)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, "%s", r.Body)
	require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status)
	r = e.do("POST", "/api/callback/"+d.RunID, success(d), d.StorageToken)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)
	require.Equal(t, int64(64<<10), core.DefaultConfig().MaxWorkerBodyBytes)
}
