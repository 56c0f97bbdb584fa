package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/fakeworker"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const testSecret = testorch.Secret

// functionNames are the four commands under functions/.
var functionNames = []string{"api", "process", "heartbeat-sweep", "dlq-purge"}

// buildFunctions builds the four functions the way they are packaged for Lambda, with the
// Makefile's flags (CGO_ENABLED=0, -tags lambda.norpc, -trimpath, -ldflags=-s -w; the same as
// functions/internal/coldstart, so that a cold build cache compiles the dependencies once for
// all three): the same binary is the Lambda bootstrap and, outside Lambda, the Cloud Run server. It returns the binaries by name; the tests running at the same time share them.
func buildFunctions(t *testing.T) map[string]string {
	t.Helper()
	skipShort(t)
	dir := shared(t, "functions", func(dir string) error {
		args := []string{"build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
		for _, n := range functionNames {
			args = append(args, "github.com/pipeweave/pipeweave/functions/"+n)
		}
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %v: %w\n%s", args, err, out)
		}
		return nil
	})
	bins := map[string]string{}
	for _, n := range functionNames {
		bins[n] = filepath.Join(dir, n)
	}
	return bins
}

// artifacts are directories of built binaries shared by the tests that run at the same time:
// the last test to end removes one, and a later test builds it again.
var artifacts struct {
	mu    sync.Mutex
	byKey map[string]*artifact
}

type artifact struct {
	once  sync.Once
	dir   string
	err   error
	users int
}

// shared returns the directory that build filled for key, building it on first use.
func shared(t *testing.T, key string, build func(dir string) error) string {
	t.Helper()
	artifacts.mu.Lock()
	if artifacts.byKey == nil {
		artifacts.byKey = map[string]*artifact{}
	}
	a := artifacts.byKey[key]
	if a == nil {
		a = &artifact{}
		artifacts.byKey[key] = a
	}
	a.users++
	artifacts.mu.Unlock()
	t.Cleanup(func() {
		artifacts.mu.Lock()
		defer artifacts.mu.Unlock()
		if a.users--; a.users == 0 {
			delete(artifacts.byKey, key)
			if a.dir != "" {
				_ = os.RemoveAll(a.dir)
			}
		}
	})
	a.once.Do(func() {
		a.dir, a.err = os.MkdirTemp("", "pipeweave-functions-test-"+key+"-")
		if a.err == nil {
			a.err = build(a.dir)
		}
	})
	require.NoError(t, a.err)
	return a.dir
}

// functionEnv is the environment of a function on the database at dbURL.
func functionEnv(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	backends, err := json.Marshal([]map[string]any{{"id": "local", "provider": "local", "credentials": map[string]string{"basePath": t.TempDir()}}})
	require.NoError(t, err)
	return map[string]string{
		"DATABASE_URL":         dbURL,
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": testSecret,
		"DISPATCH_TIMEOUT_MS":  "5000",

		"PIPEWEAVE_INSECURE_NO_AUTH": "1", "PIPEWEAVE_ALLOWED_HOSTS": "*", // the API events name API Gateway hosts
		"WORKER_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128", // the test workers listen on loopback
	}
}

func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// proc is a child process that is stopped (SIGTERM, then SIGKILL) when the test ends.
type proc struct {
	name   string
	cmd    *exec.Cmd
	output *testutil.SyncBuffer
	done   chan struct{}
	err    error
	// graceful: the process must exit with status 0 on SIGTERM at the end of the test.
	graceful bool
}

// startProc starts bin with only env (plus PATH, HOME and TMPDIR) in its environment. When the
// test ends it is sent SIGTERM and, when graceful, must exit with status 0.
func startProc(t *testing.T, name, bin string, args []string, env map[string]string, graceful bool) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(bin)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{name: name, cmd: cmd, output: &testutil.SyncBuffer{}, done: make(chan struct{}), graceful: graceful}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	cmd.SysProcAttr = childAttr()
	require.NoError(t, cmd.Start(), "start %s", name)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		err := p.stop(15 * time.Second)
		if p.graceful {
			require.NoError(t, err, "%s did not shut down cleanly; output:\n%s", name, p.output)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.output)
		}
	})
	return p
}

// stop sends SIGTERM, waits up to grace, then kills; it returns how the process ended.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed", p.name, grace)
	}
}

// serveHTTP runs a function binary as a Cloud Run style server on a free $PORT and returns its
// base URL once it answers /health (with any status: the database may be down on purpose).
func serveHTTP(t *testing.T, name, bin string, env map[string]string) string {
	t.Helper()
	port := testutil.FreePort(t)
	p := startProc(t, name, bin, nil, with(env, "PORT", strconv.Itoa(port)), true)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return true
	}, 30*time.Second, 5*time.Millisecond, "%s did not start; output:\n%s", name, p.output)
	return base
}

// do sends a JSON request and returns the status, headers and body.
func do(t *testing.T, method, url string, body any, bearer string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// doJSON sends a request, requires the status and decodes the answer into out.
func doJSON(t *testing.T, method, url string, body any, status int, out any) {
	t.Helper()
	got, _, raw := do(t, method, url, body, "")
	require.Equal(t, status, got, "%s %s: %s", method, url, raw)
	if out != nil {
		require.NoError(t, json.Unmarshal(raw, out), "%s", raw)
	}
}

// register registers the worker's service with the tasks and pipelines through the API.
func register(t *testing.T, apiURL string, req protocol.RegisterRequest) {
	t.Helper()
	body, err := json.Marshal(req)
	require.NoError(t, err)
	tok, err := token.SignServiceRegistration(testSecret, req.ServiceID, body, time.Now())
	require.NoError(t, err)
	status, _, raw := do(t, "POST", apiURL+"/api/register", json.RawMessage(body), tok)
	require.Equal(t, http.StatusOK, status, "register: %s", raw)
}

func openPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := database.Open(context.Background(), dbURL, database.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// worker is a real HTTP worker (a fakeworker). It answers 503 (back-pressure, the worker is
// busy) to the first dispatch of each run of the busy tasks, never calls back for the silent
// tasks, and otherwise acknowledges with 202 and calls back success to the orchestrator from a
// goroutine.
type worker struct {
	*fakeworker.Worker
	t *testing.T

	mu        sync.Mutex
	busy      map[string]bool
	silent    map[string]bool
	requests  map[string]int // run → dispatch requests
	accepted  map[string]int // "run/attempt" → dispatches answered 202
	byTask    map[string][]protocol.DispatchRequest
	callbacks []int
}

func newWorker(t *testing.T, orchURL string) *worker {
	w := &worker{t: t, busy: map[string]bool{}, silent: map[string]bool{}, requests: map[string]int{},
		accepted: map[string]int{}, byTask: map[string][]protocol.DispatchRequest{}}
	orch, err := apiclient.New(orchURL, "")
	require.NoError(t, err)
	w.Worker, err = fakeworker.Start(orch, fakeworker.Options{Answer: w.answer, After: w.callback})
	require.NoError(t, err)
	t.Cleanup(func() {
		w.Wait()
		w.Close()
	})
	return w
}

func (w *worker) answer(d protocol.DispatchRequest) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests[d.RunID]++
	if w.busy[d.TaskID] && w.requests[d.RunID] == 1 {
		return http.StatusServiceUnavailable
	}
	w.accepted[fmt.Sprintf("%s/%d", d.RunID, d.Attempt)]++
	w.byTask[d.TaskID] = append(w.byTask[d.TaskID], d)
	return http.StatusAccepted
}

func (w *worker) callback(d protocol.DispatchRequest) {
	w.mu.Lock()
	silent := w.silent[d.TaskID]
	w.mu.Unlock()
	if silent {
		return
	}
	_, err := w.Callback(context.Background(), d, fakeworker.Success(d))
	status := apiclient.StatusOf(err)
	switch {
	case err == nil:
		status = http.StatusOK
	case status == 0:
		w.t.Errorf("callback %s: %v", d.RunID, err)
		return
	}
	w.mu.Lock()
	w.callbacks = append(w.callbacks, status)
	w.mu.Unlock()
}

func (w *worker) set(m map[string]bool, tasks ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, task := range tasks {
		m[task] = true
	}
}

// requireEachRunAcceptedOnce checks that every (run, attempt) was acknowledged exactly once,
// that the runs were dispatched at most maxRequests times in all, and that every callback got
// 200.
func (w *worker) requireEachRunAcceptedOnce(t *testing.T, runs []string, maxRequests int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, n := range w.accepted {
		require.Equal(t, 1, n, "(run, attempt) %s was dispatched and acknowledged %d times", key, n)
	}
	for _, id := range runs {
		require.LessOrEqual(t, w.requests[id], maxRequests, "run %s was dispatched %d times", id, w.requests[id])
	}
	for _, s := range w.callbacks {
		require.Equal(t, http.StatusOK, s, "a callback was refused")
	}
}

func (w *worker) dispatchesOf(task string) []protocol.DispatchRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]protocol.DispatchRequest(nil), w.byTask[task]...)
}

// skipShort skips a test that builds the function binaries (and the Lambda emulator) and runs
// them as processes: the longest tests of the repository, left to the full run (scripts/test
// without --short, CI), as functions/internal/coldstart does.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building and running the function binaries")
	}
}
