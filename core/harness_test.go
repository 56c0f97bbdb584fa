package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/internal/fakeworker"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	_ "github.com/pipeweave/pipeweave/core/storage/drivers" // the tests configure every provider
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const testSecret = testorch.Secret

// env is one orchestrator on a fresh database, served over real HTTP.
type env struct {
	t          *testing.T
	pool       *pgxpool.Pool
	orch       *core.Orchestrator
	cfg        core.Config
	url        string
	keys       token.Keys
	storageDir string
	logs       *testutil.SyncBuffer
	// sig waits for the engine's commits (waitStatus, waitRun).
	sig core.EngineSignals
}

// newEnv starts an orchestrator in serverless mode (no loop: tests drive Process themselves)
// unless mod changes the configuration.
func newEnv(t *testing.T, mod ...func(*core.Config)) *env {
	t.Helper()
	pool := testdb.New(t)
	return newEnvOn(t, pool, mod...)
}

// newEnvOn starts another orchestrator instance on an existing database.
func newEnvOn(t *testing.T, pool *pgxpool.Pool, mod ...func(*core.Config)) *env {
	t.Helper()
	return newEnvWith(t, pool, core.Options{}, mod...)
}

// signalsOf holds, for each test database, the first orchestrator on it, whose engine
// signals the other instances on it share.
var signalsOf sync.Map // *pgxpool.Pool → *core.Orchestrator

// newEnvWith is newEnvOn with options for core.New (the harness sets their Logger and Pool).
func newEnvWith(t *testing.T, pool *pgxpool.Pool, opts core.Options, mod ...func(*core.Config)) *env {
	t.Helper()
	var sig core.EngineSignals
	o := testorch.Start(t, testorch.Options{Pool: pool, Core: core.Options{TracerProvider: opts.TracerProvider},
		Configure: func(cfg *core.Config) {
			cfg.MaxBodyBytes = 1 << 20
			for _, m := range mod {
				m(cfg)
			}
		},
		BeforeServe: func(o *core.Orchestrator) {
			// The instances of one database share one set of signals.
			first, shared := signalsOf.LoadOrStore(pool, o)
			if shared {
				sig = o.ShareEngineSignals(first.(*core.Orchestrator))
				return
			}
			t.Cleanup(func() { signalsOf.Delete(pool) })
			sig = o.EngineSignals()
		}})
	keys, err := token.DeriveKeys(testSecret)
	require.NoError(t, err)
	return &env{t: t, pool: pool, orch: o.Orchestrator, cfg: o.Config, url: o.URL, keys: keys, storageDir: o.StorageDir, logs: o.Logs, sig: sig}
}

// runLoop runs the standalone loop until the test ends.
func (e *env) runLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.orch.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
}

type response struct {
	Status int
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

func (r response) errorBody(t *testing.T) protocol.ErrorBody {
	t.Helper()
	var b protocol.ErrorBody
	r.json(t, &b)
	require.NotEmpty(t, b.Error, "error sentence missing: %s", r.Body)
	require.NotEmpty(t, b.Code, "error code missing: %s", r.Body)
	return b
}

// do sends a request with a raw body (string or []byte or a value to encode) and bearer token.
func (e *env) do(method, path string, body any, bearer string) response {
	e.t.Helper()
	r, err := e.send(method, path, body, bearer)
	require.NoError(e.t, err)
	return r
}

// send is do for goroutines, which must not call require: it returns what went wrong.
func (e *env) send(method, path string, body any, bearer string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read the answer to %s %s: %w", method, path, err)
	}
	return response{Status: resp.StatusCode, Body: raw}, nil
}

// regToken signs a registration of serviceID with body (the exact bytes sent) under the
// service's key, as the service's worker does.
func (e *env) regToken(serviceID string, body []byte) string {
	tok, err := e.serviceKeys(serviceID).SignRegistration(serviceID, body, time.Now())
	require.NoError(e.t, err)
	return tok
}

// serviceKeys are the keys of a worker of serviceID (from testSecret's service key).
func (e *env) serviceKeys(serviceID string) token.Keys {
	e.t.Helper()
	svc, err := token.ServiceKey(testSecret, serviceID)
	require.NoError(e.t, err)
	k, err := token.ServiceKeys(svc)
	require.NoError(e.t, err)
	return k
}

// postReg posts a registration (a value to encode, or raw string or []byte) signed for
// serviceID and bound to its body.
func (e *env) postReg(serviceID string, body any) response {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(e.t, err)
	}
	return e.do("POST", "/api/register", raw, e.regToken(serviceID, raw))
}

// register registers a service with the given tasks and returns the response.
func (e *env) register(serviceID, version, baseURL string, tasks ...protocol.TaskDefinition) protocol.RegisterResponse {
	e.t.Helper()
	r := e.postReg(serviceID, protocol.RegisterRequest{ServiceID: serviceID, Version: version, BaseURL: baseURL, Tasks: tasks})
	require.Equal(e.t, http.StatusOK, r.Status, "register: %s", r.Body)
	var out protocol.RegisterResponse
	r.json(e.t, &out)
	return out
}

type enqueued struct {
	RunID        string                 `json:"runId"`
	Status       protocol.TaskRunStatus `json:"status"`
	TaskID       string                 `json:"taskId"`
	InputPath    string                 `json:"inputPath"`
	Deduplicated bool                   `json:"deduplicated"`
}

func (e *env) enqueue(body map[string]any) enqueued {
	e.t.Helper()
	r := e.do("POST", "/api/queue/task", body, "")
	require.Equal(e.t, http.StatusCreated, r.Status, "enqueue: %s", r.Body)
	var out enqueued
	r.json(e.t, &out)
	return out
}

// enqueueMany queues n runs of taskID with one batch call.
func (e *env) enqueueMany(taskID string, n int) []string {
	e.t.Helper()
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"taskId": taskID, "input": map[string]int{"i": i}}
	}
	r := e.do("POST", "/api/queue/batch", map[string]any{"tasks": tasks}, "")
	require.Equal(e.t, http.StatusCreated, r.Status, "batch: %s", r.Body)
	var out struct {
		Queued  int        `json:"queued"`
		Results []enqueued `json:"results"`
	}
	r.json(e.t, &out)
	require.Equal(e.t, n, out.Queued)
	ids := make([]string, n)
	for i, x := range out.Results {
		ids[i] = x.RunID
	}
	return ids
}

type run struct {
	ID               string                 `json:"id"`
	TaskID           string                 `json:"taskId"`
	Status           protocol.TaskRunStatus `json:"status"`
	Attempt          int                    `json:"attempt"`
	Priority         int                    `json:"priority"`
	Error            *string                `json:"error"`
	ErrorCode        *string                `json:"errorCode"`
	PreviousAttempts []protocol.Attempt     `json:"previousAttempts"`
	CodeVersion      int                    `json:"codeVersion"`
	CodeHash         string                 `json:"codeHash"`
	InputPath        string                 `json:"inputPath"`
	OutputPath       *string                `json:"outputPath"`
	OutputSize       *int64                 `json:"outputSize"`
	Progress         *int                   `json:"progress"`
	ProgressMessage  string                 `json:"progressMessage"`
	CreatedAt        time.Time              `json:"createdAt"`
	CompletedAt      *time.Time             `json:"completedAt"`
	ScheduleID       string                 `json:"scheduleId"`
	ScheduleSlot     *time.Time             `json:"scheduleSlot"`
}

func (e *env) run(id string) run {
	e.t.Helper()
	r := e.do("GET", "/api/task-runs/"+id, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "run: %s", r.Body)
	var out run
	r.json(e.t, &out)
	return out
}

func (e *env) process() core.Summary {
	e.t.Helper()
	s, err := e.orch.Process(context.Background())
	require.NoError(e.t, err)
	return s
}

// waitFor polls cond until it holds; it fails the test after a generous limit. It checks
// eventual state, never speed. It is for what no commit signals (waitMoved) and the worker does
// not record (worker.waitUntil): time passing, an outage ending, the test's own goroutines.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus waits until task run id is in status: it reads the run, and again after each
// commit that moved the run on (a callback, a dispatch, the sweep); a commit made before a read
// is seen by it, one made after it is signalled. It fails the test if no such commit comes
// within a generous limit.
func (e *env) waitStatus(id string, status protocol.TaskRunStatus) run {
	e.t.Helper()
	for {
		e.sig.Drain()
		r := e.run(id)
		if r.Status == status {
			return r
		}
		what := waiting{e.t, fmt.Sprintf("run %s to be %s (it is %s)", id, status, r.Status)}
		for moved := ""; moved != id; {
			moved, _ = e.sig.RunStatus(what)
		}
	}
}

// waitMoved waits until cond holds: it evaluates cond, and again after each commit that moved
// any task run on (a callback, a dispatch, the sweep). It fails the test if cond still fails
// when no such commit came for a generous limit, so cond must not wait for time to pass.
func (e *env) waitMoved(what string, cond func() bool) {
	e.t.Helper()
	for {
		e.sig.Drain()
		if cond() {
			return
		}
		e.sig.RunStatus(waiting{e.t, what})
	}
}

// waiting is a test whose failures say what it was waiting for.
type waiting struct {
	*testing.T
	what string
}

// Fatalf fails the test, naming what it waited for.
func (w waiting) Fatalf(format string, args ...any) {
	w.T.Helper()
	w.T.Fatalf("waiting for %s: "+format, append([]any{w.what}, args...)...)
}

// worker is a real HTTP worker. By default it acknowledges every dispatch with 202 and, when
// autoComplete is set, calls back success from a goroutine.
type worker struct {
	*fakeworker.Worker
	t    *testing.T
	srv  *httptest.Server
	orch string

	mu   sync.Mutex
	seen map[string]int // "run/attempt" → times dispatched
	// changed is closed, and replaced, when the worker recorded something (a dispatch; a
	// pworker's answer to a callback): waitUntil waits on it.
	changed chan struct{}

	// answer picks the HTTP status for a dispatch (default 202).
	answer func(d protocol.DispatchRequest) int
	// after runs in a goroutine after a dispatch was acknowledged.
	after func(d protocol.DispatchRequest)
}

// newWorker serves a fakeworker that records every dispatch and answers it with w.answer and
// w.after.
func newWorker(t *testing.T, orchURL string) *worker {
	w := &worker{t: t, orch: orchURL, seen: map[string]int{}, changed: make(chan struct{})}
	api, err := apiclient.New(orchURL, "")
	require.NoError(t, err)
	w.Worker = fakeworker.New(api, fakeworker.Options{
		Record: true,
		Answer: func(d protocol.DispatchRequest) int {
			w.mu.Lock()
			w.seen[fmt.Sprintf("%s/%d", d.RunID, d.Attempt)]++
			w.notifyLocked() // the dispatch is recorded already
			answer := w.answer
			w.mu.Unlock()
			if answer == nil {
				return http.StatusAccepted
			}
			return answer(d)
		},
		After: func(d protocol.DispatchRequest) {
			w.mu.Lock()
			after := w.after
			w.mu.Unlock()
			if after != nil {
				after(d)
			}
		},
	})
	w.srv = httptest.NewServer(w.Handler())
	t.Cleanup(w.srv.Close)
	return w
}

func (w *worker) URL() string { return w.srv.URL }

func (w *worker) all() []protocol.DispatchRequest { return w.Dispatches() }

// notify wakes waitUntil after the worker recorded something.
func (w *worker) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notifyLocked()
}

// notifyLocked is notify for a caller that holds w.mu.
func (w *worker) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitUntil waits until cond holds: it evaluates cond, and again each time the worker recorded
// something (woken, not polling). It fails the test when cond still fails after a generous limit.
func (w *worker) waitUntil(what string, cond func() bool) {
	w.t.Helper()
	limit := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-limit:
			w.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitDispatches waits until the worker has received n dispatches in all; it fails the test if
// more arrived, or too few after a generous limit.
func (w *worker) waitDispatches(n int) {
	w.t.Helper()
	w.waitUntil(fmt.Sprintf("%d dispatches", n), func() bool { return w.count() >= n })
	require.Equal(w.t, n, w.count(), "dispatches received")
}

func (w *worker) count() int { return len(w.Dispatches()) }

// post sends a worker call to the orchestrator (callback, heartbeat) with a run token.
func post(url string, body any, tok string) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest("POST", url, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func (w *worker) callback(d protocol.DispatchRequest, body protocol.CallbackRequest) (int, []byte) {
	status, out, err := post(w.orch+"/api/callback/"+d.RunID, body, d.StorageToken)
	if err != nil {
		w.t.Errorf("callback %s: %v", d.RunID, err)
	}
	return status, out
}

func (w *worker) heartbeat(d protocol.DispatchRequest, progress *int, msg string) (int, protocol.HeartbeatResponse) {
	status, out, err := post(w.orch+"/api/heartbeat", protocol.HeartbeatRequest{RunID: d.RunID, Progress: progress, Message: msg}, d.StorageToken)
	require.NoError(w.t, err)
	var hb protocol.HeartbeatResponse
	require.NoError(w.t, json.Unmarshal(out, &hb), "heartbeat body: %s", out)
	return status, hb
}

// result is the success callback of a worker whose output is output, as the Go SDK makes it:
// inline when the dispatch allows that size, else written to the local backend first. It runs
// in the worker's goroutines: a failed write is reported with Errorf.
func (e *env) result(d protocol.DispatchRequest, output string) protocol.CallbackRequest {
	cb := protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID), OutputSize: int64(len(output))}
	if cb.OutputSize <= d.OutputInlineMax {
		cb.Output = json.RawMessage(output)
		return cb
	}
	p := filepath.Join(e.storageDir, filepath.FromSlash(cb.OutputPath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Errorf("store the output of %s: %v", d.RunID, err)
	} else if err := os.WriteFile(p, []byte(output), 0o644); err != nil {
		e.t.Errorf("store the output of %s: %v", d.RunID, err)
	}
	return cb
}

func success(d protocol.DispatchRequest) protocol.CallbackRequest {
	return protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID), OutputSize: 2}
}

func task(id string, mods ...func(*protocol.TaskDefinition)) protocol.TaskDefinition {
	td := protocol.TaskDefinition{ID: id, CodeHash: "hash-" + id}
	for _, m := range mods {
		m(&td)
	}
	return td
}

func ptr[T any](v T) *T { return &v }

func withRetries(n int, delayMs int64) func(*protocol.TaskDefinition) {
	return func(td *protocol.TaskDefinition) {
		td.Retries = ptr(n)
		td.RetryDelayMs = ptr(delayMs)
		td.RetryBackoff = protocol.BackoffFixed
	}
}

func withConcurrency(n int) func(*protocol.TaskDefinition) {
	return func(td *protocol.TaskDefinition) { td.Concurrency = ptr(n) }
}

func withHeartbeat(ms int64) func(*protocol.TaskDefinition) {
	return func(td *protocol.TaskDefinition) { td.HeartbeatIntervalMs = ptr(ms) }
}

// storedObject is the answer of GET /api/storage/{path}.
type storedObject struct {
	Path        string          `json:"path"`
	Backend     string          `json:"backend"`
	ContentType string          `json:"contentType"`
	Encoding    string          `json:"encoding"`
	Size        int64           `json:"size"`
	Content     json.RawMessage `json:"content"`
}

// object reads path as every reader does, through GET /api/storage/{path} (inline payloads
// and objects in the backend alike); it requires a JSON object of the default backend "local".
func (e *env) object(path string) storedObject {
	e.t.Helper()
	r := e.do("GET", "/api/storage/"+path, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "GET /api/storage/%s: %s", path, r.Body)
	var o storedObject
	r.json(e.t, &o)
	require.Equal(e.t, path, o.Path)
	require.Equal(e.t, "local", o.Backend)
	require.Equal(e.t, "application/json", o.ContentType)
	require.Equal(e.t, "json", o.Encoding)
	require.Equal(e.t, int64(len(o.Content)), o.Size)
	return o
}

// inStorage reports whether path is a file of the local backend: with inline payloads on, a
// small input or output never is.
func (e *env) inStorage(path string) bool {
	e.t.Helper()
	_, err := os.Stat(filepath.Join(e.storageDir, filepath.FromSlash(path)))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	require.NoError(e.t, err)
	return true
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// count runs a SELECT count(*) … query on the test database.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// configEnv is a getenv for core.ConfigFromEnv: the required variables with valid values,
// with over's entries on top (an entry "" unsets one).
func configEnv(over map[string]string) func(string) string {
	base := map[string]string{
		"DATABASE_URL":         "postgres://u@localhost/db",
		"STORAGE_BACKENDS":     `[{"id":"l","provider":"local","credentials":{"basePath":"/tmp/x"}}]`,
		"PIPEWEAVE_SECRET_KEY": testSecret,
	}
	return func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return base[k]
	}
}

// recv waits for a value on ch; it fails the test after a generous limit. It checks that
// something happens, never how fast.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
