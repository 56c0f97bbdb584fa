package core_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

func TestHappyPathStandaloneTask(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testHappyPathStandaloneTask)
}

func testHappyPathStandaloneTask(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	e.register("svc", "1.0.0", w.URL(), task("echo"))

	q := e.enqueue(map[string]any{"taskId": "echo", "input": map[string]any{"hello": "world"}, "priority": 5})
	require.Equal(t, protocol.StatusPending, q.Status, "the run's status, as GET /api/runs/{id} reports it")
	require.Equal(t, "standalone/"+q.RunID+"/input.json", q.InputPath)
	require.JSONEq(t, `{"hello":"world"}`, string(e.object(q.InputPath).Content))
	// A small input is kept in PostgreSQL, not also written to storage.
	require.Equal(t, e.cfg.InlinePayloadMaxBytes == 0, e.inStorage(q.InputPath))

	// Serverless mode dispatches inline from the enqueue handler.
	r := e.waitStatus(q.RunID, protocol.StatusCompleted)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, 5, r.Priority)
	require.Equal(t, 1, r.CodeVersion)
	require.Equal(t, "hash-echo", r.CodeHash)
	require.NotNil(t, r.OutputPath)
	require.Equal(t, "runs/"+q.RunID+"/output.json", *r.OutputPath)
	require.NotNil(t, r.CompletedAt)
	require.Empty(t, r.PreviousAttempts)

	ds := w.all()
	require.Len(t, ds, 1)
	d := ds[0]
	require.Equal(t, q.RunID, d.RunID)
	require.Equal(t, "echo", d.TaskID)
	require.Equal(t, 1, d.Attempt)
	require.Equal(t, q.InputPath, d.InputPath)
	if e.cfg.InlinePayloadMaxBytes > 0 {
		require.JSONEq(t, `{"hello":"world"}`, string(d.Input), "the dispatch carries the inline input")
		require.Equal(t, e.cfg.InlinePayloadMaxBytes, d.OutputInlineMax)
	} else {
		require.Nil(t, d.Input)
		require.Zero(t, d.OutputInlineMax)
	}
	require.Equal(t, int64(60000), d.HeartbeatIntervalMs)

	// The storage token is a run token for this run whose sto opens to the default backend.
	claims, err := e.keys.VerifyRun(d.StorageToken, time.Now())
	require.NoError(t, err)
	require.Equal(t, q.RunID, claims.RunID)
	require.Equal(t, "echo", claims.TaskID)
	require.Equal(t, 1, claims.Attempt)
	backend, err := e.serviceKeys("svc").OpenBackend(q.RunID, claims.Storage)
	require.NoError(t, err)
	var b map[string]any
	require.NoError(t, json.Unmarshal(backend, &b))
	require.Equal(t, "local", b["provider"])
	require.Equal(t, "local", b["id"])

	// A duplicate callback is a 200 no-op.
	status, body := w.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"acknowledged":true,"applied":false,"status":"completed"}`, string(body))

	var st map[string]any
	e.do("GET", "/api/queue/status", nil, "").json(t, &st)
	require.EqualValues(t, 1, st["completed"])
	require.EqualValues(t, 0, st["pending"])
	require.Nil(t, st["oldestPending"])
}
