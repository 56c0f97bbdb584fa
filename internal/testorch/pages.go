package testorch

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// PagesWorker serves and registers service "pages" on o: the pipeline pages, split → ocr (a
// map node over split's /pages, failure mode continue) → merge. split makes n pages {"n": i};
// ocr fails page 1 for good and holds the pages from holdFrom on until gate closes; merge
// answers {"ok": true}. The CLI's and the dashboard's map node tests share it.
func (o *Orchestrator) PagesWorker(t testing.TB, n, holdFrom int, gate <-chan struct{}) {
	t.Helper()
	w := o.Worker(t, "pages", func(c *worker.Config) {
		c.Pipelines = []protocol.PipelineDefinition{{ID: "pages", EntryTasks: []string{"split"}, FailureMode: "continue",
			Nodes: map[string]protocol.NodeConfig{"ocr": {Map: &protocol.MapConfig{Over: "split", Items: "/pages"}}}}}
	})
	require.NoError(t, w.Register("split", worker.Options{AllowedNext: []string{"ocr"}}, func(ctx *worker.Context) (any, error) {
		pages := make([]map[string]int, n)
		for i := range pages {
			pages[i] = map[string]int{"n": i}
		}
		return map[string]any{"pages": pages}, nil
	}))
	require.NoError(t, w.Register("ocr", worker.Options{AllowedNext: []string{"merge"}}, func(ctx *worker.Context) (any, error) {
		var in struct {
			N int `json:"n"`
		}
		if err := ctx.Decode(&in); err != nil {
			return nil, err
		}
		switch {
		case in.N == 1:
			return nil, worker.Fail("UNREADABLE", "page 1 is unreadable")
		case in.N >= holdFrom:
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]int{"page": in.N}, nil
	}))
	require.NoError(t, w.Register("merge", worker.Options{}, func(ctx *worker.Context) (any, error) { return map[string]bool{"ok": true}, nil }))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
}
