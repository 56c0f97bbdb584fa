package core_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// pworker is a worker for pipeline tests: each task answers success unless its behaviour says
// otherwise; a held task waits until released.
type pworker struct {
	*worker
	mu       sync.Mutex
	behave   map[string]func(d protocol.DispatchRequest) protocol.CallbackRequest
	hold     map[string]chan struct{}
	statuses map[string][]int // callback answers per task
}

func newPWorker(t *testing.T, e *env) *pworker {
	p := &pworker{worker: newWorker(t, e.url), behave: map[string]func(protocol.DispatchRequest) protocol.CallbackRequest{},
		hold: map[string]chan struct{}{}, statuses: map[string][]int{}}
	p.after = func(d protocol.DispatchRequest) {
		p.mu.Lock()
		gate, f := p.hold[d.TaskID], p.behave[d.TaskID]
		p.mu.Unlock()
		if gate != nil {
			<-gate
		}
		body := success(d)
		if f != nil {
			body = f(d)
		}
		status, _ := p.callback(d, body)
		p.mu.Lock()
		p.statuses[d.TaskID] = append(p.statuses[d.TaskID], status)
		p.mu.Unlock()
		p.notify()
	}
	return p
}

func (p *pworker) on(task string, f func(d protocol.DispatchRequest) protocol.CallbackRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.behave[task] = f
}

// holdTask makes task wait until the returned function is called.
func (p *pworker) holdTask(task string) func() {
	gate := make(chan struct{})
	p.mu.Lock()
	p.hold[task] = gate
	p.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

func (p *pworker) dispatchesOf(task string) []protocol.DispatchRequest {
	var out []protocol.DispatchRequest
	for _, d := range p.all() {
		if d.TaskID == task {
			out = append(out, d)
		}
	}
	return out
}

func failWith(msg string, retryable bool) func(protocol.DispatchRequest) protocol.CallbackRequest {
	return func(protocol.DispatchRequest) protocol.CallbackRequest {
		return protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: msg, ErrorCode: "BOOM", Retryable: ptr(retryable)}
	}
}

func next(ids ...string) func(*protocol.TaskDefinition) {
	return func(td *protocol.TaskDefinition) { td.AllowedNext = ids }
}

type runTask struct {
	ID                  string  `json:"id"`
	TaskID              string  `json:"taskId"`
	Status              string  `json:"status"`
	CodeVersion         int     `json:"codeVersion"`
	CodeChanged         bool    `json:"codeChanged"`
	PreviousCodeVersion *int    `json:"previousCodeVersion"`
	SupersededBy        string  `json:"supersededBy"`
	Error               *string `json:"error"`
	ErrorCode           *string `json:"errorCode"`
}

type pipelineRun struct {
	ID          string     `json:"id"`
	PipelineID  string     `json:"pipelineId"`
	Status      string     `json:"status"`
	FailureMode string     `json:"failureMode"`
	Error       *string    `json:"error"`
	InputPath   string     `json:"inputPath"`
	CompletedAt *time.Time `json:"completedAt"`
	Snapshot    struct {
		EntryTasks []string `json:"entryTasks"`
		Tasks      map[string]struct {
			AllowedNext  []string `json:"allowedNext"`
			Predecessors []string `json:"predecessors"`
		} `json:"tasks"`
	} `json:"snapshot"`
	Tasks []runTask `json:"tasks"`
	// The run's timeout, deadline and error code (absent: none).
	TimeoutMs *int64     `json:"timeoutMs"`
	Deadline  *time.Time `json:"deadline"`
	ErrorCode string     `json:"errorCode"`
}

// node returns the current task run of task in the pipeline run.
func (r pipelineRun) node(task string) runTask {
	for _, t := range r.Tasks {
		if t.TaskID == task && t.SupersededBy == "" {
			return t
		}
	}
	return runTask{}
}

func (r pipelineRun) states() map[string]string {
	out := map[string]string{}
	for _, t := range r.Tasks {
		if t.SupersededBy == "" {
			out[t.TaskID] = t.Status
		}
	}
	return out
}

func (e *env) trigger(pipeline string, body any) string {
	e.t.Helper()
	r := e.do("POST", "/api/pipelines/"+pipeline+"/trigger", body, "")
	require.Equal(e.t, http.StatusCreated, r.Status, "trigger: %s", r.Body)
	var out struct {
		PipelineRunID string `json:"pipelineRunId"`
		Status        string `json:"status"`
		InputPath     string `json:"inputPath"`
	}
	r.json(e.t, &out)
	require.Equal(e.t, "running", out.Status)
	require.Equal(e.t, "pipelines/"+out.PipelineRunID+"/input.json", out.InputPath)
	return out.PipelineRunID
}

func (e *env) pipelineRun(id string) pipelineRun {
	e.t.Helper()
	r := e.do("GET", "/api/runs/"+id, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "run: %s", r.Body)
	var out pipelineRun
	r.json(e.t, &out)
	return out
}

// waitRun waits until pipeline run id ends, and fails the test unless it ended in status. The
// run is read, and read again after the commit that ends it (the first read sees an earlier one).
func (e *env) waitRun(id, status string) pipelineRun {
	e.t.Helper()
	for {
		e.sig.Drain()
		r := e.pipelineRun(id)
		if r.Status != "running" {
			if r.Status != status {
				e.t.Fatalf("pipeline run %s ended %s, want %s: %+v", id, r.Status, status, r.states())
			}
			return r
		}
		what := waiting{e.t, fmt.Sprintf("pipeline run %s to be %s", id, status)}
		for ended := ""; ended != id; {
			ended, _ = e.sig.PipelineEnded(what)
		}
	}
}

// diamond registers a → b, c → d in service "dia".
func diamond(e *env, url string, mods ...func(*protocol.TaskDefinition)) {
	e.register("dia", "1", url,
		task("a", append(mods, next("b", "c"))...), task("b", mods...), task("c", mods...), task("d", mods...))
	// b and c both lead to d.
	e.register("dia", "1", url,
		task("a", append(mods, next("b", "c"))...), task("b", append(mods, next("d"))...), task("c", append(mods, next("d"))...), task("d", mods...))
}

func upstreamKeys(d protocol.DispatchRequest) []string {
	var keys []string
	for k := range d.UpstreamRefs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestLinearPipeline(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, testLinearPipeline)
}

func testLinearPipeline(t *testing.T, inline func(*core.Config)) {
	e := newEnv(t, inline)
	w := newPWorker(t, e)
	e.register("lin", "1", w.URL(), task("one", next("two")), task("two", next("three")), task("three"))
	w.on("one", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"pages":3}`) })
	id := e.trigger("lin", map[string]any{"input": map[string]string{"doc": "x"}})
	r := e.waitRun(id, "completed")
	require.Equal(t, map[string]string{"one": "completed", "two": "completed", "three": "completed"}, r.states())
	require.NotNil(t, r.CompletedAt)
	require.JSONEq(t, `{"doc":"x"}`, string(e.object(r.InputPath).Content))
	inlineOn := e.cfg.InlinePayloadMaxBytes > 0
	require.Equal(t, !inlineOn, e.inStorage(r.InputPath), "a small input is stored in one place")
	one, two := w.dispatchesOf("one")[0], w.dispatchesOf("two")[0]
	require.Equal(t, id, two.PipelineRunID)
	require.Equal(t, r.InputPath, two.InputPath)
	for _, d := range []protocol.DispatchRequest{one, two} {
		if inlineOn {
			require.JSONEq(t, `{"doc":"x"}`, string(d.Input), "every node gets the pipeline run's inline input")
		} else {
			require.Nil(t, d.Input)
		}
	}
	require.Equal(t, []string{"one"}, upstreamKeys(two))
	outPath := "runs/" + r.node("one").ID + "/output.json"
	require.Equal(t, outPath, two.UpstreamRefs["one"].OutputPath)
	// The output reads the same through the API, stored or inline; inline, the successor's
	// dispatch carries it.
	require.JSONEq(t, `{"pages":3}`, string(e.object(outPath).Content))
	require.Equal(t, !inlineOn, e.inStorage(outPath))
	if inlineOn {
		require.JSONEq(t, `{"pages":3}`, string(two.UpstreamRefs["one"].Output))
	} else {
		require.Nil(t, two.UpstreamRefs["one"].Output)
	}
	require.Equal(t, []string{"two"}, upstreamKeys(w.dispatchesOf("three")[0]))
	require.Empty(t, one.UpstreamRefs)
}

func TestFanOutAndFanIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("fan", "1", w.URL(), task("src", next("p1", "p2", "p3")), task("p1", next("sink")), task("p2", next("sink")),
		task("p3", next("sink")), task("sink"))
	id := e.trigger("fan", map[string]any{"input": 1})
	r := e.waitRun(id, "completed")
	for _, task := range []string{"src", "p1", "p2", "p3", "sink"} {
		require.Equal(t, "completed", r.node(task).Status, task)
		require.Len(t, w.dispatchesOf(task), 1, task)
	}
	require.Equal(t, []string{"p1", "p2", "p3"}, upstreamKeys(w.dispatchesOf("sink")[0]))
}

// The seed's PDF example: download → extract-text, extract-tables → summarize, with the
// optional tables branch not selected: it is skipped and summarize runs with the text alone.
func TestPDFPipelineWithOptionalBranchSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("pdf-processor", "1.0.0", w.URL(),
		task("download", next("extract-text", "extract-tables")),
		task("extract-text", next("summarize")),
		task("extract-tables", next("summarize")),
		task("summarize"))
	w.on("download", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := success(d)
		cb.SelectedNext = []string{"extract-text"}
		cb.Assets = map[string]protocol.Asset{"pdf-file": {Path: protocol.AssetPath(d.RunID, "pdf-file"), Size: 50000, Type: "binary"}}
		return cb
	})
	// The seed's curl example posts the input itself as the body.
	id := e.trigger("pdf-processor", map[string]any{"pdfUrl": "https://example.com/doc.pdf", "extractTables": false})
	r := e.waitRun(id, "completed")
	require.Equal(t, map[string]string{"download": "completed", "extract-text": "completed", "extract-tables": "skipped", "summarize": "completed"}, r.states())
	require.Empty(t, w.dispatchesOf("extract-tables"))
	text := w.dispatchesOf("extract-text")[0]
	require.Equal(t, "binary", text.UpstreamRefs["download"].Assets["pdf-file"].Type)
	require.Equal(t, []string{"extract-text"}, upstreamKeys(w.dispatchesOf("summarize")[0]))
	require.JSONEq(t, `{"pdfUrl":"https://example.com/doc.pdf","extractTables":false}`, string(e.object(r.InputPath).Content))

	// A node no predecessor selected is skipped, and the skip propagates.
	e.register("skipper", "1", w.URL(), task("root", next("x", "y")), task("x", next("x2")), task("x2"), task("y"))
	w.on("root", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := success(d)
		cb.SelectedNext = []string{"y"}
		return cb
	})
	r = e.waitRun(e.trigger("skipper", nil), "completed")
	require.Equal(t, map[string]string{"root": "completed", "x": "skipped", "x2": "skipped", "y": "completed"}, r.states())
}

// A selectedNext outside allowedNext fails the task, without retry.
func TestSelectedNextOutsideAllowedNextFailsTheTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sel", "1", w.URL(), task("first", next("second"), withRetries(3, 0)), task("second"), task("elsewhere"))
	w.on("first", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := success(d)
		cb.SelectedNext = []string{"elsewhere"}
		return cb
	})
	r := e.waitRun(e.trigger("sel", nil), "failed")
	first := e.run(r.node("first").ID)
	require.Equal(t, protocol.StatusFailed, first.Status)
	require.Equal(t, "INVALID_SELECTED_NEXT", *first.ErrorCode)
	require.Len(t, w.dispatchesOf("first"), 1)
}

// Two predecessors calling back at the same instant enable the join exactly once.
func TestJoinPredecessorsCallingBackTogetherEnableItOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	diamond(e, w.URL())
	for round := range rounds(20) {
		w.mu.Lock()
		w.after = nil
		w.mu.Unlock()
		id := e.trigger("dia", map[string]any{"input": round})
		w.waitUntil("a", func() bool { return len(dispatchesFor(w, id, "a")) == 1 })
		a := dispatchesFor(w, id, "a")[0]
		status, _ := w.callback(a, success(a))
		require.Equal(t, http.StatusOK, status)
		w.waitUntil("b and c", func() bool { return len(dispatchesFor(w, id, "b")) == 1 && len(dispatchesFor(w, id, "c")) == 1 })
		b, c := dispatchesFor(w, id, "b")[0], dispatchesFor(w, id, "c")[0]
		var wg sync.WaitGroup
		start := make(chan struct{})
		statuses := make([]int, 2)
		answers := make([][]byte, 2)
		for i, d := range []protocol.DispatchRequest{b, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i], answers[i] = w.callback(d, success(d))
			}()
		}
		close(start)
		wg.Wait()
		for i := range statuses {
			require.Equal(t, http.StatusOK, statuses[i], string(answers[i]))
		}
		w.waitUntil("d", func() bool { return len(dispatchesFor(w, id, "d")) >= 1 })
		dd := dispatchesFor(w, id, "d")
		require.Len(t, dd, 1, "round %d: the join ran more than once", round)
		require.Equal(t, []string{"b", "c"}, upstreamKeys(dd[0]))
		status, _ = w.callback(dd[0], success(dd[0]))
		require.Equal(t, http.StatusOK, status)
		e.waitRun(id, "completed")
		require.Len(t, dispatchesFor(w, id, "d"), 1)
	}
}

func dispatchesFor(w *worker, pipelineRunID, task string) []protocol.DispatchRequest {
	var out []protocol.DispatchRequest
	for _, d := range w.all() {
		if d.PipelineRunID == pipelineRunID && d.TaskID == task {
			out = append(out, d)
		}
	}
	return out
}

// Failure modes on a diamond whose b fails for good while c goes on.
func TestFailureModes(t *testing.T) {
	t.Parallel()
	t.Run("fail-fast cancels what has not started", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		diamond(e, w.URL())
		w.on("b", failWith("bad page", false))
		releaseC := w.holdTask("c")
		id := e.trigger("dia", map[string]any{"input": 1})
		r := e.waitRun(id, "failed")
		require.Equal(t, "fail-fast", r.FailureMode)
		require.Equal(t, "failed", r.node("b").Status)
		require.Equal(t, "cancelled", r.node("d").Status)
		// Status and code say "cancelled"; the text says why, without saying it a third time.
		require.Equal(t, "CANCELLED", *r.node("d").ErrorCode)
		require.Equal(t, "task b failed (fail-fast)", *r.node("d").Error)
		require.Contains(t, *r.Error, "b")
		require.Contains(t, []string{"dispatching", "running"}, r.node("c").Status, "c had started and goes on")
		releaseC()
		e.waitStatus(r.node("c").ID, protocol.StatusCompleted)
		r = e.pipelineRun(id)
		require.Equal(t, "failed", r.Status, "a late success does not revive the run")
		require.Equal(t, "cancelled", r.node("d").Status)
		require.Empty(t, w.dispatchesOf("d"))
	})
	t.Run("continue skips what is downstream of the failure", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		e.register("cont", "1", w.URL(), task("a", next("b", "c", "e")), task("b", next("d")), task("c", next("d")), task("d"), task("e"))
		w.on("b", failWith("bad page", false))
		id := e.trigger("cont", map[string]any{"input": 1, "failureMode": "continue"})
		r := e.waitRun(id, "failed")
		require.Equal(t, map[string]string{"a": "completed", "b": "failed", "c": "completed", "d": "skipped", "e": "completed"}, r.states())
		require.Contains(t, *r.node("d").Error, "upstream")
		require.Empty(t, w.dispatchesOf("d"))
	})
	t.Run("partial-merge runs the join with what is available", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		diamond(e, w.URL())
		w.on("b", failWith("bad page", false))
		id := e.trigger("dia", map[string]any{"input": 1, "failureMode": "partial-merge"})
		r := e.waitRun(id, "partial")
		require.Equal(t, map[string]string{"a": "completed", "b": "failed", "c": "completed", "d": "completed"}, r.states())
		require.Equal(t, []string{"c"}, upstreamKeys(w.dispatchesOf("d")[0]))
		require.NotNil(t, r.CompletedAt)
	})
	t.Run("a retried failure does not end the run", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		diamond(e, w.URL(), withRetries(1, 0))
		var failed atomic.Bool
		w.on("b", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			if d.Attempt == 1 {
				failed.Store(true)
				return failWith("flaky", true)(d)
			}
			return success(d)
		})
		id := e.trigger("dia", nil)
		e.waitMoved("the retry", func() bool {
			e.process()
			return e.pipelineRun(id).Status == "completed"
		})
		require.True(t, failed.Load())
		require.Len(t, w.dispatchesOf("b"), 2)
	})
}

// Cancelling a run with a running task: the rest is cancelled, the running worker learns it
// from shouldCancel, its late callback changes nothing, and cancelling again is 409.
func TestCancelRunWithRunningTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	release := w.holdTask("a")
	id := e.trigger("dia", nil)
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })
	r := e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var run pipelineRun
	r.json(t, &run)
	require.Equal(t, "cancelled", run.Status)
	require.Equal(t, map[string]string{"a": "cancelled", "b": "cancelled", "c": "cancelled", "d": "cancelled"}, run.states())
	require.Equal(t, "CANCELLED", *run.node("b").ErrorCode)
	require.Equal(t, "the pipeline run was cancelled", *run.node("b").Error)

	a := w.dispatchesOf("a")[0]
	status, hb := w.heartbeat(a, ptr(10), "")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.ShouldCancel)
	release()
	w.waitUntil("a's late callback", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 1
	})
	require.Equal(t, []int{http.StatusOK}, w.statuses["a"])
	run = e.pipelineRun(id)
	require.Equal(t, "cancelled", run.Status)
	require.Equal(t, "cancelled", run.node("a").Status)
	require.Empty(t, w.dispatchesOf("b"))

	again := e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
	require.Equal(t, http.StatusConflict, again.Status)
	require.Equal(t, "PIPELINE_RUN_FINISHED", again.errorBody(t).Code)
	require.Equal(t, http.StatusNotFound, e.do("POST", "/api/runs/prun_nope/cancel", nil, "").Status)
}

// A run follows the structure it was triggered with, whatever later registrations do.
func TestStructureChangeDuringRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	release := w.holdTask("a")
	first := e.trigger("dia", nil)
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })
	// The new version drops c from a's successors and d's fan-in.
	e.register("dia", "2", w.URL(), task("a", next("b")), task("b", next("d")), task("c"), task("d"))
	release()
	r := e.waitRun(first, "completed")
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "completed", "d": "completed"}, r.states())
	require.ElementsMatch(t, []string{"b", "c"}, r.Snapshot.Tasks["a"].AllowedNext)

	w.mu.Lock()
	delete(w.hold, "a")
	w.mu.Unlock()
	second := e.waitRun(e.trigger("dia", nil), "completed")
	// c is now an entry task of the service's pipeline, and d waits for b alone.
	require.ElementsMatch(t, []string{"a", "c"}, second.Snapshot.EntryTasks)
	require.Equal(t, []string{"b"}, second.Snapshot.Tasks["d"].Predecessors)
}

func TestDryRunPlans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := "http://127.0.0.1:9"
	diamond(e, url)
	e.register("lin", "1", url, task("l1", next("l2")), task("l2", next("l3")), task("l3", withConcurrency(2)))
	e.register("pdf", "1", url, task("download", next("extract-text", "extract-tables")), task("extract-text", next("summarize")),
		task("extract-tables", next("summarize")), task("summarize"))
	type plan struct {
		Valid         bool `json:"valid"`
		ExecutionPlan []struct {
			Step     int      `json:"step"`
			Tasks    []string `json:"tasks"`
			Type     string   `json:"type"`
			WaitsFor []string `json:"waitsFor"`
		} `json:"executionPlan"`
		Warnings []string `json:"warnings"`
		Errors   []string `json:"errors"`
	}
	dry := func(id string) plan {
		r := e.do("POST", "/api/pipelines/"+id+"/dry-run", nil, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var p plan
		r.json(t, &p)
		return p
	}
	p := dry("dia")
	require.True(t, p.Valid)
	require.Len(t, p.ExecutionPlan, 3)
	require.Equal(t, []string{"a"}, p.ExecutionPlan[0].Tasks)
	require.Equal(t, "entry", p.ExecutionPlan[0].Type)
	require.Equal(t, []string{"b", "c"}, p.ExecutionPlan[1].Tasks)
	require.Equal(t, "parallel", p.ExecutionPlan[1].Type)
	require.Equal(t, []string{"d"}, p.ExecutionPlan[2].Tasks)
	require.Equal(t, "join", p.ExecutionPlan[2].Type)
	require.Equal(t, []string{"b", "c"}, p.ExecutionPlan[2].WaitsFor)
	require.Empty(t, p.Errors)

	p = dry("lin")
	require.True(t, p.Valid)
	require.Equal(t, []string{"entry", "parallel", "end"}, []string{p.ExecutionPlan[0].Type, p.ExecutionPlan[1].Type, p.ExecutionPlan[2].Type})
	require.Len(t, p.Warnings, 1)
	require.Contains(t, p.Warnings[0], "concurrency 2")

	p = dry("pdf")
	require.True(t, p.Valid)
	require.Equal(t, []string{"extract-tables", "extract-text"}, p.ExecutionPlan[1].Tasks)
	require.Equal(t, "join", p.ExecutionPlan[2].Type)

	// A definition naming tasks nobody registered, and a cyclic service.
	r := e.do("PUT", "/api/pipelines/ghosts", map[string]any{"entryTasks": []string{"a", "phantom"}}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	p = dry("ghosts")
	require.False(t, p.Valid)
	require.Contains(t, p.Errors[0], "phantom")
	e.register("loop", "1", url, task("x", next("y")), task("y", next("z")), task("z", next("y")))
	p = dry("loop")
	require.False(t, p.Valid)
	require.Contains(t, p.Errors[0], "y → z → y")
	require.Equal(t, http.StatusNotFound, e.do("POST", "/api/pipelines/nope/dry-run", nil, "").Status)
}

// Unknown pipelines, missing tasks, cycles and finished runs are refused clearly and leave
// nothing behind.
func TestPipelineBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := "http://127.0.0.1:9"
	e.register("svc", "1", url, task("a", next("b")), task("b"))
	e.register("loop", "1", url, task("x", next("y")), task("y", next("x")), task("w", next("x")))

	r := e.do("POST", "/api/pipelines/nope/trigger", map[string]any{"input": 1}, "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "PIPELINE_NOT_FOUND", r.errorBody(t).Code)

	require.Equal(t, http.StatusOK, e.do("PUT", "/api/pipelines/partial", map[string]any{"entryTasks": []string{"a", "ghost-1", "ghost-2"}}, "").Status)
	r = e.do("POST", "/api/pipelines/partial/trigger", map[string]any{"input": 1}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	body := r.errorBody(t)
	require.Equal(t, "PIPELINE_TASKS_MISSING", body.Code)
	require.Contains(t, body.Error, "ghost-1, ghost-2")

	r = e.do("POST", "/api/pipelines/loop/trigger", map[string]any{"input": 1}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	body = r.errorBody(t)
	require.Equal(t, "PIPELINE_CYCLE", body.Code)
	require.Contains(t, body.Error, "x → y → x")
	r = e.do("PUT", "/api/pipelines/cyclic", map[string]any{"entryTasks": []string{"w"}}, "")
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "PIPELINE_CYCLE", r.errorBody(t).Code)

	for name, c := range map[string]struct {
		body   string
		status int
	}{
		"bad failure mode":  {`{"input":1,"failureMode":"yolo"}`, 400},
		"negative priority": {`{"input":1,"priority":-1}`, 400},
		"metadata array":    {`{"input":1,"metadata":[]}`, 400},
		"malformed":         {`{"input":`, 400},
		"not an object":     {`[1,2]`, 400},
	} {
		r := e.do("POST", "/api/pipelines/svc/trigger", c.body, "")
		require.Equal(t, c.status, r.Status, "%s: %s", name, r.Body)
		r.errorBody(t)
	}
	for name, body := range map[string]string{
		"no entry tasks":   `{"entryTasks":[]}`,
		"bad failure mode": `{"entryTasks":["a"],"failureMode":"nope"}`,
		"bad task id":      `{"entryTasks":["a/b"]}`,
	} {
		r := e.do("PUT", "/api/pipelines/p", body, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
	}
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pipeline_runs").Scan(&n))
	require.Zero(t, n)
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs").Scan(&n))
	require.Zero(t, n)
	require.Zero(t, countFiles(t, e.storageDir), "no input stored")
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/runs/prun_nope", nil, "").Status)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/nope", nil, "").Status)
}

// Registration declares pipelines; GET /api/pipelines lists them with their structure.
func TestPipelineDefinitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.postReg("pdf", protocol.RegisterRequest{ServiceID: "pdf", Version: "1", BaseURL: "http://127.0.0.1:9",
		Tasks:     []protocol.TaskDefinition{task("download", next("text")), task("text"), task("thumb")},
		Pipelines: []protocol.PipelineDefinition{{ID: "text-only", EntryTasks: []string{"download"}, FailureMode: "continue"}}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var list []struct {
		ID          string             `json:"id"`
		ServiceID   string             `json:"serviceId"`
		Implicit    bool               `json:"implicit"`
		EntryTasks  []string           `json:"entryTasks"`
		FailureMode string             `json:"failureMode"`
		Tasks       map[string]rawNode `json:"tasks"`
		Valid       bool               `json:"valid"`
	}
	e.do("GET", "/api/pipelines", nil, "").json(t, &list)
	require.Len(t, list, 2)
	require.Equal(t, "pdf", list[0].ID)
	require.True(t, list[0].Implicit)
	require.Equal(t, []string{"download", "thumb"}, list[0].EntryTasks)
	require.Len(t, list[0].Tasks, 3)
	require.Equal(t, "text-only", list[1].ID)
	require.False(t, list[1].Implicit)
	require.Equal(t, "continue", list[1].FailureMode)
	require.Len(t, list[1].Tasks, 2)
	require.Equal(t, []string{"text"}, list[1].Tasks["download"].AllowedNext)
	require.True(t, list[1].Valid)

	// Edges may cross services.
	e.register("other", "1", "http://127.0.0.1:9", task("publish"))
	r = e.do("PUT", "/api/pipelines/cross", map[string]any{"entryTasks": []string{"text", "publish"}}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.register("pdf", "1", "http://127.0.0.1:9", task("download", next("text")), task("text", next("publish")), task("thumb"))
	var cross struct {
		Tasks map[string]rawNode `json:"tasks"`
	}
	e.do("GET", "/api/pipelines/cross", nil, "").json(t, &cross)
	require.Equal(t, "other", cross.Tasks["publish"].ServiceID)
}

type rawNode struct {
	ServiceID    string   `json:"serviceId"`
	AllowedNext  []string `json:"allowedNext"`
	Predecessors []string `json:"predecessors"`
}

// A DLQ retry of a pipeline task re-opens its run, and the DAG continues from there.
func TestDLQRetryReopensPipelineRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	w.on("b", failWith("upstream service down", false))
	id := e.trigger("dia", map[string]any{"input": 1})
	r := e.waitRun(id, "failed")
	require.Equal(t, "cancelled", r.node("d").Status)
	var page struct {
		Items []struct {
			ID            string `json:"id"`
			PipelineRunID string `json:"pipelineRunId"`
			TaskID        string `json:"taskId"`
		} `json:"items"`
	}
	e.do("GET", "/api/dlq", nil, "").json(t, &page)
	require.Len(t, page.Items, 1)
	require.Equal(t, id, page.Items[0].PipelineRunID)

	w.on("b", nil)
	resp := e.do("POST", "/api/dlq/"+page.Items[0].ID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	var retried enqueued
	resp.json(t, &retried)
	r = e.waitRun(id, "completed")
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "completed", "d": "completed"}, r.states())
	require.Equal(t, retried.RunID, r.node("b").ID)
	superseded := 0
	for _, t := range r.Tasks {
		if t.SupersededBy == retried.RunID {
			superseded++
		}
	}
	require.Equal(t, 1, superseded, "the failed task run stays, marked as replaced")
	require.Equal(t, []string{"b", "c"}, upstreamKeys(w.dispatchesOf("d")[0]))
	require.Nil(t, r.Error)
}

// Runs are listed newest first, filtered, with code-change flags against the previous run.
func TestRunsListAndCodeChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	first := e.trigger("dia", nil)
	e.waitRun(first, "completed")
	for _, tk := range e.pipelineRun(first).Tasks {
		require.False(t, tk.CodeChanged)
		require.Nil(t, tk.PreviousCodeVersion)
	}
	e.register("dia", "2", w.URL(), task("a", next("b", "c")), task("b", next("d"), func(td *protocol.TaskDefinition) { td.CodeHash = "b-v2" }),
		task("c", next("d")), task("d"))
	second := e.trigger("dia", nil)
	r := e.waitRun(second, "completed")
	for _, tk := range r.Tasks {
		require.Equal(t, tk.TaskID == "b", tk.CodeChanged, tk.TaskID)
		require.NotNil(t, tk.PreviousCodeVersion)
		require.Equal(t, 1, *tk.PreviousCodeVersion)
	}
	require.Equal(t, 2, r.node("b").CodeVersion)

	w.on("a", failWith("x", false))
	third := e.trigger("dia", nil)
	e.waitRun(third, "failed")

	type page struct {
		Items []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	var p page
	e.do("GET", "/api/runs?pipelineId=dia&limit=2", nil, "").json(t, &p)
	require.Equal(t, []string{third, second}, []string{p.Items[0].ID, p.Items[1].ID})
	require.NotEmpty(t, p.NextCursor)
	e.do("GET", "/api/runs?pipelineId=dia&limit=2&cursor="+p.NextCursor, nil, "").json(t, &p)
	require.Len(t, p.Items, 1)
	require.Equal(t, first, p.Items[0].ID)
	e.do("GET", "/api/runs?status=failed", nil, "").json(t, &p)
	require.Len(t, p.Items, 1)
	require.Equal(t, third, p.Items[0].ID)
	require.Equal(t, http.StatusBadRequest, e.do("GET", "/api/runs?status=bogus", nil, "").Status)
}

// Pipelines run end to end in standalone mode too, woken by the loop.
func TestPipelineInStandaloneMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	w := newPWorker(t, e)
	diamond(e, w.URL())
	e.runLoop()
	var ids []string
	for i := range 10 {
		ids = append(ids, e.trigger("dia", map[string]any{"input": i}))
	}
	for _, id := range ids {
		e.waitRun(id, "completed")
	}
}
