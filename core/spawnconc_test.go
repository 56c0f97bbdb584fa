package core_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// spawnedInFlight counts, per pipeline run, the spawned runs (tasks a and b) a worker holds at
// once and the most it saw; a held run waits (up to 10 s, once per run) until reach of its run
// were in flight at once, so that the bound is reached however slowly the machine claims.
type spawnedInFlight struct {
	mu        sync.Mutex
	now, most map[string]int
	gaveUp    map[string]bool
	reach     int
}

func (f *spawnedInFlight) wrap(w *pworker) {
	w.answer = func(d protocol.DispatchRequest) int {
		if d.TaskID == "a" || d.TaskID == "b" {
			f.mu.Lock()
			f.now[d.PipelineRunID]++
			f.most[d.PipelineRunID] = max(f.most[d.PipelineRunID], f.now[d.PipelineRunID])
			f.mu.Unlock()
		}
		return http.StatusAccepted
	}
	after := w.after
	w.after = func(d protocol.DispatchRequest) {
		if d.TaskID == "a" || d.TaskID == "b" {
			time.Sleep(2 * time.Millisecond)
			deadline := time.Now().Add(10 * time.Second)
			for {
				f.mu.Lock()
				done := f.most[d.PipelineRunID] >= f.reach || f.gaveUp[d.PipelineRunID]
				if !done && time.Now().After(deadline) {
					f.gaveUp[d.PipelineRunID], done = true, true
				}
				f.mu.Unlock()
				if done {
					break
				}
				time.Sleep(time.Millisecond)
			}
			f.mu.Lock()
			f.now[d.PipelineRunID]--
			f.mu.Unlock()
		}
		after(d)
	}
}

// A spawn node with maxConcurrency 3 spawns 60 runs, claimed by two instances at once: never
// more than 3 of them are ready or in flight (as the worker counts them, and as the database
// does: pending and not held, dispatching, running), the bound is reached, every run is
// dispatched once and join gets all 60 outputs in order. A failed run (continue) frees its
// place as a completed one does. Two rounds.
func TestSpawnNodeMaxConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 7 })
	w := newPWorker(t, e)
	f := &spawnedInFlight{now: map[string]int{}, most: map[string]int{}, gaveUp: map[string]bool{}, reach: 3}
	f.wrap(w)
	spawnPipeline(e, w, "fan", map[string]any{"maxConcurrency": 3}, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(50) })
	const n = 60
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{"planned":60}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, func(i int) bool { return i == 17 }))
	stop := claimLoops(t, e, other)
	for round := range 2 {
		// The database's count: the spawned runs ready or in flight, sampled every millisecond.
		done := make(chan struct{})
		var most int
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				var k int
				if err := e.pool.QueryRow(context.Background(), `SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM task_runs
					WHERE spawned_by IS NOT NULL AND superseded_by IS NULL
					  AND (status IN ('dispatching', 'running') OR (status = 'pending' AND available_at < '9999-01-01'))
					GROUP BY spawned_by) x`).Scan(&k); err != nil {
					t.Errorf("sample: %v", err)
					return
				}
				most = max(most, k)
			}
		})
		id := e.trigger("fan", map[string]any{"input": round, "failureMode": "continue"})
		waitRunPatiently(e, id, "failed")
		close(done)
		wg.Wait()
		require.LessOrEqual(t, most, 3, "round %d: spawned runs ready or in flight (database)", round)
		f.mu.Lock()
		require.Equal(t, 3, f.most[id], "round %d: the worker held at most, and at least once, 3 at once", round)
		f.mu.Unlock()
		_, status, code, total, left := e.spawnRow(id)
		require.Equal(t, "completed", status)
		require.Equal(t, "SPAWN_ITEMS_FAILED", code)
		require.Equal(t, n, *total)
		require.Zero(t, *left)
		per := map[string]int{}
		for _, d := range append(w.dispatchesOf("a"), w.dispatchesOf("b")...) {
			if d.PipelineRunID == id {
				per[d.RunID]++
			}
		}
		require.Len(t, per, n)
		for runID, k := range per {
			require.Equal(t, 1, k, "run %s dispatched once", runID)
		}
		join := w.dispatchesOf("join")
		require.Len(t, join, round+1)
		_, items := e.spawnDoc(join[round])
		require.Len(t, items, n)
		for i, v := range items {
			if i == 17 {
				require.Nil(t, v)
				continue
			}
			task := "a"
			if i%2 == 1 {
				task = "b"
			}
			require.JSONEq(t, fmt.Sprintf(`{%q:%d}`, task, i), string(v))
		}
	}
	stop()
}

// Under maxConcurrency 1, the DLQ retry of a failed spawned run, made while another spawned run
// holds the node's one place, is held until that one resolves; then it runs, and the node
// completes with every output.
func TestSpawnNodeMaxConcurrencyDLQRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", map[string]any{"maxConcurrency": 1})
	const n = 3
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	var failedOnce atomic.Bool
	w.on("a", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if failedOnce.CompareAndSwap(false, true) {
			return failWith("n=0 failed", false)(d)
		}
		return spawnedAnswer(e, nil)(d)
	})
	w.on("b", spawnedAnswer(e, nil))
	release := w.holdTask("b")
	id := e.trigger("fan", map[string]any{"input": 1, "failureMode": "continue"})
	// Run 0 failed into the DLQ; run 1 (task b) holds the place.
	var dlqID string
	require.Eventually(t, func() bool {
		return e.pool.QueryRow(context.Background(), `SELECT d.id FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id
			WHERE tr.pipeline_run_id = $1 AND tr.item_index = 0`, id).Scan(&dlqID) == nil
	}, 30*time.Second, 10*time.Millisecond)
	w.waitUntil("run 1 dispatched", func() bool { return len(w.dispatchesOf("b")) == 1 })
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND item_index = 0
		AND superseded_by IS NULL AND status = 'pending' AND available_at = '9999-12-31 00:00:00+00'`, id), "the retry is held")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND item_index = 2
		AND status = 'pending' AND available_at = '9999-12-31 00:00:00+00'`, id), "run 2 is still held")
	release()
	e.waitRun(id, "completed")
	require.True(t, failedOnce.Load())
	_, status, code, _, left := e.spawnRow(id)
	require.Equal(t, "completed", status)
	require.Empty(t, code)
	require.Zero(t, *left)
	_, items := e.spawnDoc(w.dispatchesOf("join")[0])
	require.Len(t, items, n)
	require.JSONEq(t, `{"a":0}`, string(items[0]))
	require.JSONEq(t, `{"b":1}`, string(items[1]))
	require.JSONEq(t, `{"a":2}`, string(items[2]))
}

// Under fail-fast, a spawned run's failure fails the node and cancels the runs still held by
// its maxConcurrency with the others: nothing is left pending.
func TestSpawnNodeMaxConcurrencyFailFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", map[string]any{"maxConcurrency": 2})
	const n = 20
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{"planned":20}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, func(i int) bool { return i == 5 }))
	id := e.trigger("fan", map[string]any{"input": 1})
	e.waitRun(id, "failed")
	_, status, code, _, _ := e.spawnRow(id)
	require.Equal(t, "failed", status)
	require.Equal(t, "SPAWN_ITEM_FAILED", code)
	var own []byte
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT output FROM task_runs
		WHERE pipeline_run_id = $1 AND task_id = 'plan' AND item_index IS NULL`, id).Scan(&own))
	require.JSONEq(t, `{"planned":20}`, string(own), "the failed node keeps its own output")
	require.Zero(t, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND status IN ('pending', 'waiting')`, id))
	dispatched := len(w.dispatchesOf("a")) + len(w.dispatchesOf("b"))
	require.Less(t, dispatched, n, "the held runs never started")
	// Every run never dispatched is cancelled (and the other place's run, if it was in flight).
	require.GreaterOrEqual(t, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1
		AND spawned_by IS NOT NULL AND status = 'cancelled'`, id), n-dispatched)
}
