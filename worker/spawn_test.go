package worker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

// plan (a spawn node) → join on a real orchestrator: plan's handler spawns runs of two tasks
// with worker.Spawn, and join reads their outputs with SpawnOutputs, in spawn order, and plan's
// own output with SpawnerOutput, whether the outputs are inline or stored.
func TestSpawn(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := e.newWorker("svc")
		const n = 12
		require.NoError(t, w.Register("plan", worker.Options{AllowedNext: []string{"join"}}, func(ctx *worker.Context) (any, error) {
			for i := range n {
				task := "even"
				if i%2 == 1 {
					task = "odd"
				}
				if err := worker.Spawn(ctx, task, page{N: i}); err != nil {
					return nil, err
				}
			}
			return map[string]int{"planned": n}, nil
		}))
		for _, task := range []string{"even", "odd"} {
			require.NoError(t, w.Register(task, worker.Options{}, func(ctx *worker.Context) (any, error) {
				var p page
				if err := ctx.Decode(&p); err != nil {
					return nil, err
				}
				return ocrText{Text: fmt.Sprintf("%s-%d %s", ctx.TaskID, p.N, strings.Repeat("x", 10))}, nil
			}))
		}
		var joined []*ocrText
		var own *map[string]int
		var joinErr error
		require.NoError(t, w.Register("join", worker.Options{}, func(ctx *worker.Context) (any, error) {
			if joined, joinErr = worker.SpawnOutputs[ocrText](ctx, "plan"); joinErr != nil {
				return nil, joinErr
			}
			if own, joinErr = worker.SpawnerOutput[map[string]int](ctx, "plan"); joinErr != nil {
				return nil, joinErr
			}
			return map[string]int{"joined": len(joined)}, nil
		}))
		w.register(t)
		r := e.do("PUT", "/api/pipelines/fan", map[string]any{"entryTasks": []string{"plan"},
			"nodes": map[string]any{"plan": map[string]any{"spawn": map[string]any{"maxItems": n}}}})
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))

		id := e.trigger("fan", map[string]int{"n": 1})
		run := e.waitPipeline(id)
		require.Equal(t, "completed", run.Status, "%v", run.states())
		require.NoError(t, joinErr)
		require.Len(t, joined, n)
		for i, v := range joined {
			task := "even"
			if i%2 == 1 {
				task = "odd"
			}
			require.NotNil(t, v, "spawned run %d", i)
			require.Equal(t, fmt.Sprintf("%s-%d xxxxxxxxxx", task, i), v.Text)
		}
		require.NotNil(t, own)
		require.Equal(t, n, (*own)["planned"])
		var out map[string]int
		require.NoError(t, json.Unmarshal(e.stored(protocol.OutputPath(run.runOf("join"))), &out))
		require.Equal(t, n, out["joined"])
		w.Wait()
	})
}

// SpawnOutputs of an output that is not a spawn node's.
func TestSpawnOutputsNotASpawnNode(t *testing.T) {
	t.Parallel()
	w, _ := localWorker(t)
	var got []error
	require.NoError(t, w.Register("join", worker.Options{}, func(ctx *worker.Context) (any, error) {
		_, err := worker.SpawnOutputs[ocrText](ctx, "arr")
		got = append(got, err)
		items, err := worker.SpawnOutputs[ocrText](ctx, "doc")
		got = append(got, err)
		if err == nil && (len(items) != 2 || items[0].Text != "a" || items[1] != nil) {
			got = append(got, fmt.Errorf("items: %+v", items))
		}
		_, err = worker.SpawnOutputs[ocrText](ctx, "missing")
		got = append(got, err)
		return nil, nil
	}))
	_, err := worker.RunLocal(w, "join", worker.LocalInput{Upstream: map[string]any{
		"arr": []any{1},
		"doc": map[string]any{"output": nil, "items": []any{map[string]string{"text": "a"}, nil}},
	}})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.ErrorIs(t, got[0], worker.ErrNotSpawnNode)
	require.NoError(t, got[1])
	require.ErrorContains(t, got[2], "not a completed predecessor")
}

// Spawn past MaxSpawn in one attempt: the (MaxSpawn+1)-th call returns an error and adds no
// entry, and the success callback carries exactly the first MaxSpawn entries, in call order,
// which the orchestrator (MAP_MAX_ITEMS at its default, MaxSpawn; a body cap large enough for
// them) applies: the node waits for MaxSpawn spawned runs (of a paused task, so that none
// runs).
func TestSpawnPastMaxSpawn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.MaxWorkerBodyBytes = 1 << 20 })
	rec := newRecorder(t, e.url)
	w := e.newWorker("svc", func(c *worker.Config) { c.OrchestratorURL = rec.url })
	type outcome struct {
		runID     string
		errAt     int // the first call that failed (-1: none)
		err       error
		lastAgain error // one more call after the refusal
	}
	done := make(chan outcome, 1)
	require.NoError(t, w.Register("plan", worker.Options{}, func(ctx *worker.Context) (any, error) {
		o := outcome{runID: ctx.RunID, errAt: -1}
		for i := range worker.MaxSpawn + 1 {
			if err := worker.Spawn(ctx, "leaf", i); err != nil {
				o.errAt, o.err = i, err
				break
			}
		}
		o.lastAgain = worker.Spawn(ctx, "leaf", -1)
		done <- o
		return map[string]int{"planned": worker.MaxSpawn}, nil
	}))
	require.NoError(t, w.Register("leaf", worker.Options{}, func(*worker.Context) (any, error) { return nil, nil }))
	w.register(t)
	r := e.do("POST", "/api/tasks/leaf/pause", map[string]any{})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = e.do("PUT", "/api/pipelines/fan", map[string]any{"entryTasks": []string{"plan"},
		"nodes": map[string]any{"plan": map[string]any{"spawn": map[string]any{}}}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	e.trigger("fan", map[string]int{"n": 1})
	o := recv(t, done, "plan's attempt")
	require.Equal(t, worker.MaxSpawn, o.errAt, "the first call past MaxSpawn fails: %v", o.err)
	require.ErrorContains(t, o.err, fmt.Sprintf(`worker: spawn "leaf": this attempt already spawns %d runs, the most it may`, worker.MaxSpawn))
	require.Error(t, o.lastAgain, "and so does every later call")
	var node struct {
		Status     string `json:"status"`
		ItemsTotal *int   `json:"itemsTotal"`
	}
	e.waitFor("plan's run waiting for its spawned runs", func() bool {
		e.do("GET", "/api/task-runs/"+o.runID, nil).json(t, &node)
		return node.Status == "waiting"
	})
	require.NotNil(t, node.ItemsTotal)
	require.Equal(t, worker.MaxSpawn, *node.ItemsTotal)

	var cb protocol.CallbackRequest
	require.NoError(t, json.Unmarshal(rec.body(t, "POST", "/api/callback/"+o.runID), &cb))
	require.Equal(t, protocol.CallbackSuccess, cb.Status)
	require.Len(t, cb.Spawn, worker.MaxSpawn)
	for i, s := range cb.Spawn {
		if s.TaskID != "leaf" || string(s.Input) != strconv.Itoa(i) {
			t.Fatalf("entry %d is %s %s, want leaf %d", i, s.TaskID, s.Input, i)
		}
	}
}
