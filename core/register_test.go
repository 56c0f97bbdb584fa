package core_test

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

func TestRegistrationTracksCodeVersionsAndHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.register("pdf", "1.0.0", "http://127.0.0.1:9", task("download"), task("extract"))
	require.Empty(t, res.CodeChanges, "new tasks are not changes")
	require.Empty(t, res.OrphanedTasks)

	// Same hashes: nothing changes.
	res = e.register("pdf", "1.0.1", "http://127.0.0.1:9", task("download"), task("extract"))
	require.Empty(t, res.CodeChanges)

	res = e.register("pdf", "1.1.0", "http://127.0.0.1:9", task("download", func(td *protocol.TaskDefinition) { td.CodeHash = "new" }), task("extract"))
	require.Equal(t, []protocol.CodeChange{{TaskID: "download", OldHash: "hash-download", NewHash: "new", OldVersion: 1, NewVersion: 2}}, res.CodeChanges)

	var hist []struct {
		CodeVersion    int       `json:"codeVersion"`
		CodeHash       string    `json:"codeHash"`
		ServiceVersion string    `json:"serviceVersion"`
		RecordedAt     time.Time `json:"recordedAt"`
	}
	e.do("GET", "/api/tasks/download/history", nil, "").json(t, &hist)
	require.Len(t, hist, 2)
	require.Equal(t, 2, hist[0].CodeVersion)
	require.Equal(t, "new", hist[0].CodeHash)
	require.Equal(t, "1.1.0", hist[0].ServiceVersion)
	require.Equal(t, 1, hist[1].CodeVersion)
	require.Equal(t, "1.0.0", hist[1].ServiceVersion)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/tasks/nope/history", nil, "").Status)

	var services []struct {
		ID      string   `json:"id"`
		Version string   `json:"version"`
		BaseURL string   `json:"baseUrl"`
		Tasks   []string `json:"tasks"`
	}
	e.do("GET", "/api/services", nil, "").json(t, &services)
	require.Len(t, services, 1)
	require.Equal(t, "1.1.0", services[0].Version)
	require.Equal(t, []string{"download", "extract"}, services[0].Tasks)

	var tasks []struct {
		ID                  string   `json:"id"`
		CodeVersion         int      `json:"codeVersion"`
		Timeout             int      `json:"timeout"`
		Retries             int      `json:"retries"`
		RetryBackoff        string   `json:"retryBackoff"`
		HeartbeatIntervalMs int64    `json:"heartbeatIntervalMs"`
		Priority            int      `json:"priority"`
		IdempotencyTTL      int      `json:"idempotencyTTL"`
		MaxRetryDelayMs     int64    `json:"maxRetryDelayMs"`
		AllowedNext         []string `json:"allowedNext"`
	}
	e.do("GET", "/api/services/pdf/tasks", nil, "").json(t, &tasks)
	require.Len(t, tasks, 2)
	require.Equal(t, 2, tasks[0].CodeVersion)
	// The seed's defaults.
	require.Equal(t, 300, tasks[1].Timeout)
	require.Equal(t, 3, tasks[1].Retries)
	require.Equal(t, "exponential", tasks[1].RetryBackoff)
	require.Equal(t, int64(60000), tasks[1].HeartbeatIntervalMs)
	require.Equal(t, 100, tasks[1].Priority)
	require.Equal(t, 86400, tasks[1].IdempotencyTTL)
	require.Equal(t, int64(86400000), tasks[1].MaxRetryDelayMs)
	require.Equal(t, []string{}, tasks[1].AllowedNext)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/services/nope/tasks", nil, "").Status)
}

// A new service version that drops a task orphans it and cancels its runs that have not
// started; the same version registering again cancels nothing.
func TestOrphanCleanupOnVersionChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1.0.0", w.URL(), task("keep"), task("upload"))
	queued := e.enqueueManyQuiet("upload", 3)

	res := e.register("svc", "1.0.0", w.URL(), task("keep"))
	require.Empty(t, res.OrphanedTasks, "same version cancels nothing")
	for _, id := range queued {
		require.Equal(t, protocol.StatusPending, e.run(id).Status)
	}

	res = e.register("svc", "2.0.0", w.URL(), task("keep"))
	require.Equal(t, []string{"upload"}, res.OrphanedTasks)
	for _, id := range queued {
		r := e.run(id)
		require.Equal(t, protocol.StatusCancelled, r.Status)
		require.Equal(t, "Task type removed in version 2.0.0", *r.Error)
	}
	// The orphan can no longer be queued.
	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "upload"}, "")
	require.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
	// Re-registering it brings it back.
	e.register("svc", "3.0.0", w.URL(), task("keep"), task("upload"))
	e.enqueue(map[string]any{"taskId": "upload"})
}

func TestRegistrationAuthAndValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: "http://127.0.0.1:9", Tasks: []protocol.TaskDefinition{task("a")}}

	raw, err := json.Marshal(body)
	require.NoError(t, err)
	forged, err := token.SignServiceRegistration("another secret that is long enough to be used", "svc", raw, time.Now())
	require.NoError(t, err)
	expired, err := e.serviceKeys("svc").SignRegistration("svc", raw, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	runTok, err := e.keys.SignRun(token.RunClaims{RunID: "svc", TaskID: "a", Attempt: 1, Lease: 1, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)})
	require.NoError(t, err)
	// Protocol v1: signed with the master-derived K_reg, without bsh; and with bsh.
	v1, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "svc", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}).SignedString(masterRegKey(t))
	require.NoError(t, err)
	masterBsh, err := e.keys.SignRegistration("svc", raw, time.Now())
	require.NoError(t, err)
	for name, tok := range map[string]string{
		"missing":            "",
		"forged":             forged,
		"expired":            expired,
		"other service":      e.regToken("someone-else", raw),
		"run token":          runTok,
		"garbage":            "not.a.jwt",
		"v1 master, no bsh":  v1,
		"master K_reg + bsh": masterBsh,
	} {
		r := e.do("POST", "/api/register", raw, tok)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", name, r.Body)
		msg := r.errorBody(t).Error
		// A token signed with another key says so: the worker's key and the orchestrator's
		// secret differ. Other refusals do not claim that.
		if name == "forged" || name == "run token" || name == "v1 master, no bsh" || name == "master K_reg + bsh" {
			require.Contains(t, msg, `the worker's service key does not match the key this orchestrator derives from its secret (PIPEWEAVE_SECRET_KEY) for service "svc"`, name)
			require.Contains(t, msg, "pipeweave token service --service \"svc\"", name)
		} else {
			require.NotContains(t, msg, "does not match", name)
		}
	}
	var n int
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT count(*) FROM services").Scan(&n))
	require.Zero(t, n, "a refused registration writes nothing")

	bad := map[string]protocol.RegisterRequest{
		"bad base url":      {ServiceID: "svc", Version: "1", BaseURL: "ftp://x"},
		"no version":        {ServiceID: "svc", BaseURL: "http://x"},
		"task without hash": {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{{ID: "a"}}},
		"bad task id":       {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{{ID: "a/b", CodeHash: "h"}}},
		"duplicate task":    {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{task("a"), task("a")}},
		"negative retries":  {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{task("a", withRetries(-1, 0))}},
		"bad backoff":       {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{task("a", func(td *protocol.TaskDefinition) { td.RetryBackoff = "linear" })}},
		"zero heartbeat":    {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{task("a", withHeartbeat(0))}},
		"negative priority": {ServiceID: "svc", Version: "1", BaseURL: "http://x", Tasks: []protocol.TaskDefinition{task("a", func(td *protocol.TaskDefinition) { td.Priority = ptr(-1) })}},
	}
	for name, req := range bad {
		r := e.postReg(req.ServiceID, req)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		r.errorBody(t)
	}
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT count(*) FROM services").Scan(&n))
	require.Zero(t, n)

	// A task id belongs to one service.
	e.register("svc", "1", "http://127.0.0.1:9", task("a"))
	r := e.postReg("thief", protocol.RegisterRequest{ServiceID: "thief", Version: "1", BaseURL: "http://127.0.0.1:9",
		Tasks: []protocol.TaskDefinition{task("a")}})
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "TASK_OWNED_BY_OTHER_SERVICE", r.errorBody(t).Code)
	require.NoError(t, e.pool.QueryRow(t.Context(), "SELECT count(*) FROM services WHERE id = 'thief'").Scan(&n))
	require.Zero(t, n, "the refused registration left nothing behind")
}

// masterRegKey is K_reg derived from the master secret (protocol v1's registration key).
func masterRegKey(t *testing.T) []byte {
	t.Helper()
	s, err := hex.DecodeString(testSecret)
	require.NoError(t, err)
	k, err := hkdf.Key(sha256.New, s, nil, "pipeweave/v1/register", 32)
	require.NoError(t, err)
	return k
}

// Orphan cleanup cancels only the runs that have not started: the orphaned task's runs in
// flight stay running and their workers still report them to the end.
func TestOrphanCleanupLeavesRunsInFlightAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1.0.0", w.URL(), task("keep"), task("upload", withConcurrency(2)))
	ids := e.enqueueManyQuiet("upload", 3)
	require.Equal(t, 2, e.process().Dispatched)
	inFlight := w.all()
	require.Len(t, inFlight, 2)
	for _, d := range inFlight {
		require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status)
	}

	res := e.register("svc", "2.0.0", w.URL(), task("keep"))
	require.Equal(t, []string{"upload"}, res.OrphanedTasks)
	cancelled := 0
	for _, id := range ids {
		r := e.run(id)
		if r.Status == protocol.StatusCancelled {
			cancelled++
			continue
		}
		require.Equal(t, protocol.StatusRunning, r.Status, "run %s", id)
	}
	require.Equal(t, 1, cancelled, "only the run that had not started")
	for _, d := range inFlight {
		status, hb := w.heartbeat(d, ptr(50), "")
		require.Equal(t, http.StatusOK, status)
		require.False(t, hb.ShouldCancel)
		status, body := w.callback(d, success(d))
		require.Equal(t, http.StatusOK, status, "%s", body)
		require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)
	}
}
