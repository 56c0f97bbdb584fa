package testorch

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// FamilyWorker serves and registers service "family" on o with three pipelines nested through
// sub-pipeline nodes: outer (a → s → c, s runs mid), mid (m1 → ms → m2, ms runs inner) and
// inner (i1). i1 holds until gate closes; the other tasks answer at once. The CLI's and the
// dashboard's sub-pipeline tests share it.
func (o *Orchestrator) FamilyWorker(t testing.TB, gate <-chan struct{}) {
	t.Helper()
	sub := func(p string) map[string]protocol.NodeConfig {
		return map[string]protocol.NodeConfig{map[string]string{"mid": "s", "inner": "ms"}[p]: {Pipeline: p}}
	}
	w := o.Worker(t, "family", func(c *worker.Config) {
		c.Pipelines = []protocol.PipelineDefinition{
			{ID: "inner", EntryTasks: []string{"i1"}},
			{ID: "mid", EntryTasks: []string{"m1"}, Nodes: sub("inner")},
			{ID: "outer", EntryTasks: []string{"a"}, Nodes: sub("mid")},
		}
	})
	done := func(ctx *worker.Context) (any, error) { return map[string]string{"task": ctx.TaskID}, nil }
	never := func(ctx *worker.Context) (any, error) {
		return nil, errors.New("a sub-pipeline node never goes to a worker")
	}
	for _, def := range []struct {
		id, next string
		run      worker.Handler
	}{{"a", "s", done}, {"s", "c", never}, {"c", "", done}, {"m1", "ms", done}, {"ms", "m2", never}, {"m2", "", done}} {
		opts := worker.Options{}
		if def.next != "" {
			opts.AllowedNext = []string{def.next}
		}
		require.NoError(t, w.Register(def.id, opts, def.run))
	}
	require.NoError(t, w.Register("i1", worker.Options{}, func(ctx *worker.Context) (any, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return map[string]bool{"deep": true}, nil
	}))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
}
