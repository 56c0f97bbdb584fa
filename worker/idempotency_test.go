package worker_test

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

// inputKey is an idempotency key function: the input and the code version.
func inputKey(input json.RawMessage, codeVersion int) string {
	return fmt.Sprintf("v%d:%s", codeVersion, input)
}

// A task with an IdempotencyKey runs once per key: a second run with the same input reports
// the recorded result instead of running; another input runs.
func TestIdempotentTaskReusesResult(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testIdempotentTaskReusesResult)
}

func testIdempotentTaskReusesResult(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := e.newWorker("idem")
	var calls atomic.Int32
	require.NoError(t, w.Register("render", worker.Options{IdempotencyKey: inputKey}, func(ctx *worker.Context) (any, error) {
		n := calls.Add(1)
		if err := ctx.AddAsset("pdf", []byte(fmt.Sprintf("pdf #%d", n)), ""); err != nil {
			return nil, err
		}
		return map[string]int32{"call": n}, nil
	}))
	w.register(t)

	first := e.waitStatus(e.enqueue("render", map[string]string{"doc": "a"}), protocol.StatusCompleted)
	second := e.waitStatus(e.enqueue("render", map[string]string{"doc": "a"}), protocol.StatusCompleted)
	w.Wait()
	require.EqualValues(t, 1, calls.Load(), "the second run reused the first's result")
	require.Equal(t, *first.OutputPath, *second.OutputPath)
	require.Equal(t, first.Assets, second.Assets)
	require.JSONEq(t, `{"call":1}`, string(e.stored(*second.OutputPath)), "the reused output reads the same, stored or inline")
	e.requireNothingStored(second.ID)

	other := e.waitStatus(e.enqueue("render", map[string]string{"doc": "b"}), protocol.StatusCompleted)
	require.EqualValues(t, 2, calls.Load())
	require.JSONEq(t, `{"call":2}`, string(e.stored(*other.OutputPath)))
}

// In a pipeline, a reused result still feeds the successors.
func TestIdempotentTaskFeedsSuccessors(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testIdempotentTaskFeedsSuccessors)
}

func testIdempotentTaskFeedsSuccessors(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := e.newWorker("idp")
	var calls atomic.Int32
	require.NoError(t, w.Register("fetch", worker.Options{AllowedNext: []string{"use"}, IdempotencyKey: inputKey},
		func(ctx *worker.Context) (any, error) {
			return map[string]int32{"fetched": calls.Add(1)}, nil
		}))
	require.NoError(t, w.Register("use", worker.Options{}, func(ctx *worker.Context) (any, error) {
		return ctx.Upstream["fetch"].Output, nil
	}))
	w.register(t)

	for range 2 {
		r := e.waitPipeline(e.trigger("idp", map[string]string{"url": "x"}))
		require.Equal(t, "completed", r.Status, "%v", r.states())
		require.JSONEq(t, `{"fetched":1}`, string(e.stored(protocol.OutputPath(r.runOf("use")))))
	}
	require.EqualValues(t, 1, calls.Load())
}
