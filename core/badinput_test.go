package core_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// countFiles counts the objects in the local storage directory.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	}))
	return n
}

// Every bad request gets its status and an error body, writes nothing, and the server keeps
// serving.
func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	big := `{"taskId":"t","input":"` + strings.Repeat("x", 2<<20) + `"}`
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/api/queue/task", `{"taskId": "t",`, 400, "MALFORMED_JSON"},
		{"not JSON", "POST", "/api/queue/task", `hello`, 400, "MALFORMED_JSON"},
		{"empty body", "POST", "/api/queue/task", ``, 400, "MALFORMED_JSON"},
		{"trailing data", "POST", "/api/queue/task", `{"taskId":"t"} {}`, 400, "MALFORMED_JSON"},
		{"wrong type of taskId", "POST", "/api/queue/task", `{"taskId": 5}`, 400, "INVALID_FIELD"},
		{"wrong type of priority", "POST", "/api/queue/task", `{"taskId": "t", "priority": "high"}`, 400, "INVALID_FIELD"},
		{"fractional priority", "POST", "/api/queue/task", `{"taskId": "t", "priority": 1.5}`, 400, "INVALID_FIELD"},
		{"negative priority", "POST", "/api/queue/task", `{"taskId": "t", "priority": -1}`, 400, "INVALID_PRIORITY"},
		{"negative delay", "POST", "/api/queue/task", `{"taskId": "t", "delayMs": -5}`, 400, "INVALID_DELAY"},
		{"metadata not an object", "POST", "/api/queue/task", `{"taskId": "t", "metadata": [1]}`, 400, "INVALID_METADATA"},
		{"missing taskId", "POST", "/api/queue/task", `{"input": {}}`, 400, "INVALID_TASK_ID"},
		{"idempotency key too long", "POST", "/api/queue/task", `{"taskId": "t", "idempotencyKey": "` + strings.Repeat("k", 256) + `"}`, 400, "INVALID_IDEMPOTENCY_KEY"},
		{"unknown task", "POST", "/api/queue/task", `{"taskId": "nope"}`, 404, "TASK_NOT_FOUND"},
		{"oversize body", "POST", "/api/queue/task", big, 413, "BODY_TOO_LARGE"},
		{"empty batch", "POST", "/api/queue/batch", `{"tasks": []}`, 400, "EMPTY_BATCH"},
		{"batch with one unknown task", "POST", "/api/queue/batch", `{"tasks": [{"taskId":"t"},{"taskId":"nope"}]}`, 404, "TASK_NOT_FOUND"},
		{"batch with one bad priority", "POST", "/api/queue/batch", `{"tasks": [{"taskId":"t"},{"taskId":"t","priority":-3}]}`, 400, "INVALID_PRIORITY"},
		{"batch not an array", "POST", "/api/queue/batch", `{"tasks": {}}`, 400, "INVALID_FIELD"},
		{"unknown run", "GET", "/api/task-runs/trun_nope", nil, 404, "RUN_NOT_FOUND"},
		{"bad status filter", "GET", "/api/queue/items?status=weird", nil, 400, "INVALID_STATUS"},
		{"bad limit", "GET", "/api/queue/items?limit=abc", nil, 400, "INVALID_LIMIT"},
		{"limit too large", "GET", "/api/queue/items?limit=100000", nil, 400, "INVALID_LIMIT"},
		{"unknown dlq entry", "GET", "/api/dlq/dlq_nope", nil, 404, "DLQ_ENTRY_NOT_FOUND"},
		{"unknown route", "GET", "/api/nothing", nil, 404, "ROUTE_NOT_FOUND"},
		{"callback without token", "POST", "/api/callback/trun_x", `{"status":"success"}`, 401, "UNAUTHORIZED"},
		{"heartbeat without token", "POST", "/api/heartbeat", `{"runId":"trun_x"}`, 401, "UNAUTHORIZED"},
		{"heartbeat without runId nor token (the token is checked before the body is read)", "POST", "/api/heartbeat", `{}`, 401, "UNAUTHORIZED"},
	}
	for _, c := range cases {
		r := e.do(c.method, c.path, c.body, "")
		require.Equal(t, c.status, r.Status, "%s: %s", c.name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, c.name)
	}
	var n int
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT count(*) FROM task_runs").Scan(&n))
	require.Zero(t, n, "no run was written")
	require.Zero(t, countFiles(t, e.storageDir), "no input was stored")
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
	e.enqueue(map[string]any{"taskId": "t"})
}

// Worker calls are authenticated by the run token: forged, expired, other-run and missing
// tokens get 401 and change nothing; an unknown run with a valid token is 404.
func TestWorkerTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t", withRetries(0, 0)))
	id := e.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(1)
	d := w.all()[0]
	claims, err := e.keys.VerifyRun(d.StorageToken, time.Now())
	require.NoError(t, err)

	other, err := token.DeriveKeys("another secret that is long enough to be used")
	require.NoError(t, err)
	forged, err := other.SignRun(claims)
	require.NoError(t, err)
	expiredClaims := claims
	expiredClaims.IssuedAt, expiredClaims.ExpiresAt = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	expired, err := e.keys.SignRun(expiredClaims)
	require.NoError(t, err)
	otherRun := claims
	otherRun.RunID = "trun_other"
	wrongRun, err := e.keys.SignRun(otherRun)
	require.NoError(t, err)
	reg := e.regToken("svc", nil)
	tampered := d.StorageToken[:len(d.StorageToken)-3] + "abc"

	fail := protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "forged"}
	for name, tok := range map[string]string{"missing": "", "forged": forged, "expired": expired, "other run": wrongRun,
		"registration token": reg, "tampered": tampered} {
		status, body, err := post(e.url+"/api/callback/"+id, fail, tok)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, status, "%s: %s", name, body)
		status, body, err = post(e.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: id}, tok)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, status, "%s: %s", name, body)
	}
	r := e.run(id)
	require.Equal(t, protocol.StatusRunning, r.Status)
	require.Empty(t, r.PreviousAttempts)

	// A bad callback body is a 400 and changes nothing either.
	status, body := w.callback(d, protocol.CallbackRequest{Status: "done"})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	long := success(d)
	long.IdempotencyKey = strings.Repeat("k", 256)
	status, body = w.callback(d, long)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	negative := success(d)
	negative.OutputSize = -1
	status, body = w.callback(d, negative)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Equal(t, protocol.StatusRunning, e.run(id).Status)

	// A valid token for a run that does not exist.
	ghost := claims
	ghost.RunID = "trun_ghost"
	ghostTok, err := e.keys.SignRun(ghost)
	require.NoError(t, err)
	status, body, err = post(e.url+"/api/callback/trun_ghost", success(d), ghostTok)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, status, string(body))

	status, body = w.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, string(body))
}

// With PIPEWEAVE_API_KEYS set, every non-worker endpoint needs a key; worker endpoints and
// /health do not.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"key-one", "key-two"} })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	e.register("svc", "1", w.URL(), task("t"))
	for _, path := range []string{"/api/services", "/api/services/svc/tasks", "/api/tasks/t/history", "/api/queue/status",
		"/api/queue/items", "/api/task-runs/x", "/api/dlq", "/api/webhooks", "/api/webhooks/h", "/api/webhooks/h/deliveries", "/api/rate-limits", "/api/rate-limits/k",
		"/api/runs/prun_x?items=false", "/api/runs/prun_x/maps/t/items"} {
		for _, key := range []string{"", "wrong"} {
			r := e.do("GET", path, nil, key)
			require.Equal(t, http.StatusUnauthorized, r.Status, path)
			require.Equal(t, "UNAUTHORIZED", r.errorBody(t).Code)
		}
	}
	for _, path := range []string{"/api/queue/task", "/api/queue/batch", "/api/dlq/x/retry", "/api/process",
		"/api/task-runs/x/cancel", "/api/tasks/t/pause", "/api/tasks/t/resume", "/api/pipelines/svc/pause", "/api/pipelines/svc/resume",
		"/api/webhooks/h/deliveries/msg_x/resend"} {
		require.Equal(t, http.StatusUnauthorized, e.do("POST", path, `{}`, "").Status, path)
	}
	hook := `{"url":"http://127.0.0.1:9/","events":["dlq.added"]}`
	require.Equal(t, http.StatusUnauthorized, e.do("PUT", "/api/webhooks/h", hook, "").Status)
	require.Equal(t, http.StatusUnauthorized, e.do("DELETE", "/api/webhooks/h", nil, "wrong").Status)
	require.Zero(t, e.count("SELECT count(*) FROM webhooks"), "nothing written without a key")
	require.Equal(t, http.StatusUnauthorized, e.do("PUT", "/api/rate-limits/k", `{"limit":1,"periodMs":1000}`, "").Status)
	require.Equal(t, http.StatusUnauthorized, e.do("DELETE", "/api/rate-limits/k", nil, "wrong").Status)
	require.Zero(t, e.count("SELECT count(*) FROM rate_limits"))
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "t"}, "key-two")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var q enqueued
	r.json(t, &q)
	// The worker's callback needs no API key, only its run token.
	e.waitMoved("completion", func() bool {
		r := e.do("GET", "/api/task-runs/"+q.RunID, nil, "key-one")
		return strings.Contains(string(r.Body), `"status":"completed"`)
	})
}
