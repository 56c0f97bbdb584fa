package worker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
	"github.com/pipeweave/pipeweave/worker"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const testSecret = testorch.Secret

// env is a real orchestrator (serverless mode: requests dispatch inline) on a fresh database,
// with a local storage backend, served over HTTP.
type env struct {
	t          *testing.T
	o          *testorch.Orchestrator
	orch       *core.Orchestrator
	url        string
	storageDir string
}

// newEnv starts the orchestrator; mod changes its configuration (testorch.EachInlineThreshold
// passes the inline payload threshold).
func newEnv(t *testing.T, mod ...func(*core.Config)) *env {
	t.Helper()
	o := testorch.Start(t, testorch.Options{Configure: func(c *core.Config) {
		for _, m := range mod {
			m(c)
		}
	}})
	return &env{t: t, o: o, orch: o.Orchestrator, url: o.URL, storageDir: o.StorageDir}
}

// testWorker is a worker served by an httptest server.
type testWorker struct {
	*worker.Worker
	url     string
	tempDir string
	logs    *testutil.SyncBuffer
}

// newWorker makes a worker of service for the orchestrator; mod adjusts its configuration.
// Register its tasks, then call register.
func (e *env) newWorker(service string, mod ...func(*worker.Config)) *testWorker {
	e.t.Helper()
	w := e.o.Worker(e.t, service, mod...)
	return &testWorker{Worker: w.Worker, url: w.Config.BaseURL, tempDir: w.Config.TempDir, logs: w.Logs}
}

// quietLogger discards everything.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// register registers the worker's tasks with the orchestrator.
func (w *testWorker) register(t *testing.T) protocol.RegisterResponse {
	t.Helper()
	resp, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
	return resp
}

// tempEntries lists what is left in the worker's temporary directory.
func (w *testWorker) tempEntries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(w.tempDir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

type response struct {
	Status int
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// do sends a JSON request to base+path.
func do(t *testing.T, method, url string, body any, header http.Header) response {
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
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{Status: resp.StatusCode, Body: raw}
}

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	return do(e.t, method, e.url+path, body, nil)
}

// enqueue queues a standalone run of taskID and returns its id.
func (e *env) enqueue(taskID string, input any) string {
	e.t.Helper()
	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": taskID, "input": input})
	require.Equal(e.t, http.StatusCreated, r.Status, "enqueue: %s", r.Body)
	var out struct {
		RunID string `json:"runId"`
	}
	r.json(e.t, &out)
	return out.RunID
}

// trigger starts a run of pipeline with input and returns its id.
func (e *env) trigger(pipeline string, input any) string {
	e.t.Helper()
	r := e.do("POST", "/api/pipelines/"+pipeline+"/trigger", map[string]any{"input": input})
	require.Equal(e.t, http.StatusCreated, r.Status, "trigger: %s", r.Body)
	var out struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	r.json(e.t, &out)
	return out.PipelineRunID
}

// run is a task run as GET /api/task-runs/{id} shows it.
type run struct {
	ID               string                    `json:"id"`
	TaskID           string                    `json:"taskId"`
	Status           protocol.TaskRunStatus    `json:"status"`
	Attempt          int                       `json:"attempt"`
	Error            *string                   `json:"error"`
	ErrorCode        *string                   `json:"errorCode"`
	PreviousAttempts []protocol.Attempt        `json:"previousAttempts"`
	CodeVersion      int                       `json:"codeVersion"`
	CodeHash         string                    `json:"codeHash"`
	OutputPath       *string                   `json:"outputPath"`
	OutputSize       *int64                    `json:"outputSize"`
	Assets           map[string]protocol.Asset `json:"assets"`
	LogsPath         *string                   `json:"logsPath"`
	Progress         *int                      `json:"progress"`
	ProgressMessage  string                    `json:"progressMessage"`
}

func (e *env) run(id string) run {
	e.t.Helper()
	r := e.do("GET", "/api/task-runs/"+id, nil)
	require.Equal(e.t, http.StatusOK, r.Status, "run: %s", r.Body)
	var out run
	r.json(e.t, &out)
	return out
}

// pipelineRun is a pipeline run as GET /api/runs/{id} shows it.
type pipelineRun struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Tasks  []struct {
		ID     string `json:"id"`
		TaskID string `json:"taskId"`
		Status string `json:"status"`
	} `json:"tasks"`
}

func (p pipelineRun) states() map[string]string {
	out := map[string]string{}
	for _, t := range p.Tasks {
		out[t.TaskID] = t.Status
	}
	return out
}

func (p pipelineRun) runOf(task string) string {
	for _, t := range p.Tasks {
		if t.TaskID == task {
			return t.ID
		}
	}
	return ""
}

func (e *env) pipelineRun(id string) pipelineRun {
	e.t.Helper()
	r := e.do("GET", "/api/runs/"+id, nil)
	require.Equal(e.t, http.StatusOK, r.Status, "run: %s", r.Body)
	var out pipelineRun
	r.json(e.t, &out)
	return out
}

// waitFor polls cond until it holds, failing the test after a generous limit. Each poll also
// runs one bounded batch, so that retries whose delay passed are dispatched.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
		_, err := e.orch.Process(context.Background())
		require.NoError(e.t, err)
	}
}

// waitStatus waits until the task run id has status.
func (e *env) waitStatus(id string, status protocol.TaskRunStatus) run {
	e.t.Helper()
	var r run
	e.waitFor(fmt.Sprintf("run %s to be %s", id, status), func() bool {
		r = e.run(id)
		return r.Status == status
	})
	return r
}

// waitPipeline waits until the pipeline run id has left "running" and returns it.
func (e *env) waitPipeline(id string) pipelineRun {
	e.t.Helper()
	var r pipelineRun
	e.waitFor("pipeline run "+id+" to end", func() bool {
		r = e.pipelineRun(id)
		return r.Status != "running"
	})
	return r
}

// stored reads an object of the orchestrator's storage as every reader does, through GET
// /api/storage/{key}: inline payloads and objects in the backend alike.
func (e *env) stored(key string) []byte {
	e.t.Helper()
	r := e.do("GET", "/api/storage/"+key, nil)
	require.Equal(e.t, http.StatusOK, r.Status, "stored object %s: %s", key, r.Body)
	var obj struct {
		Encoding string          `json:"encoding"`
		Content  json.RawMessage `json:"content"`
		Size     int             `json:"size"`
	}
	require.NoError(e.t, json.Unmarshal(r.Body, &obj))
	data := []byte(obj.Content)
	if obj.Encoding != "json" {
		var s string
		require.NoError(e.t, json.Unmarshal(obj.Content, &s))
		data = []byte(s)
		if obj.Encoding == "base64" {
			var err error
			data, err = base64.StdEncoding.DecodeString(s)
			require.NoError(e.t, err)
		}
	}
	require.Len(e.t, data, obj.Size, "stored object %s", key)
	return data
}

// inStorage reports whether key is a file of the local backend (a small output kept inline
// never is).
func (e *env) inStorage(key string) bool {
	e.t.Helper()
	_, err := os.Stat(filepath.Join(e.storageDir, filepath.FromSlash(key)))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	require.NoError(e.t, err)
	return true
}

// requireNothingStored checks that no object of run id exists.
func (e *env) requireNothingStored(id string) {
	e.t.Helper()
	_, err := os.Stat(filepath.Join(e.storageDir, "runs", id))
	require.ErrorIs(e.t, err, os.ErrNotExist, "objects of run %s were stored", id)
}

// recv waits for a value on ch.
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
