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

type page struct {
	N int `json:"n"`
}

type ocrText struct {
	Text string `json:"text"`
}

// split → ocr (a map over split's pages) → merge on a real orchestrator: merge reads the items'
// outputs with MapOutputs in index order, each decoded, nil for the item that failed (failure
// mode continue), whether the outputs are inline or stored (and so the map's array too).
func TestMapOutputs(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := e.newWorker("pdf")
		const n = 12
		require.NoError(t, w.Register("split", worker.Options{AllowedNext: []string{"ocr"}}, func(ctx *worker.Context) (any, error) {
			pages := make([]page, n)
			for i := range pages {
				pages[i] = page{N: i}
			}
			return map[string]any{"pages": pages}, nil
		}))
		require.NoError(t, w.Register("ocr", worker.Options{AllowedNext: []string{"merge"}}, func(ctx *worker.Context) (any, error) {
			var p page
			if err := ctx.Decode(&p); err != nil {
				return nil, err
			}
			if p.N == 5 {
				return nil, worker.Fail("UNREADABLE", fmt.Sprintf("page %d unreadable", p.N))
			}
			// Long enough to be stored apart when inline payloads are small or off.
			return ocrText{Text: fmt.Sprintf("page-%d %s", p.N, strings.Repeat("x", 10))}, nil
		}))
		var merged []*ocrText
		var mergeErr error
		require.NoError(t, w.Register("merge", worker.Options{}, func(ctx *worker.Context) (any, error) {
			merged, mergeErr = worker.MapOutputs[ocrText](ctx, "ocr")
			if mergeErr != nil {
				return nil, mergeErr
			}
			if _, err := worker.MapOutputs[ocrText](ctx, "split"); err == nil {
				mergeErr = fmt.Errorf("split is no predecessor of merge, yet MapOutputs read it")
			}
			return map[string]int{"pages": len(merged)}, nil
		}))
		w.register(t)
		r := e.do("PUT", "/api/pipelines/pdf", map[string]any{"entryTasks": []string{"split"}, "failureMode": "continue",
			"nodes": map[string]any{"ocr": map[string]any{"map": map[string]any{"over": "split", "items": "/pages", "maxConcurrency": 4}}}})
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))

		id := e.trigger("pdf", map[string]int{"n": 1})
		run := e.waitPipeline(id)
		require.Equal(t, "failed", run.Status, "continue with a failed item: %v", run.states())
		require.NoError(t, mergeErr)
		require.Len(t, merged, n)
		for i, v := range merged {
			if i == 5 {
				require.Nil(t, v, "the failed item")
				continue
			}
			require.NotNil(t, v, "item %d", i)
			require.Equal(t, fmt.Sprintf("page-%d xxxxxxxxxx", i), v.Text)
		}
		var out map[string]int
		require.NoError(t, json.Unmarshal(e.stored(protocol.OutputPath(run.runOf("merge"))), &out))
		require.Equal(t, n, out["pages"])
		w.Wait()
	})
}

// MapOutputs of an output that is not an array (RunLocal gives the upstream output as is).
func TestMapOutputsNotAMap(t *testing.T) {
	t.Parallel()
	w, _ := localWorker(t)
	var got []error
	require.NoError(t, w.Register("merge", worker.Options{}, func(ctx *worker.Context) (any, error) {
		_, err := worker.MapOutputs[ocrText](ctx, "obj")
		got = append(got, err)
		items, err := worker.MapOutputs[ocrText](ctx, "arr")
		got = append(got, err)
		if err == nil && (len(items) != 3 || items[0].Text != "a" || items[1] != nil || items[2].Text != "c") {
			got = append(got, fmt.Errorf("items: %+v", items))
		}
		_, err = worker.MapOutputs[ocrText](ctx, "stored")
		got = append(got, err)
		return nil, nil
	}))
	_, err := worker.RunLocal(w, "merge", worker.LocalInput{Upstream: map[string]any{
		"obj":    map[string]int{"a": 1},
		"arr":    []any{map[string]string{"text": "a"}, nil, map[string]string{"text": "c"}},
		"stored": []any{map[string]string{"outputPath": "runs/trun_x/output.json"}},
	}})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.ErrorIs(t, got[0], worker.ErrNotMapNode)
	require.NoError(t, got[1])
	require.ErrorContains(t, got[2], "item 0 is stored at runs/trun_x/output.json")
}
