package worker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
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
