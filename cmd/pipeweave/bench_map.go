package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/fakeworker"
)

// Map mode (bench --map N, issue 15): the pipeline fanout is split → item (a map node over
// split's output /items) → join. split answers with an array of N numbers; every item and
// join answer at once with a small inline output. The worker notes when split called back,
// when the first and the last item were dispatched and when join was: the fan-out time is
// split's callback → the last item dispatched, the end-to-end rate N items over split's
// callback → join's dispatch.

// mapBenchTasks are the tasks of the fanout pipeline.
var mapBenchTasks = []protocol.TaskDefinition{
	{ID: "split", CodeHash: "split", AllowedNext: []string{"item"}},
	{ID: "item", CodeHash: "item", AllowedNext: []string{"join"}},
	{ID: "join", CodeHash: "join"},
}

// mapBenchPipeline is the fanout pipeline.
var mapBenchPipeline = protocol.PipelineDefinition{ID: "fanout", EntryTasks: []string{"split"},
	Nodes: map[string]protocol.NodeConfig{"item": {Map: &protocol.MapConfig{Over: "split", Items: "/items"}}}}

// mapTimes are the moments of one fanout run, as the worker saw them.
type mapTimes struct {
	items                            int
	splitCalledBack, firstItem, last time.Time
	joined                           time.Time
	dispatched                       int
	done                             chan struct{}
}

// mapWorker is the in-process worker of map mode.
type mapWorker struct {
	*fakeworker.Worker
	counter dispatchCounter
	mu      sync.Mutex
	runs    map[string]*mapTimes
	// next is the size of the map the next split makes.
	next int
}

// startMapWorker starts the map mode's worker, which calls back through orch.
func startMapWorker(orch *apiclient.Client) (*mapWorker, error) {
	w := &mapWorker{runs: map[string]*mapTimes{}}
	fw, err := fakeworker.Start(orch, fakeworker.Options{After: w.callBack})
	if err != nil {
		return nil, err
	}
	w.Worker = fw
	return w, nil
}

// times returns (and makes) the record of pipeline run id.
func (w *mapWorker) times(id string) *mapTimes {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.runs[id]
	if t == nil {
		t = &mapTimes{done: make(chan struct{})}
		w.runs[id] = t
	}
	return t
}

// callBack answers d as its task does and notes the moments.
func (w *mapWorker) callBack(d protocol.DispatchRequest) {
	w.counter.saw(d.RunID, d.Attempt)
	t := w.times(d.PipelineRunID)
	cb := protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID)}
	switch d.TaskID {
	case "split":
		w.mu.Lock()
		n := w.next
		t.items = n
		w.mu.Unlock()
		var b strings.Builder
		b.WriteString(`{"items":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(i))
		}
		b.WriteString("]}")
		cb.Output = json.RawMessage(b.String())
		w.mu.Lock()
		t.splitCalledBack = time.Now()
		w.mu.Unlock()
	case "item":
		now := time.Now()
		w.mu.Lock()
		t.dispatched++
		if t.dispatched == 1 {
			t.firstItem = now
		}
		if t.dispatched == t.items {
			t.last = now
		}
		w.mu.Unlock()
		cb.Output = json.RawMessage(`{"ok":true}`)
	case "join":
		w.mu.Lock()
		t.joined = time.Now()
		w.mu.Unlock()
		cb.Output = json.RawMessage(`{"joined":true}`)
	}
	if _, err := w.Callback(context.Background(), d, cb); err != nil {
		fmt.Fprintln(os.Stderr, "bench map worker: callback:", err)
		return
	}
	if d.TaskID == "join" {
		close(t.done)
	}
}

// mapResult is what one fanout run measured.
type mapResult struct {
	items                    int
	fanOut, firstItem, total time.Duration
}

// runMap triggers one fanout run of n items and waits (at most 10 minutes) for join.
func runMap(ctx context.Context, api *apiclient.Client, w *mapWorker, n int) (mapResult, error) {
	w.mu.Lock()
	w.next = n
	w.mu.Unlock()
	var out struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	if _, err := api.Post(ctx, "/api/pipelines/fanout/trigger", map[string]any{"input": map[string]int{"n": n}}, &out); err != nil {
		return mapResult{}, fmt.Errorf("trigger: %w", err)
	}
	t := w.times(out.PipelineRunID)
	select {
	case <-t.done:
	case <-ctx.Done():
		return mapResult{}, ctx.Err()
	case <-time.After(10 * time.Minute):
		w.mu.Lock()
		defer w.mu.Unlock()
		return mapResult{}, fmt.Errorf("fanout run %s: join not dispatched after 10 minutes (%d of %d items dispatched)", out.PipelineRunID, t.dispatched, n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return mapResult{items: n, fanOut: t.last.Sub(t.splitCalledBack), firstItem: t.firstItem.Sub(t.splitCalledBack),
		total: t.joined.Sub(t.splitCalledBack)}, nil
}

// runMapBench runs maps fanout runs of n items one after the other (after a warm-up map of
// warmup items) and prints each and their medians.
func runMapBench(ctx context.Context, api *apiclient.Client, w *mapWorker, n, maps, warmup int, stdout io.Writer) error {
	if warmup > 0 {
		if _, err := runMap(ctx, api, w, warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var fan, first, total []time.Duration
	for i := range maps {
		r, err := runMap(ctx, api, w, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "map %d: %d items: split's callback → first item dispatched %s, → every item dispatched %s (fan-out), → join dispatched %s: %.0f items/s end to end\n",
			i+1, n, r.firstItem.Round(time.Millisecond), r.fanOut.Round(time.Millisecond), r.total.Round(time.Millisecond), float64(n)/r.total.Seconds())
		fan, first, total = append(fan, r.fanOut), append(first, r.firstItem), append(total, r.total)
	}
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	_, dup := w.counter.counts()
	fmt.Fprintf(stdout, "summary: items=%d maps=%d first-item=%s fan-out=%s end-to-end=%s items/s=%.0f duplicates=%d (medians)\n",
		n, maps, med(first).Round(time.Millisecond), med(fan).Round(time.Millisecond), med(total).Round(time.Millisecond),
		float64(n)/med(total).Seconds(), dup)
	return nil
}
