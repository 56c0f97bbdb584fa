package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// subNode is a nodes declaration making task a node that runs pipeline.
func subNode(task, pipeline string) map[string]any {
	return map[string]any{task: map[string]any{"pipeline": pipeline}}
}

// putPipeline declares pipeline id with entry tasks and nodes, and fails the test unless it is
// stored.
func (e *env) putPipeline(id string, entry []string, nodes map[string]any) {
	e.t.Helper()
	body := map[string]any{"entryTasks": entry}
	if nodes != nil {
		body["nodes"] = nodes
	}
	r := e.do("PUT", "/api/pipelines/"+id, body, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
}

// subRun is what GET /api/runs/{id} says of a run's sub-pipeline relatives.
type subRun struct {
	Status          string   `json:"status"`
	ParentRunID     string   `json:"parentRunId"`
	ParentNodeRunID string   `json:"parentNodeRunId"`
	ParentTaskID    string   `json:"parentTaskId"`
	ChildRunIDs     []string `json:"childRunIds"`
	Children        []struct {
		RunID      string `json:"runId"`
		PipelineID string `json:"pipelineId"`
		Status     string `json:"status"`
		TaskID     string `json:"taskId"`
		NodeRunID  string `json:"nodeRunId"`
	} `json:"children"`
}

func (e *env) subRun(id string) subRun {
	e.t.Helper()
	var out subRun
	r := e.do("GET", "/api/runs/"+id, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	r.json(e.t, &out)
	return out
}

// refValue is the value an upstream ref carries: its inline output, or the object it names.
func (e *env) refValue(ref protocol.UpstreamRef) []byte {
	e.t.Helper()
	if ref.Output != nil {
		return ref.Output
	}
	return e.object(ref.OutputPath).Content
}

// a → s → c where s runs pipeline b (b1 → b2): b's input is a's upstream ref, c's upstream for
// s is b's terminal outputs, the node's task is never dispatched, and the runs link both ways.
func TestSubPipelineRunsChild(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := newPWorker(t, e)
		e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("b1", next("b2")), task("b2"))
		e.putPipeline("b", []string{"b1"}, nil)
		e.putPipeline("top", []string{"a"}, subNode("s", "b"))
		// The dry run names the sub-pipeline node and the pipeline it runs.
		var plan protocol.DryRun
		r := e.do("POST", "/api/pipelines/top/dry-run", nil, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		r.json(t, &plan)
		require.Len(t, plan.ExecutionPlan, 3)
		require.Len(t, plan.ExecutionPlan[1].Nodes, 1)
		s := plan.ExecutionPlan[1].Nodes["s"]
		require.Equal(t, "pipeline", s.Type)
		require.Equal(t, "b", s.Pipeline)
		require.NotNil(t, s.Plan, "the child's plan, inline (TestSubPipelineDryRun)")
		require.Nil(t, plan.ExecutionPlan[0].Nodes)
		w.on("a", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"x":1}`) })
		w.on("b2", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"y":2}`) })

		id := e.trigger("top", map[string]any{"input": map[string]any{"doc": "d"}})
		run := e.waitRun(id, "completed")
		require.Equal(t, "completed", run.node("s").Status)
		require.Empty(t, w.dispatchesOf("s"), "a sub-pipeline node never goes to a worker")

		top := e.subRun(id)
		require.Len(t, top.ChildRunIDs, 1)
		childID := top.ChildRunIDs[0]
		require.Equal(t, "b", top.Children[0].PipelineID)
		require.Equal(t, "s", top.Children[0].TaskID)
		require.Equal(t, run.node("s").ID, top.Children[0].NodeRunID)
		require.Equal(t, "completed", top.Children[0].Status)
		child := e.subRun(childID)
		require.Equal(t, id, child.ParentRunID)
		require.Equal(t, "s", child.ParentTaskID)
		require.Equal(t, run.node("s").ID, child.ParentNodeRunID)
		require.Empty(t, child.ChildRunIDs)
		require.Equal(t, "completed", child.Status)

		// b1's input: the node's upstream, keyed by predecessor, each an upstream ref.
		b1 := w.dispatchesOf("b1")
		require.Len(t, b1, 1)
		require.Equal(t, childID, b1[0].PipelineRunID)
		var in map[string]protocol.UpstreamRef
		require.NoError(t, json.Unmarshal(e.itemInput(b1[0]), &in))
		require.Len(t, in, 1)
		require.Equal(t, "runs/"+run.node("a").ID+"/output.json", in["a"].OutputPath)
		require.JSONEq(t, `{"x":1}`, string(e.refValue(in["a"])))

		// c's upstream for s: {"b2": <b2's output>} (b2 is b's only terminal task).
		c := w.dispatchesOf("c")
		require.Len(t, c, 1)
		require.Equal(t, []string{"s"}, upstreamKeys(c[0]))
		var out map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(e.refValue(c[0].UpstreamRefs["s"]), &out))
		require.Len(t, out, 1)
		if e.cfg.InlinePayloadMaxBytes > 0 {
			require.JSONEq(t, `{"y":2}`, string(out["b2"]))
		} else {
			var ref struct {
				OutputPath string `json:"outputPath"`
			}
			require.NoError(t, json.Unmarshal(out["b2"], &ref))
			require.JSONEq(t, `{"y":2}`, string(e.object(ref.OutputPath).Content))
		}
	})
}

// nested registers outer (a → s → c, s runs mid), mid (m1 → ms → m2, ms runs inner) and inner
// (i1) on w.
func nested(e *env, w *pworker) {
	e.register("nest", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"),
		task("m1", next("ms")), task("ms", next("m2")), task("m2"), task("i1"))
	e.putPipeline("inner", []string{"i1"}, nil)
	e.putPipeline("mid", []string{"m1"}, subNode("ms", "inner"))
	e.putPipeline("outer", []string{"a"}, subNode("s", "mid"))
}

// A sub-pipeline that runs a sub-pipeline: outer → mid → inner completes, each linked to its
// parent, and inner's output comes up through mid to c.
func TestSubPipelineNested(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	nested(e, w)
	w.on("i1", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"deep":true}`) })
	id := e.trigger("outer", map[string]any{"input": 1})
	e.waitRun(id, "completed")
	outer := e.subRun(id)
	require.Len(t, outer.ChildRunIDs, 1)
	mid := e.subRun(outer.ChildRunIDs[0])
	require.Equal(t, id, mid.ParentRunID)
	require.Len(t, mid.ChildRunIDs, 1)
	inner := e.subRun(mid.ChildRunIDs[0])
	require.Equal(t, outer.ChildRunIDs[0], inner.ParentRunID)
	require.Equal(t, "ms", inner.ParentTaskID)
	require.Equal(t, "completed", inner.Status)
	c := w.dispatchesOf("c")
	require.Len(t, c, 1)
	var out map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(e.refValue(c[0].UpstreamRefs["s"]), &out))
	require.Contains(t, out, "m2", "mid's terminal task")
	m2 := w.dispatchesOf("m2")
	require.Len(t, m2, 1)
	var deep map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(e.refValue(m2[0].UpstreamRefs["ms"]), &deep))
	require.JSONEq(t, `{"deep":true}`, string(deep["i1"]))
	var depth int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT cardinality(ancestors) FROM pipeline_runs WHERE id = $1`,
		mid.ChildRunIDs[0]).Scan(&depth))
	require.Equal(t, 2, depth)
}

// releaseAndWait releases held task and waits until n of its callbacks were answered.
func (p *pworker) releaseAndWait(release func(), task string, n int) {
	release()
	p.waitUntil(task+"'s callbacks", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.statuses[task]) >= n
	})
}

// openRows counts the open task runs of pipeline runs ids.
func (e *env) openRows(ids ...string) int {
	return e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = ANY($1) AND status IN ('waiting', 'pending', 'dispatching', 'running')`, ids)
}

// Cancelling the top run cancels its child and grandchild: every open row of the three is
// cancelled, and nothing is dispatched after (the running i1's late callback changes nothing).
func TestSubPipelineCancelCascades(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	nested(e, w)
	release := w.holdTask("i1")
	defer release()
	id := e.trigger("outer", map[string]any{"input": 1})
	w.waitUntil("i1 to run", func() bool { return len(w.dispatchesOf("i1")) == 1 })
	i1 := w.dispatchesOf("i1")[0]
	e.waitStatus(i1.RunID, protocol.StatusRunning)
	midID := e.subRun(id).ChildRunIDs[0]
	innerID := e.subRun(midID).ChildRunIDs[0]
	require.Equal(t, innerID, i1.PipelineRunID)

	r := e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	for _, run := range []string{id, midID, innerID} {
		require.Equal(t, "cancelled", e.subRun(run).Status, run)
	}
	require.Zero(t, e.openRows(id, midID, innerID), "every open row is cancelled")
	require.Equal(t, protocol.StatusCancelled, e.run(i1.RunID).Status)
	status, hb := w.heartbeat(i1, nil, "")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.ShouldCancel, "the running worker of the grandchild is told")

	before := w.count()
	w.releaseAndWait(release, "i1", 1)
	e.process()
	require.Equal(t, before, w.count(), "nothing is dispatched after the cancel")
	require.Empty(t, w.dispatchesOf("m2"))
	require.Empty(t, w.dispatchesOf("c"))
	require.Equal(t, "cancelled", e.subRun(id).Status)
}

// A child that fails fails its node with SUB_PIPELINE_FAILED naming the child run; in fail-fast
// the parent fails and c never runs. Cancelling a child alone fails its node the same way.
func TestSubPipelineChildFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("b1", next("b2")), task("b2"), task("h"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("top", []string{"a"}, subNode("s", "b"))
	w.on("b1", failWith("b1 broke", false))

	id := e.trigger("top", map[string]any{"input": 1})
	run := e.waitRun(id, "failed")
	childID := e.subRun(id).ChildRunIDs[0]
	require.Equal(t, "failed", e.subRun(childID).Status)
	s := run.node("s")
	require.Equal(t, "failed", s.Status)
	require.Equal(t, "SUB_PIPELINE_FAILED", *s.ErrorCode)
	require.Contains(t, *s.Error, childID)
	require.Contains(t, *s.Error, "ended failed")
	require.Equal(t, "cancelled", run.node("c").Status)
	require.Empty(t, w.dispatchesOf("c"))
	require.Empty(t, w.dispatchesOf("b2"))
	// A DLQ retry of the child's failed task is refused: its node already ended.
	var dlqID string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT id FROM dlq WHERE task_run_id = $1`,
		e.pipelineRun(childID).node("b1").ID).Scan(&dlqID))
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	require.Equal(t, "SUB_PIPELINE_RETRY_UNSUPPORTED", resp.errorBody(t).Code)
	require.Equal(t, "failed", e.subRun(childID).Status)

	// Cancelling the child alone.
	w.on("b1", nil)
	release := w.holdTask("b1")
	defer release()
	id = e.trigger("top", map[string]any{"input": 1})
	w.waitUntil("the second b1", func() bool { return len(w.dispatchesOf("b1")) == 2 })
	childID = e.subRun(id).ChildRunIDs[0]
	r := e.do("POST", "/api/runs/"+childID+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	run = e.waitRun(id, "failed")
	require.Equal(t, "SUB_PIPELINE_FAILED", *run.node("s").ErrorCode)
	require.Contains(t, *run.node("s").Error, "ended cancelled")
	require.Equal(t, "cancelled", e.subRun(childID).Status)
	require.Zero(t, e.openRows(id, childID))
	w.releaseAndWait(release, "b1", 2)
}

// The parent's deadline cancels its children; the child's own deadline fails the parent's node.
func TestSubPipelineDeadlines(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("b1"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("top", []string{"a"}, subNode("s", "b"))
	release := w.holdTask("b1")
	defer release()

	id := e.trigger("top", map[string]any{"input": 1, "timeoutMs": 3_600_000})
	w.waitUntil("b1", func() bool { return len(w.dispatchesOf("b1")) == 1 })
	childID := e.subRun(id).ChildRunIDs[0]
	e.runOutOfTime(id)
	_, err := e.orch.Sweep(t.Context())
	require.NoError(t, err)
	top := e.pipelineRun(id)
	require.Equal(t, "failed", top.Status)
	require.Equal(t, "PIPELINE_TIMEOUT", top.ErrorCode)
	require.Equal(t, "cancelled", e.subRun(childID).Status)
	require.Zero(t, e.openRows(id, childID))

	// The child's deadline.
	id = e.trigger("top", map[string]any{"input": 1})
	w.waitUntil("the second b1", func() bool { return len(w.dispatchesOf("b1")) == 2 })
	childID = e.subRun(id).ChildRunIDs[0]
	e.runOutOfTime(childID)
	_, err = e.orch.Sweep(t.Context())
	require.NoError(t, err)
	top = e.pipelineRun(id)
	require.Equal(t, "failed", top.Status)
	require.Equal(t, "SUB_PIPELINE_FAILED", *top.node("s").ErrorCode)
	require.Equal(t, "PIPELINE_TIMEOUT", e.pipelineRun(childID).ErrorCode)
	w.releaseAndWait(release, "b1", 2)
}

// Bad declarations are 400s naming the problem, at PUT and at registration, and store nothing:
// an unknown pipeline, a node with both map and pipeline, an entry task, cycles (self, two
// pipelines, a later PUT that closes a cycle) and nesting deeper than 10 pipelines.
func TestSubPipelineDeclaration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := "http://127.0.0.1:9"
	e.register("sub", "1", url, task("x", next("s")), task("s", next("y")), task("y"))
	e.putPipeline("leaf", []string{"x"}, nil)
	e.putPipeline("uses-leaf", []string{"x"}, subNode("s", "leaf"))
	var got protocol.Pipeline
	e.do("GET", "/api/pipelines/uses-leaf", nil, "").json(t, &got)
	require.True(t, got.Valid, got.Errors)
	require.Equal(t, "leaf", got.Nodes["s"].Pipeline)
	require.Equal(t, "leaf", got.Tasks["s"].Pipeline)

	for name, c := range map[string]struct {
		id    string
		nodes any
		entry []string
		code  string
		msg   string
	}{
		"unknown pipeline":  {"bad", subNode("s", "ghost"), nil, "SUB_PIPELINE_UNKNOWN", `sub-pipeline "ghost" does not exist`},
		"self":              {"bad", subNode("s", "bad"), nil, "SUB_PIPELINE_CYCLE", "bad → bad"},
		"both":              {"bad", map[string]any{"s": map[string]any{"pipeline": "leaf", "map": map[string]any{"over": "x", "items": ""}}}, nil, "INVALID_NODES", "exactly one"},
		"entry task":        {"bad", subNode("x", "leaf"), nil, "SUB_PIPELINE_ON_ENTRY_TASK", "entry task"},
		"bad id":            {"bad", subNode("s", "a/b"), nil, "INVALID_NODES", "not a valid pipeline id"},
		"unreachable node":  {"bad", subNode("x", "leaf"), []string{"y"}, "SUB_PIPELINE_NODE_UNKNOWN", "not a task of the pipeline"},
		"two-cycle via PUT": {"leaf", subNode("s", "uses-leaf"), nil, "SUB_PIPELINE_CYCLE", "leaf → uses-leaf → leaf"},
	} {
		entry := c.entry
		if entry == nil {
			entry = []string{"x"}
		}
		if name == "unreachable node" {
			// x is no entry task here, and not reachable from y.
			c.nodes = subNode("x", "leaf")
		}
		r := e.do("PUT", "/api/pipelines/"+c.id, map[string]any{"entryTasks": entry, "nodes": c.nodes}, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		body := r.errorBody(t)
		require.Equal(t, c.code, body.Code, name)
		require.Contains(t, body.Error, c.msg, name)
		var def protocol.PipelineDefinition
		decodeInto(t, map[string]any{"id": c.id, "entryTasks": entry, "nodes": c.nodes}, &def)
		r = e.postReg("sub2", protocol.RegisterRequest{ServiceID: "sub2", Version: "1", BaseURL: url,
			Tasks: []protocol.TaskDefinition{task("other")}, Pipelines: []protocol.PipelineDefinition{def}})
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, name)
	}
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/bad", nil, "").Status)
	require.Zero(t, e.count("SELECT count(*) FROM services WHERE id = 'sub2'"), "a refused registration stores nothing")
	var leaf protocol.Pipeline
	e.do("GET", "/api/pipelines/leaf", nil, "").json(t, &leaf)
	require.Empty(t, leaf.Nodes, "the refused PUT left leaf as it was")

	// Two pipelines of one registration that reference each other.
	r := e.postReg("sub3", protocol.RegisterRequest{ServiceID: "sub3", Version: "1", BaseURL: url,
		Tasks: []protocol.TaskDefinition{task("x3", next("s3")), task("s3")},
		Pipelines: []protocol.PipelineDefinition{
			{ID: "r1", EntryTasks: []string{"x3"}, Nodes: map[string]protocol.NodeConfig{"s3": {Pipeline: "r2"}}},
			{ID: "r2", EntryTasks: []string{"x3"}, Nodes: map[string]protocol.NodeConfig{"s3": {Pipeline: "r1"}}}}})
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "SUB_PIPELINE_CYCLE", r.errorBody(t).Code)
	require.Contains(t, r.errorBody(t).Error, "r1 → r2 → r1")

	// A chain of 10 pipelines is accepted, an 11th on top of it is not.
	e.putPipeline("d10", []string{"x"}, nil)
	for i := 9; i >= 1; i-- {
		e.putPipeline(fmt.Sprintf("d%d", i), []string{"x"}, subNode("s", fmt.Sprintf("d%d", i+1)))
	}
	r = e.do("PUT", "/api/pipelines/d0", map[string]any{"entryTasks": []string{"x"}, "nodes": subNode("s", "d1")}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "SUB_PIPELINE_TOO_DEEP", r.errorBody(t).Code)
	require.Contains(t, r.errorBody(t).Error, "d0 → d1 → d2")
	// Nor may the bottom grow.
	r = e.do("PUT", "/api/pipelines/d10", map[string]any{"entryTasks": []string{"x"}, "nodes": subNode("s", "leaf")}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "SUB_PIPELINE_TOO_DEEP", r.errorBody(t).Code)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/d0", nil, "").Status)
}

// Many parents at once, each a → {s, p} → c with s running b (b1 → b2): the children's
// callbacks race the parents' (p) and each other's, and every parent completes exactly once,
// each with one child, c dispatched once per parent.
func TestSubPipelineConcurrentParents(t *testing.T) {
	t.Parallel()
	rounds := 3
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			e.register("sub", "1", w.URL(), task("a", next("s", "p")), task("s", next("c")), task("p", next("c")), task("c"),
				task("b1", next("b2")), task("b2"))
			e.putPipeline("b", []string{"b1"}, nil)
			e.putPipeline("top", []string{"a"}, subNode("s", "b"))
			const n = 20
			ids := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					r := e.do("POST", "/api/pipelines/top/trigger", map[string]any{"input": i}, "")
					if r.Status != http.StatusCreated {
						t.Errorf("trigger: %d %s", r.Status, r.Body)
						return
					}
					var out struct {
						PipelineRunID string `json:"pipelineRunId"`
					}
					if err := json.Unmarshal(r.Body, &out); err != nil {
						t.Error(err)
					}
					ids[i] = out.PipelineRunID
				})
			}
			wg.Wait()
			for _, id := range ids {
				run := e.waitRun(id, "completed")
				require.Equal(t, "completed", run.node("s").Status)
				require.Len(t, e.subRun(id).ChildRunIDs, 1)
			}
			perParent := map[string]int{}
			for _, d := range w.dispatchesOf("c") {
				perParent[d.PipelineRunID]++
			}
			require.Len(t, perParent, n)
			for id, k := range perParent {
				require.Equal(t, 1, k, id)
			}
			require.Equal(t, n, e.count(`SELECT count(*) FROM pipeline_runs WHERE pipeline_id = 'b' AND status = 'completed'`))
			require.Equal(t, n, e.count(`SELECT count(*) FROM pipeline_runs WHERE pipeline_id = 'top' AND status = 'completed'`))
			require.Empty(t, w.dispatchesOf("s"))
			w.mu.Lock()
			statuses := fmt.Sprint(w.statuses)
			w.mu.Unlock()
			require.False(t, strings.Contains(statuses, "409"), "no callback refused: %v", statuses)
		})
	}
}

// Parents cancelled while their children's callbacks arrive (goroutines): the cancel (parent,
// then children) and the children's callbacks (which lock the parent first) never deadlock,
// every answer is a 200 or a 409, and every run ends with nothing left open.
func TestSubPipelineCancelRacesChildCallbacks(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("b1", next("b2")), task("b2"))
			e.putPipeline("b", []string{"b1"}, nil)
			e.putPipeline("top", []string{"a"}, subNode("s", "b"))
			const n = 12
			ids := make([]string, n)
			for i := range ids {
				ids[i] = e.trigger("top", map[string]any{"input": i})
			}
			var wg sync.WaitGroup
			for _, id := range ids {
				wg.Go(func() {
					// Cancel once the child exists (or the run ended first).
					for {
						r := e.subRun(id)
						if len(r.ChildRunIDs) > 0 || r.Status != "running" {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
					r := e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
					if r.Status != http.StatusOK && r.Status != http.StatusConflict {
						t.Errorf("cancel %s: %d %s", id, r.Status, r.Body)
					}
				})
			}
			wg.Wait()
			all := slices.Clone(ids)
			for _, id := range ids {
				run := e.subRun(id)
				require.Contains(t, []string{"cancelled", "completed"}, run.Status, id)
				all = append(all, run.ChildRunIDs...)
				for _, c := range run.ChildRunIDs {
					e.waitFor("child "+c+" to end", func() bool { return e.subRun(c).Status != "running" })
				}
			}
			e.waitFor("no open rows", func() bool { return e.openRows(all...) == 0 })
			w.mu.Lock()
			statuses := fmt.Sprint(w.statuses)
			w.mu.Unlock()
			require.NotContains(t, statuses, "500", "no callback failed: %v", statuses)
		})
	}
}

// A fail-fast failure in the parent cancels the waiting sub-pipeline node and its child; a DLQ
// retry of the failure, which would re-open the node, is refused and changes nothing.
func TestSubPipelineReopenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s", "side")), task("s", next("c")), task("side"), task("c"), task("b1"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("top", []string{"a"}, subNode("s", "b"))
	release := w.holdTask("b1")
	defer release()
	w.on("side", failWith("side failed", false))
	id := e.trigger("top", map[string]any{"input": 1})
	w.waitUntil("b1", func() bool { return len(w.dispatchesOf("b1")) == 1 })
	run := e.waitRun(id, "failed")
	require.Equal(t, "cancelled", run.node("s").Status)
	childID := e.subRun(id).ChildRunIDs[0]
	require.Equal(t, "cancelled", e.subRun(childID).Status)
	require.Zero(t, e.openRows(id, childID))
	var dlqID string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT id FROM dlq WHERE task_run_id = $1`, run.node("side").ID).Scan(&dlqID))
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	require.Equal(t, "SUB_PIPELINE_REOPEN_UNSUPPORTED", resp.errorBody(t).Code)
	require.Equal(t, "failed", e.pipelineRun(id).Status)
	require.Equal(t, "cancelled", e.pipelineRun(id).node("s").Status)
	w.releaseAndWait(release, "b1", 1)
}

// A sub-pipeline node whose child cannot start when the node becomes ready (the child pipeline
// lost a task to a later registration) fails with SUB_PIPELINE_INVALID, and the run follows
// its failure mode instead of waiting on a node that nothing will end.
func TestSubPipelineChildCannotStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"))
	e.register("other", "1", w.URL(), task("b1"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("top", []string{"a"}, subNode("s", "b"))
	e.register("other", "2", w.URL(), task("b9"))
	id := e.trigger("top", map[string]any{"input": 1})
	run := e.waitRun(id, "failed")
	s := run.node("s")
	require.Equal(t, "failed", s.Status)
	require.Contains(t, *s.Error, `pipeline "b" cannot run`)
	require.Equal(t, "cancelled", run.node("c").Status)
	require.Empty(t, e.subRun(id).ChildRunIDs, "no child run was made")
}
