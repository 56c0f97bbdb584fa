package core_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// setPaused asks POST /api/tasks/{id}/pause (or /resume) and decodes the answer.
func (e *env) setPaused(taskID string, pause bool) protocol.TaskPause {
	e.t.Helper()
	var p protocol.TaskPause
	e.postPause("/api/tasks/"+taskID, pause, &p)
	require.Equal(e.t, taskID, p.TaskID)
	return p
}

// postPause asks POST {path}/pause (or /resume), decodes the answer into v and checks its
// paused and pausedAt.
func (e *env) postPause(path string, pause bool, v any) {
	e.t.Helper()
	verb := "resume"
	if pause {
		verb = "pause"
	}
	r := e.do("POST", path+"/"+verb, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	r.json(e.t, v)
	var state struct {
		Paused   bool       `json:"paused"`
		PausedAt *time.Time `json:"pausedAt"`
	}
	r.json(e.t, &state)
	require.Equal(e.t, pause, state.Paused)
	require.Equal(e.t, pause, state.PausedAt != nil)
}

// taskOf is task id of service svc as GET /api/services/{id}/tasks lists it (asked with API key
// key, "" for none).
func (e *env) taskOf(svc, id, key string) protocol.Task {
	e.t.Helper()
	r := e.do("GET", "/api/services/"+svc+"/tasks", nil, key)
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	var tasks []protocol.Task
	r.json(e.t, &tasks)
	for _, t := range tasks {
		if t.ID == id {
			return t
		}
	}
	e.t.Fatalf("task %s not listed", id)
	return protocol.Task{}
}

// A paused task's runs are accepted and wait while other tasks' runs go on; the pause outlives
// a re-registration; resuming releases the waiting runs in priority order.
func TestPauseAndResumeTask(t *testing.T) {
	t.Parallel()
	// One run per claim: the inline claims after the resume dispatch one at a time, in order.
	e := newEnv(t, func(c *core.Config) { c.ProcessBatchSize = 1 })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	e.register("svc", "1", w.URL(), task("p"), task("q"))

	first := e.setPaused("p", true)
	require.Equal(t, first.PausedAt, e.taskOf("svc", "p", "").PausedAt)
	require.Nil(t, e.taskOf("svc", "q", "").PausedAt)
	again := e.setPaused("p", true)
	require.True(t, first.PausedAt.Equal(*again.PausedAt), "pausing again keeps the first pausedAt")

	var waiting []string
	for _, prio := range []int{30, 10, 20} {
		waiting = append(waiting, e.enqueue(map[string]any{"taskId": "p", "priority": prio}).RunID)
	}
	other := e.enqueue(map[string]any{"taskId": "q"})
	e.waitStatus(other.RunID, protocol.StatusCompleted)
	for e.process().Claimed > 0 {
	}
	for _, id := range waiting {
		require.Equal(t, protocol.StatusPending, e.run(id).Status, "a paused task's run waits")
	}
	require.Equal(t, 1, w.count(), "only the other task's run was dispatched")

	// Registering again (a new deploy) leaves the pause in place.
	e.register("svc", "2", w.URL(), task("p"), task("q"))
	require.NotNil(t, e.taskOf("svc", "p", "").PausedAt)
	require.Zero(t, e.process().Claimed)

	e.setPaused("p", false)
	require.Nil(t, e.taskOf("svc", "p", "").PausedAt)
	for _, id := range waiting {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	// Claims take one run each (ProcessBatchSize 1) under the claim lock, so the order of their
	// start times is the order of the claims (the dispatches of concurrent claimers, the resume
	// and the callbacks, may reach the worker in another).
	rows, err := e.pool.Query(context.Background(), "SELECT priority FROM task_runs WHERE task_id = 'p' ORDER BY started_at")
	require.NoError(t, err)
	order, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Equal(t, []int{10, 20, 30}, order, "resumed runs are claimed in priority order")
	// Resuming a task that is not paused changes nothing.
	e.setPaused("p", false)
	require.Nil(t, e.taskOf("svc", "p", "").PausedAt)

	// /metrics names what is paused.
	e.setPaused("q", true)
	r := e.do("GET", "/metrics", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Body), `pipeweave_paused{id="q",kind="task"} 1`)
	require.NotContains(t, string(r.Body), `pipeweave_paused{id="p"`)
}

// Unknown tasks are 404, a body other than {} is 400, and pausing needs an API key when keys
// are configured.
func TestPauseTaskBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"key-one"} })
	e.register("svc", "1", "http://127.0.0.1:9", task("p"))
	for _, verb := range []string{"pause", "resume"} {
		r := e.do("POST", "/api/tasks/nope/"+verb, nil, "key-one")
		require.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
		require.Equal(t, "TASK_NOT_FOUND", r.errorBody(t).Code)
		r = e.do("POST", "/api/tasks/p/"+verb, map[string]any{"until": "tomorrow"}, "key-one")
		require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
		for _, key := range []string{"", "wrong"} {
			r = e.do("POST", "/api/tasks/p/"+verb, map[string]any{}, key)
			require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
		}
	}
	require.Nil(t, e.taskOf("svc", "p", "key-one").PausedAt, "nothing was paused by the refused calls")
	// A task a later version of its service no longer lists is not registered.
	e.register("svc", "2", "http://127.0.0.1:9", task("other"))
	r0 := e.do("POST", "/api/tasks/p/pause", map[string]any{}, "key-one")
	require.Equal(t, http.StatusNotFound, r0.Status, string(r0.Body))
	require.Equal(t, "TASK_NOT_FOUND", r0.errorBody(t).Code)
	e.register("svc", "3", "http://127.0.0.1:9", task("p"))
	r := e.do("POST", "/api/tasks/p/pause", map[string]any{}, "key-one")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

// Once a pause is answered, no claim takes the task's runs, however many instances claim at
// the same time: the runs that left pending by then are all there will be until the resume.
func TestPauseRacesClaims(t *testing.T) {
	t.Parallel()
	// Standalone instances without their loops: only the test's Process calls claim.
	mod := func(c *core.Config) { c.Mode, c.ProcessBatchSize = core.ModeStandalone, 5 }
	e := newEnv(t, mod)
	other := newEnvOn(t, e.pool, mod)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("p"))
	for round := range 5 {
		e.setPaused("p", true)
		e.enqueueMany("p", 60)
		e.setPaused("p", false)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		passes := processUntil(ctx, &wg, e, other)
		time.Sleep(time.Duration(round) * 3 * time.Millisecond)
		e.setPaused("p", true)
		taken := e.count("SELECT count(*) FROM task_runs WHERE task_id = 'p' AND status <> 'pending'")
		passes.waitFull(e)
		stop()
		wg.Wait()
		require.Equal(t, taken, e.count("SELECT count(*) FROM task_runs WHERE task_id = 'p' AND status <> 'pending'"), "round %d: runs were claimed after the pause was answered", round)
		// The rest of this round's runs go before the next round.
		e.setPaused("p", false)
		for e.process().Claimed > 0 {
		}
		require.Zero(t, e.count("SELECT count(*) FROM task_runs WHERE task_id = 'p' AND status = 'pending'"))
	}
}

// setPipelinePaused asks POST /api/pipelines/{id}/pause (or /resume) and decodes the answer.
func (e *env) setPipelinePaused(id string, pause bool) protocol.PipelinePause {
	e.t.Helper()
	var p protocol.PipelinePause
	e.postPause("/api/pipelines/"+id, pause, &p)
	require.Equal(e.t, id, p.PipelineID)
	return p
}

// A paused pipeline accepts triggers and its nodes wait, whether they were pending at the pause
// or became pending after it (an entry node of a new run, a successor made pending by a callback
// of an attempt that was running); the task runs show their real times; resuming completes the
// runs. Other pipelines go on meanwhile.
func TestPauseAndResumePipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	e.register("other", "1", w.URL(), task("solo"))
	release := w.holdTask("a")
	running := e.trigger("dia", nil)
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })

	first := e.setPipelinePaused("dia", true)
	r := e.do("GET", "/api/pipelines/dia", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	var p protocol.Pipeline
	r.json(t, &p)
	require.NotNil(t, p.PausedAt)
	require.True(t, first.PausedAt.Equal(*p.PausedAt))
	m := e.do("GET", "/metrics", nil, "")
	require.Contains(t, string(m.Body), `pipeweave_paused{id="dia",kind="pipeline"} 1`)

	triggered := e.trigger("dia", nil)
	before := time.Now()
	release() // a's callback makes b and c pending, while the pipeline is paused
	w.waitUntil("a's callbacks", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 1
	})
	for e.process().Claimed > 0 {
	}
	require.Len(t, w.dispatchesOf("a"), 1, "the new run's entry node waits")
	require.Empty(t, w.dispatchesOf("b"))
	require.Equal(t, map[string]string{"a": "completed", "b": "pending", "c": "pending", "d": "waiting"}, e.pipelineRun(running).states())
	require.Equal(t, "pending", e.pipelineRun(triggered).node("a").Status)
	// Every pending node is parked (out of the claim's way), however it became pending.
	var unparked, parked int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE parked_available_at IS NULL),
		count(*) FILTER (WHERE parked_available_at IS NOT NULL) FROM task_runs WHERE pipeline_run_id IS NOT NULL AND status = 'pending'`).Scan(&unparked, &parked))
	require.Equal(t, [2]int{0, 3}, [2]int{unparked, parked})
	// A parked node shows the time it was made ready, not the far future it is parked at.
	b := e.do("GET", "/api/task-runs/"+e.pipelineRun(running).node("b").ID, nil, "")
	var tr protocol.TaskRun
	b.json(t, &tr)
	require.WithinDuration(t, before, tr.ScheduledAt, time.Minute)

	// Another pipeline (the service's own) runs on.
	other := e.trigger("other", nil)
	e.waitRun(other, "completed")

	e.setPipelinePaused("dia", false)
	e.waitRun(running, "completed")
	e.waitRun(triggered, "completed")
}

// Unknown pipelines are 404 and a body other than {} is 400.
func TestPausePipelineBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	diamond(e, "http://127.0.0.1:9")
	for _, verb := range []string{"pause", "resume"} {
		r := e.do("POST", "/api/pipelines/nope/"+verb, nil, "")
		require.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
		require.Equal(t, "PIPELINE_NOT_FOUND", r.errorBody(t).Code)
		r = e.do("POST", "/api/pipelines/dia/"+verb, map[string]any{"until": "tomorrow"}, "")
		require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	}
	// Resuming a pipeline that is not paused changes nothing.
	e.setPipelinePaused("dia", false)
}

// Once a pipeline's pause is answered, no claim of any instance takes its nodes, while triggers
// and callbacks go on: the nodes claimed by then are all there will be until the resume.
func TestPausePipelineRacesClaims(t *testing.T) {
	t.Parallel()
	mod := func(c *core.Config) { c.Mode, c.ProcessBatchSize = core.ModeStandalone, 5 }
	e := newEnv(t, mod)
	other := newEnvOn(t, e.pool, mod)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	for round := range 5 {
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		passes := processUntil(ctx, &wg, e, other)
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 40; i++ {
				r := e.do("POST", "/api/pipelines/dia/trigger", map[string]any{"input": map[string]int{"i": i}}, "")
				if r.Status != http.StatusCreated {
					t.Errorf("trigger: %d %s", r.Status, r.Body)
					return
				}
			}
		})
		time.Sleep(time.Duration(5+round*3) * time.Millisecond)
		e.setPipelinePaused("dia", true)
		taken := e.count("SELECT count(*) FROM task_runs WHERE pipeline_run_id IS NOT NULL AND started_at IS NOT NULL")
		passes.waitFull(e)
		stop()
		wg.Wait()
		require.Equal(t, taken, e.count("SELECT count(*) FROM task_runs WHERE pipeline_run_id IS NOT NULL AND started_at IS NOT NULL"), "round %d: nodes were claimed after the pause was answered", round)
		// The resume puts every parked node back, and the sweep of the next process any that a
		// callback running across the resume parked after it.
		e.setPipelinePaused("dia", false)
		e.waitFor("no node left parked", func() bool {
			e.process()
			var parked int
			require.NoError(t, e.pool.QueryRow(context.Background(),
				"SELECT count(*) FROM task_runs WHERE parked_available_at IS NOT NULL OR available_at > now() + interval '1 year'").Scan(&parked))
			return parked == 0
		})
	}
	// Every run ends before the servers stop, so no callback is left in flight.
	e.waitFor("every run to end", func() bool {
		e.process()
		var open int
		require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pipeline_runs WHERE status = 'running'").Scan(&open))
		return open == 0
	})
}

// processUntil runs Process on each instance in a loop of its own until ctx ends, and returns
// the count of passes each loop completed.
func processUntil(ctx context.Context, wg *sync.WaitGroup, instances ...*env) passes {
	p := make(passes, len(instances))
	for i, o := range instances {
		p[i] = new(atomic.Int64)
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := o.orch.Process(context.WithoutCancel(ctx)); err != nil {
					o.t.Errorf("process: %v", err)
					return
				}
				p[i].Add(1)
			}
		})
	}
	return p
}

// passes counts the Process passes of processUntil's loops, one counter per instance.
type passes []*atomic.Int64

// waitFull waits until every loop has completed a whole pass that started after this call (two
// more completions: the first may have started before), so that a check after it cannot pass
// only because no claim ran in the window it looks at.
func (p passes) waitFull(e *env) {
	e.t.Helper()
	start := make([]int64, len(p))
	for i, c := range p {
		start[i] = c.Load()
	}
	e.waitFor("a whole Process pass of every instance", func() bool {
		for i, c := range p {
			if c.Load() < start[i]+2 {
				return false
			}
		}
		return true
	})
}

// A parked node that leaves pending (here its run is cancelled) is unparked on the way: it
// keeps its real time and no parked time, and a later resume has nothing of it to put back.
func TestParkedNodeLeavingPendingIsUnparked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	diamond(e, "http://127.0.0.1:9")
	e.setPipelinePaused("dia", true)
	prun := e.trigger("dia", nil)
	require.Equal(t, 1, e.count("SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND parked_available_at IS NOT NULL", prun))
	r := e.do("POST", "/api/runs/"+prun+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Zero(t, e.count("SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND (parked_available_at IS NOT NULL OR available_at > now() + interval '1 year')", prun))
	e.setPipelinePaused("dia", false)
	require.Equal(t, "cancelled", e.pipelineRun(prun).node("a").Status)
}
