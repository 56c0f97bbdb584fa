package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

// A task reads its input and returns an output: the run completes, its output is stored, and
// the handler saw the attempt's metadata; its log lines are uploaded.
func TestTaskReadsInputAndReturnsOutput(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testTaskReadsInputAndReturnsOutput)
}

func testTaskReadsInputAndReturnsOutput(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := e.newWorker("greeter")
	seen := make(chan *worker.Context, 1)
	require.NoError(t, w.Register("greet", worker.Options{}, func(ctx *worker.Context) (any, error) {
		var in struct{ Name string }
		if err := ctx.Decode(&in); err != nil {
			return nil, worker.Fail("BAD_INPUT", err.Error())
		}
		ctx.Log("greeting", "name", in.Name)
		seen <- ctx
		return map[string]string{"greeting": "hello " + in.Name}, nil
	}))
	w.register(t)

	id := e.enqueue("greet", map[string]string{"name": "ada"})
	r := e.waitStatus(id, protocol.StatusCompleted)
	require.NotNil(t, r.OutputPath)
	require.Equal(t, protocol.OutputPath(id), *r.OutputPath)
	require.JSONEq(t, `{"greeting":"hello ada"}`, string(e.stored(protocol.OutputPath(id))))
	require.EqualValues(t, len(e.stored(protocol.OutputPath(id))), *r.OutputSize)
	// A small input and output are kept in PostgreSQL: the worker read the one from the
	// dispatch and sent the other in its callback; neither is in storage.
	stored := e.o.Config.InlinePayloadMaxBytes == 0
	require.Equal(t, stored, e.inStorage(protocol.StandaloneInputPath(id)))
	require.Equal(t, stored, e.inStorage(protocol.OutputPath(id)))

	c := recv(t, seen, "the handler")
	require.Equal(t, id, c.RunID)
	require.Equal(t, "greet", c.TaskID)
	require.Empty(t, c.PipelineRunID)
	require.Equal(t, 1, c.Attempt)
	require.Equal(t, 1, c.CodeVersion)
	require.Equal(t, r.CodeHash, c.CodeHash)
	require.Empty(t, c.PreviousAttempts)
	require.Empty(t, c.Upstream)

	require.NotNil(t, r.LogsPath)
	logs := string(e.stored(*r.LogsPath))
	require.Contains(t, logs, `"msg":"greeting"`)
	require.Contains(t, logs, `"name":"ada"`)

	w.Wait()
	require.Empty(t, w.tempEntries(t), "the temporary directory is removed after success")

	// Close releases the storage clients; a later attempt opens its own again.
	require.NoError(t, w.Close())
	id = e.enqueue("greet", map[string]string{"name": "grace"})
	e.waitStatus(id, protocol.StatusCompleted)
	require.JSONEq(t, `{"greeting":"hello grace"}`, string(e.stored(protocol.OutputPath(id))))
	recv(t, seen, "the handler")
	w.Wait()
	require.NoError(t, w.Close())
}

// diamond registers a → b, c → d in service "dia": b and c add assets (from memory and from a
// file), d reads them and the upstream outputs. Input {"only": "b"} makes a select only b.
func diamond(t *testing.T, e *env) (*testWorker, *atomic.Int32) {
	w := e.newWorker("dia")
	var dRuns atomic.Int32
	require.NoError(t, w.Register("a", worker.Options{AllowedNext: []string{"b", "c"}}, func(ctx *worker.Context) (any, error) {
		var in struct {
			N    int
			Only string
		}
		if err := ctx.Decode(&in); err != nil {
			return nil, err
		}
		out := map[string]int{"n": in.N + 1}
		if in.Only != "" {
			return worker.Result{Output: out, RunNext: []string{in.Only}}, nil
		}
		return out, nil
	}))
	require.NoError(t, w.Register("b", worker.Options{AllowedNext: []string{"d"}}, func(ctx *worker.Context) (any, error) {
		var a struct{ N int }
		if err := ctx.Upstream["a"].Decode(&a); err != nil {
			return nil, err
		}
		if err := ctx.AddAsset("note", []byte(fmt.Sprintf("b saw %d", a.N)), worker.AssetText); err != nil {
			return nil, err
		}
		return map[string]int{"b": a.N * 10}, nil
	}))
	require.NoError(t, w.Register("c", worker.Options{AllowedNext: []string{"d"}}, func(ctx *worker.Context) (any, error) {
		path := filepath.Join(ctx.TempDir(), "image.bin")
		if err := os.WriteFile(path, []byte{0, 1, 2, 3, 255}, 0o600); err != nil {
			return nil, err
		}
		if err := ctx.AddAssetFromPath("image", path); err != nil {
			return nil, err
		}
		// The asset was taken at once: the file may go.
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		return json.RawMessage(`{"c":"done"}`), nil
	}))
	require.NoError(t, w.Register("d", worker.Options{}, func(ctx *worker.Context) (any, error) {
		dRuns.Add(1)
		out := map[string]any{"upstream": len(ctx.Upstream)}
		if up, ok := ctx.Upstream["b"]; ok {
			out["b"] = up.Output
			note, err := ctx.GetAsset("b", "note")
			if err != nil {
				return nil, err
			}
			out["note"] = string(note)
		}
		if _, ok := ctx.Upstream["c"]; ok {
			out["c"] = ctx.Upstream["c"].Output
			path, err := ctx.GetAssetPath("c", "image")
			if err != nil {
				return nil, err
			}
			again, err := ctx.GetAssetPath("c", "image")
			if err != nil {
				return nil, err
			}
			if again != path || !strings.HasPrefix(path, filepath.Dir(ctx.TempDir())) {
				return nil, fmt.Errorf("asset path %s, then %s", path, again)
			}
			image, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			out["image"] = image
			viaBytes, err := ctx.GetAsset("c", "image")
			if err != nil {
				return nil, err
			}
			out["same"] = string(viaBytes) == string(image)
		}
		if _, err := ctx.GetAsset("a", "nothing"); !errors.Is(err, worker.ErrAssetNotFound) {
			return nil, fmt.Errorf("missing asset: %v", err)
		}
		return out, nil
	}))
	w.register(t)
	return w, &dRuns
}

// A diamond pipeline a → b, c → d runs through the SDK: assets added with AddAsset and
// AddAssetFromPath reach d through GetAsset and GetAssetPath, with the upstream outputs.
func TestDiamondPipelineWithAssets(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testDiamondPipelineWithAssets)
}

func testDiamondPipelineWithAssets(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w, dRuns := diamond(t, e)

	id := e.trigger("dia", map[string]int{"n": 1})
	r := e.waitPipeline(id)
	require.Equal(t, "completed", r.Status, "%v", r.states())
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "completed", "d": "completed"}, r.states())
	require.EqualValues(t, 1, dRuns.Load())

	var out struct {
		Upstream int
		B        json.RawMessage
		C        json.RawMessage
		Note     string
		Image    []byte
		Same     bool
	}
	require.NoError(t, json.Unmarshal(e.stored(protocol.OutputPath(r.runOf("d"))), &out))
	require.Equal(t, 2, out.Upstream)
	require.JSONEq(t, `{"b":20}`, string(out.B))
	require.JSONEq(t, `{"c":"done"}`, string(out.C))
	require.Equal(t, "b saw 2", out.Note)
	require.Equal(t, []byte{0, 1, 2, 3, 255}, out.Image)
	require.True(t, out.Same)
	require.Equal(t, e.o.Config.InlinePayloadMaxBytes == 0, e.inStorage(protocol.OutputPath(r.runOf("b"))),
		"an upstream output is stored in one place")

	// The assets were uploaded and recorded.
	b := e.run(r.runOf("b"))
	require.Equal(t, map[string]protocol.Asset{"note": {Path: protocol.AssetPath(b.ID, "note"), Size: 7, Type: worker.AssetText}}, b.Assets)
	require.Equal(t, "b saw 2", string(e.stored(protocol.AssetPath(b.ID, "note"))))
	c := e.run(r.runOf("c"))
	require.Equal(t, map[string]protocol.Asset{"image": {Path: protocol.AssetPath(c.ID, "image"), Size: 5, Type: worker.AssetBinary}}, c.Assets)

	w.Wait()
	require.Empty(t, w.tempEntries(t))
}

// RunNext selecting only b skips c; d runs with b alone.
func TestRunNextSelectsSuccessors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, dRuns := diamond(t, e)

	id := e.trigger("dia", map[string]any{"n": 4, "only": "b"})
	r := e.waitPipeline(id)
	require.Equal(t, "completed", r.Status, "%v", r.states())
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "skipped", "d": "completed"}, r.states())
	require.EqualValues(t, 1, dRuns.Load())
	var out struct {
		Upstream int
		Note     string
	}
	require.NoError(t, json.Unmarshal(e.stored(protocol.OutputPath(r.runOf("d"))), &out))
	require.Equal(t, 1, out.Upstream)
	require.Equal(t, "b saw 5", out.Note)
}

// A non-retryable TaskError fails the run at once, with its code; nothing is uploaded and the
// temporary directory is removed.
func TestNonRetryableTaskErrorFailsWithoutRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	var calls atomic.Int32
	require.NoError(t, w.Register("strict", worker.Options{Retries: new(3), RetryDelay: time.Millisecond}, func(ctx *worker.Context) (any, error) {
		calls.Add(1)
		if err := ctx.AddAsset("partial", []byte("half done"), ""); err != nil {
			return nil, err
		}
		ctx.Log("about to fail")
		return nil, &worker.TaskError{Code: "INVALID_PDF", Message: "not a PDF", Details: map[string]int{"page": 3}}
	}))
	w.register(t)

	id := e.enqueue("strict", "x")
	r := e.waitStatus(id, protocol.StatusFailed)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, "INVALID_PDF", *r.ErrorCode)
	require.Contains(t, *r.Error, "not a PDF")
	require.Contains(t, *r.Error, `{"page":3}`)
	w.Wait()
	require.EqualValues(t, 1, calls.Load())
	e.requireNothingStored(id)
	require.Empty(t, w.tempEntries(t), "the temporary directory is removed after a failure")
}

// A plain error is retryable: the second attempt sees the first in PreviousAttempts.
func TestPlainErrorIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	prev := make(chan []protocol.Attempt, 2)
	require.NoError(t, w.Register("flaky", worker.Options{Retries: new(2), RetryDelay: -1, RetryBackoff: protocol.BackoffFixed},
		func(ctx *worker.Context) (any, error) {
			prev <- ctx.PreviousAttempts
			if ctx.Attempt == 1 {
				return nil, errors.New("connection reset")
			}
			return map[string]int{"attempt": ctx.Attempt}, nil
		}))
	w.register(t)

	id := e.enqueue("flaky", nil)
	r := e.waitStatus(id, protocol.StatusCompleted)
	require.Equal(t, 2, r.Attempt)
	require.Empty(t, recv(t, prev, "attempt 1"))
	second := recv(t, prev, "attempt 2")
	require.Len(t, second, 1)
	require.Equal(t, 1, second[0].Attempt)
	require.Equal(t, worker.CodeTaskError, second[0].ErrorCode)
	require.Equal(t, "connection reset", second[0].Error)
	require.JSONEq(t, `{"attempt":2}`, string(e.stored(protocol.OutputPath(id))))
}

// A panicking handler fails its attempt (retryable, code PANIC); the worker keeps serving.
func TestPanicFailsAttemptAndWorkerSurvives(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	require.NoError(t, w.Register("fragile", worker.Options{Retries: new(1), RetryDelay: -1}, func(ctx *worker.Context) (any, error) {
		if ctx.Attempt == 1 {
			panic(fmt.Errorf("attempt %d exploded", ctx.Attempt))
		}
		return "recovered", nil
	}))
	require.NoError(t, w.Register("panicky", worker.Options{Retries: new(0)}, func(*worker.Context) (any, error) {
		panic("always")
	}))
	w.register(t)

	id := e.enqueue("fragile", nil)
	r := e.waitStatus(id, protocol.StatusCompleted)
	require.Equal(t, 2, r.Attempt)
	require.Len(t, r.PreviousAttempts, 1)
	require.Equal(t, worker.CodePanic, r.PreviousAttempts[0].ErrorCode)
	require.Equal(t, "panic: attempt 1 exploded", r.PreviousAttempts[0].Error)

	id = e.enqueue("panicky", nil)
	r = e.waitStatus(id, protocol.StatusFailed)
	require.Equal(t, worker.CodePanic, *r.ErrorCode)
	require.Equal(t, "panic: always", *r.Error)
	e.requireNothingStored(id)

	// Still serving.
	id = e.enqueue("fragile", nil)
	e.waitStatus(id, protocol.StatusCompleted)
	require.Contains(t, w.logs.String(), "the handler panicked")
}

// A long task is never swept while it runs: its heartbeats keep pushing the deadline. Each
// round moves the deadline into the past in the database, as if the worker had been quiet that
// long, and waits for the next heartbeat to push it ahead again (by twice the 1 s interval,
// which leaves the sweep that follows two seconds to spare). Its progress shows on the run.
func TestHeartbeatsKeepLongTaskAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	release := make(chan struct{})
	require.NoError(t, w.Register("long", worker.Options{HeartbeatInterval: time.Second}, func(ctx *worker.Context) (any, error) {
		if err := ctx.Progress(40, "page 4/10"); err != nil {
			return nil, err
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return "done", nil
	}))
	w.register(t)

	id := e.enqueue("long", nil)
	e.waitFor("progress", func() bool {
		r := e.run(id)
		return r.Progress != nil && *r.Progress == 40
	})
	r := e.run(id)
	require.Equal(t, protocol.StatusRunning, r.Status)
	require.Equal(t, "page 4/10", r.ProgressMessage)
	ctx := context.Background()
	for range 2 {
		tag, err := e.o.Pool.Exec(ctx, "UPDATE task_runs SET deadline = now() - interval '1 millisecond' WHERE id = $1 AND status = 'running'", id)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected())
		// Not e.waitFor: its Process would sweep the run while the deadline is in the past.
		require.Eventually(t, func() bool {
			var ahead bool
			err := e.o.Pool.QueryRow(ctx, "SELECT deadline > now() FROM task_runs WHERE id = $1", id).Scan(&ahead)
			return err == nil && ahead
		}, 30*time.Second, 10*time.Millisecond, "the next heartbeat to push the deadline")
		n, err := e.orch.Sweep(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "a heartbeating attempt must not be swept")
	}
	close(release)
	r = e.waitStatus(id, protocol.StatusCompleted)
	require.Equal(t, 1, r.Attempt)
}

// untilCancelled is a handler that adds asset (unless "") and sends its run id to started, then
// waits for its context to end and sends the cause to stopped; it then returns an output
// anyway.
func untilCancelled(started chan<- string, stopped chan<- error, asset string) worker.Handler {
	return func(ctx *worker.Context) (any, error) {
		if asset != "" {
			if err := ctx.AddAsset(asset, []byte(asset), ""); err != nil {
				return nil, err
			}
		}
		started <- ctx.RunID
		select {
		case <-ctx.Done():
			stopped <- context.Cause(ctx)
		case <-time.After(30 * time.Second):
			stopped <- errors.New("never cancelled")
		}
		return "finished anyway", nil
	}
}

// Cancelling the pipeline run ends the handler's context within a few heartbeats, with
// ErrCancelled as the cause; nothing is uploaded even though the handler then returns an
// output, and the temporary directory is removed.
func TestCancelStopsHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("cx")
	started, stopped := make(chan string, 1), make(chan error, 1)
	require.NoError(t, w.Register("long", worker.Options{HeartbeatInterval: 100 * time.Millisecond}, untilCancelled(started, stopped, "draft")))
	w.register(t)

	prun := e.trigger("cx", nil)
	runID := recv(t, started, "the handler to start")
	r := e.do("POST", "/api/runs/"+prun+"/cancel", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	begun := time.Now()
	cause := recv(t, stopped, "the handler's context to end")
	require.ErrorIs(t, cause, worker.ErrCancelled)
	require.Less(t, time.Since(begun), 10*time.Second)

	w.Wait()
	require.Equal(t, protocol.StatusCancelled, e.run(runID).Status)
	e.requireNothingStored(runID)
	require.Empty(t, w.tempEntries(t))
}

// Cancelling a standalone run (POST /api/task-runs/{id}/cancel) ends the handler's context
// within a few heartbeats, with ErrCancelled as the cause; the output it then returns is not
// stored and the run stays cancelled.
func TestCancelStandaloneRunStopsHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("cs")
	started, stopped := make(chan string, 1), make(chan error, 1)
	require.NoError(t, w.Register("long", worker.Options{HeartbeatInterval: 100 * time.Millisecond}, untilCancelled(started, stopped, "draft")))
	w.register(t)

	id := e.enqueue("long", nil)
	require.Equal(t, id, recv(t, started, "the handler to start"))
	r := e.do("POST", "/api/task-runs/"+id+"/cancel", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	cause := recv(t, stopped, "the handler's context to end")
	require.ErrorIs(t, cause, worker.ErrCancelled)

	w.Wait()
	got := e.run(id)
	require.Equal(t, protocol.StatusCancelled, got.Status)
	require.Nil(t, got.OutputPath, "the output the handler returned after the cancel was not recorded")
	e.requireNothingStored(id)
}

// With TempCleanupOnFailure false, a failed attempt's directory stays with what it made;
// nothing is uploaded.
func TestTempDirKeptOnFailureWhenAsked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc", func(c *worker.Config) { c.TempCleanupOnFailure = new(false) })
	require.NoError(t, w.Register("fails", worker.Options{Retries: new(0)}, func(ctx *worker.Context) (any, error) {
		if err := os.WriteFile(filepath.Join(ctx.TempDir(), "scratch.txt"), []byte("x"), 0o600); err != nil {
			return nil, err
		}
		if err := ctx.AddAsset("evidence", []byte("look here"), ""); err != nil {
			return nil, err
		}
		return nil, worker.Fail("NOPE", "nope")
	}))
	require.NoError(t, w.Register("works", worker.Options{}, func(ctx *worker.Context) (any, error) {
		return nil, ctx.AddAsset("a", []byte("b"), "")
	}))
	w.register(t)

	id := e.enqueue("fails", nil)
	e.waitStatus(id, protocol.StatusFailed)
	w.Wait()
	e.requireNothingStored(id)
	left := w.tempEntries(t)
	require.Len(t, left, 1)
	require.True(t, strings.HasPrefix(left[0], id+"-"), left[0])
	evidence, err := os.ReadFile(filepath.Join(w.tempDir, left[0], "assets", "evidence"))
	require.NoError(t, err)
	require.Equal(t, "look here", string(evidence))

	// A success still cleans up after itself.
	ok := e.enqueue("works", nil)
	e.waitStatus(ok, protocol.StatusCompleted)
	w.Wait()
	require.Equal(t, left, w.tempEntries(t))
	require.Equal(t, "null", string(e.stored(protocol.OutputPath(ok))))
}

// Dispatches without a genuine run token for that run and task are refused with 401 and never
// run the handler; a genuine one for a task the worker lacks gets 404.
func TestForgedDispatchIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	var calls atomic.Int32
	require.NoError(t, w.Register("guarded", worker.Options{}, func(*worker.Context) (any, error) {
		calls.Add(1)
		return nil, nil
	}))
	// Run tokens as the orchestrator makes them: signed under the master's K_run, with the
	// backend sealed for a service. The worker does not check the signature (it has no K_run):
	// it opens sto with its own service key, which authenticates the dispatch.
	ring, err := token.NewKeyring(testSecret, "")
	require.NoError(t, err)
	other, err := token.NewKeyring(strings.Repeat("z", 40), "")
	require.NoError(t, err)
	now := time.Now()
	backend := []byte(`{"id":"local","provider":"local","credentials":{"basePath":"/nonexistent"}}`)
	signFor := func(r *token.Keyring, service, runID, taskID string, attempt int) string {
		sto, err := r.SealBackend("", service, runID, backend)
		require.NoError(t, err)
		tok, err := r.SignRun(token.RunClaims{RunID: runID, TaskID: taskID, Attempt: attempt, Lease: 1,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), Storage: sto})
		require.NoError(t, err)
		return tok
	}
	sign := func(r *token.Keyring, runID, taskID string, attempt int) string {
		return signFor(r, "svc", runID, taskID, attempt)
	}
	keys := ring
	expired, err := ring.SignRun(token.RunClaims{RunID: "trun_1", TaskID: "guarded", Attempt: 1, Lease: 1,
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)})
	require.NoError(t, err)
	masterSto, err := ring.Current().SealBackend("trun_1", backend)
	require.NoError(t, err)
	v1, err := ring.SignRun(token.RunClaims{RunID: "trun_1", TaskID: "guarded", Attempt: 1, Lease: 1,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Storage: masterSto})
	require.NoError(t, err)
	noSto, err := ring.SignRun(token.RunClaims{RunID: "trun_1", TaskID: "guarded", Attempt: 1, Lease: 1,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	require.NoError(t, err)
	dispatch := func(taskID, runID, tok string) protocol.DispatchRequest {
		return protocol.DispatchRequest{RunID: runID, TaskID: taskID, Attempt: 1, StorageToken: tok,
			InputPath: protocol.StandaloneInputPath(runID), HeartbeatIntervalMs: 1000}
	}
	for name, tc := range map[string]struct {
		path   string
		body   protocol.DispatchRequest
		status int
	}{
		"no token":                      {"guarded", dispatch("guarded", "trun_1", ""), http.StatusUnauthorized},
		"garbage":                       {"guarded", dispatch("guarded", "trun_1", "not.a.jwt"), http.StatusUnauthorized},
		"other secret":                  {"guarded", dispatch("guarded", "trun_1", sign(other, "trun_1", "guarded", 1)), http.StatusUnauthorized},
		"sealed for another service":    {"guarded", dispatch("guarded", "trun_1", signFor(ring, "svc-b", "trun_1", "guarded", 1)), http.StatusUnauthorized},
		"sealed with master K_enc (v1)": {"guarded", dispatch("guarded", "trun_1", v1), http.StatusUnauthorized},
		"no sto":                        {"guarded", dispatch("guarded", "trun_1", noSto), http.StatusUnauthorized},
		"expired":                       {"guarded", dispatch("guarded", "trun_1", expired), http.StatusUnauthorized},
		"another run":                   {"guarded", dispatch("guarded", "trun_1", sign(keys, "trun_2", "guarded", 1)), http.StatusUnauthorized},
		"another task":                  {"guarded", dispatch("guarded", "trun_1", sign(keys, "trun_1", "other", 1)), http.StatusUnauthorized},
		"another attempt":               {"guarded", dispatch("guarded", "trun_1", sign(keys, "trun_1", "guarded", 2)), http.StatusUnauthorized},
		"path of other task":            {"other", dispatch("guarded", "trun_1", sign(keys, "trun_1", "guarded", 1)), http.StatusUnauthorized},
		"unknown task":                  {"ghost", dispatch("ghost", "trun_1", sign(keys, "trun_1", "ghost", 1)), http.StatusNotFound},
	} {
		r := do(t, "POST", w.url+"/tasks/"+tc.path, tc.body, nil)
		require.Equal(t, tc.status, r.Status, "%s: %s", name, r.Body)
		var body protocol.ErrorBody
		r.json(t, &body)
		require.NotEmpty(t, body.Code, name)
	}
	r := do(t, "POST", w.url+"/tasks/guarded", "[not an object", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
	w.Wait()
	require.Zero(t, calls.Load())
	require.Empty(t, w.tempEntries(t))

	r = do(t, "GET", w.url+"/health", nil, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"status":"ok","serviceId":"svc","version":"1","tasks":["guarded"],"running":0}`, string(r.Body))
}

// A dispatch is answered 202 with the exact body the SDK has always written (keys sorted, as a
// map of them encoded): duplicate false for the first delivery of an attempt and true for a
// second one while the first still runs.
func TestDispatchAcceptedBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	release := make(chan struct{})
	require.NoError(t, w.Register("slow", worker.Options{}, func(*worker.Context) (any, error) {
		<-release
		return nil, nil
	}))
	ring, err := token.NewKeyring(testSecret, "")
	require.NoError(t, err)
	now := time.Now()
	sto, err := ring.SealBackend("", "svc", "trun_acc", []byte(`{"id":"local","provider":"local","credentials":{"basePath":"/nonexistent"}}`))
	require.NoError(t, err)
	tok, err := ring.SignRun(token.RunClaims{RunID: "trun_acc", TaskID: "slow", Attempt: 1, Lease: 1,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Storage: sto})
	require.NoError(t, err)
	d := protocol.DispatchRequest{RunID: "trun_acc", TaskID: "slow", Attempt: 1, StorageToken: tok,
		Input: json.RawMessage(`{}`), InputPath: protocol.StandaloneInputPath("trun_acc"), HeartbeatIntervalMs: 60_000}
	for _, want := range []string{
		`{"accepted":true,"duplicate":false,"runId":"trun_acc"}` + "\n",
		`{"accepted":true,"duplicate":true,"runId":"trun_acc"}` + "\n",
	} {
		r := do(t, "POST", w.url+"/tasks/slow", d, nil)
		require.Equal(t, http.StatusAccepted, r.Status, "%s", r.Body)
		require.Equal(t, want, string(r.Body))
	}
	close(release)
	w.Wait()
}

// An attempt that needs no scratch space makes no temporary directory: a handler that neither
// asks for TempDir, adds an asset nor logs leaves the worker's TempDir untouched while it runs.
// One that logs gets its directory (and its logs uploaded) and leaves nothing behind.
func TestTempDirMadeOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("svc")
	var seen []string
	require.NoError(t, w.Register("quiet", worker.Options{}, func(*worker.Context) (any, error) {
		entries, err := os.ReadDir(w.tempDir)
		for _, de := range entries {
			seen = append(seen, de.Name())
		}
		return nil, err
	}))
	require.NoError(t, w.Register("chatty", worker.Options{}, func(ctx *worker.Context) (any, error) {
		ctx.Logger().Info("working")
		return nil, nil
	}))
	w.register(t)

	quiet := e.enqueue("quiet", nil)
	e.waitStatus(quiet, protocol.StatusCompleted)
	w.Wait()
	require.Empty(t, seen, "no directory was made for the quiet attempt")
	require.Nil(t, e.run(quiet).LogsPath, "nothing logged, no logs stored")

	chatty := e.enqueue("chatty", nil)
	e.waitStatus(chatty, protocol.StatusCompleted)
	w.Wait()
	logsPath := e.run(chatty).LogsPath
	require.NotNil(t, logsPath)
	require.Contains(t, string(e.stored(*logsPath)), `"msg":"working"`)
	require.Empty(t, w.tempEntries(t))
}
