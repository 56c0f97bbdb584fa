package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// storedRefs is the sub-pipeline references stored for pipelines ids, by pipeline (a pipeline
// without nodes is absent).
func (e *env) storedRefs(ids ...string) map[string][]string {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT id, nodes FROM pipelines WHERE id = ANY($1) AND nodes IS NOT NULL`, ids)
	require.NoError(e.t, err)
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var id string
		var raw []byte
		require.NoError(e.t, rows.Scan(&id, &raw))
		var nodes map[string]protocol.NodeConfig
		require.NoError(e.t, json.Unmarshal(raw, &nodes))
		for _, n := range nodes {
			if n.Pipeline != "" {
				out[id] = append(out[id], n.Pipeline)
			}
		}
	}
	require.NoError(e.t, rows.Err())
	return out
}

// Two declarations raced, each valid alone, that together would close a sub-pipeline cycle
// (p1's node s1 runs p2 while p2's node s2 runs p1): by registration and registration, PUT and
// PUT, registration and PUT, released together from two goroutines, 20 rounds each. In every
// round exactly one is stored and the other is a 400 SUB_PIPELINE_CYCLE naming the cycle; the
// stored definitions never make a cycle. (The declarations serialise on an advisory lock:
// without it, the test fails in most runs.)
func TestSubPipelineRacingDeclarationsCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := "http://127.0.0.1:9"
	e.register("race1", "1", url, task("x1", next("s1")), task("s1"))
	e.register("race2", "1", url, task("x2", next("s2")), task("s2"))
	ids := []string{"p1", "p2"}
	// decl is the declaration of p<i> (entry x<i>), its node s<i> running ref ("" = no nodes).
	decl := func(i int, ref string) protocol.PipelineDefinition {
		d := protocol.PipelineDefinition{ID: ids[i-1], EntryTasks: []string{fmt.Sprintf("x%d", i)}}
		if ref != "" {
			d.Nodes = map[string]protocol.NodeConfig{fmt.Sprintf("s%d", i): {Pipeline: ref}}
		}
		return d
	}
	// request prepares the declaration of p<i> by registration of race<i> or by PUT: method,
	// path, body and token, made before the goroutines start (they may not call require).
	type request struct{ method, path, bearer string }
	request1 := func(byRegistration bool, i int, ref string) (request, []byte) {
		d := decl(i, ref)
		if !byRegistration {
			body, err := json.Marshal(map[string]any{"entryTasks": d.EntryTasks, "nodes": d.Nodes})
			require.NoError(t, err)
			return request{"PUT", "/api/pipelines/" + d.ID, ""}, body
		}
		svc := fmt.Sprintf("race%d", i)
		body, err := json.Marshal(protocol.RegisterRequest{ServiceID: svc, Version: "1", BaseURL: url,
			Tasks:     []protocol.TaskDefinition{task(fmt.Sprintf("x%d", i), next(fmt.Sprintf("s%d", i))), task(fmt.Sprintf("s%d", i))},
			Pipelines: []protocol.PipelineDefinition{d}})
		require.NoError(t, err)
		return request{"POST", "/api/register", e.regToken(svc, body)}, body
	}
	for _, kind := range []struct {
		name       string
		reg1, reg2 bool
	}{{"registrations", true, true}, {"puts", false, false}, {"registration and put", true, false}} {
		for round := range rounds(20) {
			// Both pipelines without nodes, as p1 and p2 would be declared first.
			for i, byReg := range []bool{kind.reg1, kind.reg2} {
				req, body := request1(byReg, i+1, "")
				r := e.do(req.method, req.path, body, req.bearer)
				require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			}
			require.Empty(t, e.storedRefs(ids...))
			req1, body1 := request1(kind.reg1, 1, "p2")
			req2, body2 := request1(kind.reg2, 2, "p1")
			start := make(chan struct{})
			answers := make([]response, 2)
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i, x := range []struct {
				req  request
				body []byte
			}{{req1, body1}, {req2, body2}} {
				wg.Go(func() {
					<-start
					answers[i], errs[i] = e.send(x.req.method, x.req.path, x.body, x.req.bearer)
				})
			}
			close(start)
			wg.Wait()
			require.NoError(t, errs[0])
			require.NoError(t, errs[1])
			what := fmt.Sprintf("%s, round %d: %d %s / %d %s", kind.name, round, answers[0].Status, answers[0].Body,
				answers[1].Status, answers[1].Body)
			stored := e.storedRefs(ids...)
			require.Len(t, stored, 1, "the stored definitions make no cycle: %v; %s", stored, what)
			won := 0
			if answers[1].Status == http.StatusOK {
				won = 1
			}
			lost := answers[1-won]
			require.Equal(t, http.StatusOK, answers[won].Status, what)
			require.Equal(t, http.StatusBadRequest, lost.Status, what)
			body := lost.errorBody(t)
			require.Equal(t, "SUB_PIPELINE_CYCLE", body.Code, what)
			cycle := []string{"p2", "p1", "p2"}
			if won == 1 {
				cycle = []string{"p1", "p2", "p1"}
			}
			require.Contains(t, body.Error, strings.Join(cycle, " → "), what)
			require.Equal(t, map[string][]string{ids[won]: {ids[1-won]}}, stored, what)
		}
	}
}

// Two PUTs raced, each valid alone, that together would nest 11 pipelines: on a chain c1 → …
// → c9, c0 gains a node running c1 while c9 gains one running leaf. In each of 20 rounds one is
// stored and the other is a 400 SUB_PIPELINE_TOO_DEEP; the stored chain is never deeper than 10.
func TestSubPipelineRacingDeclarationsTooDeep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("race", "1", "http://127.0.0.1:9", task("x", next("s")), task("s"))
	e.putPipeline("leaf", []string{"x"}, nil)
	e.putPipeline("c9", []string{"x"}, nil)
	for i := 8; i >= 1; i-- {
		e.putPipeline(fmt.Sprintf("c%d", i), []string{"x"}, subNode("s", fmt.Sprintf("c%d", i+1)))
	}
	body := func(ref string) []byte {
		b, err := json.Marshal(map[string]any{"entryTasks": []string{"x"}, "nodes": subNode("s", ref)})
		require.NoError(t, err)
		return b
	}
	for round := range rounds(20) {
		e.putPipeline("c0", []string{"x"}, nil)
		e.putPipeline("c9", []string{"x"}, nil)
		start := make(chan struct{})
		answers := make([]response, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, x := range []struct{ id, ref string }{{"c0", "c1"}, {"c9", "leaf"}} {
			raw := body(x.ref)
			wg.Go(func() {
				<-start
				answers[i], errs[i] = e.send("PUT", "/api/pipelines/"+x.id, raw, "")
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		what := fmt.Sprintf("round %d: %d %s / %d %s", round, answers[0].Status, answers[0].Body, answers[1].Status, answers[1].Body)
		stored := e.storedRefs("c0", "c9")
		require.Len(t, stored, 1, "the stored chain is at most 10 deep: %v; %s", stored, what)
		won := 0
		if answers[1].Status == http.StatusOK {
			won = 1
		}
		require.Equal(t, http.StatusOK, answers[won].Status, what)
		lost := answers[1-won]
		require.Equal(t, http.StatusBadRequest, lost.Status, what)
		b := lost.errorBody(t)
		require.Equal(t, "SUB_PIPELINE_TOO_DEEP", b.Code, what)
		require.Contains(t, b.Error, "c0 → c1 → c2 → c3 → c4 → c5 → c6 → c7 → c8 → c9 → leaf", what)
	}
}

// childRuns counts the pipeline runs whose parent is run id, and the runs of pipeline ref.
func (e *env) childRuns(id, ref string) (children, ofRef int) {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM pipeline_runs WHERE parent_run_id = $1`, id),
		e.count(`SELECT count(*) FROM pipeline_runs WHERE pipeline_id = $1`, ref)
}

// A sub-pipeline node whose pipeline is gone when the node becomes ready fails with
// SUB_PIPELINE_UNKNOWN, and the run follows its failure mode: no child run is made and nothing
// is left open. No route removes a pipeline today (a registration never removes one, and there
// is no DELETE), so the test deletes the row behind the API's back, as a future delete route
// that forgot to refuse would. The dry run of the same definitions answers 200 with the node's
// SUB_PIPELINE_UNKNOWN and a warning naming it, at every level above it; a run in flight when the
// pipeline goes fails the same way; a grandchild's unknown pipeline fails the child run, and the
// child's node with SUB_PIPELINE_FAILED.
func TestSubPipelineUnknownAtRunTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("b1"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("top", []string{"a"}, subNode("s", "b"))
	require.Empty(t, e.dryRun("top").Warnings)
	_, err := e.pool.Exec(context.Background(), `DELETE FROM pipelines WHERE id = 'b'`)
	require.NoError(t, err)

	plan := e.dryRun("top")
	require.True(t, plan.Valid, "top itself can be triggered")
	s := plan.ExecutionPlan[1].Nodes["s"]
	require.Equal(t, "pipeline", s.Type)
	require.Equal(t, "b", s.Pipeline)
	require.Equal(t, "SUB_PIPELINE_UNKNOWN", s.ErrorCode)
	require.Nil(t, s.Plan)
	require.Equal(t, `pipeline "b" does not exist`, s.PlanOmitted)
	require.Equal(t, []string{`sub-pipeline node "s": pipeline "b" does not exist; a run would fail the node with SUB_PIPELINE_UNKNOWN`}, plan.Warnings)

	checkFailed := func(id string) {
		t.Helper()
		run := e.waitRun(id, "failed")
		s := run.node("s")
		require.Equal(t, "failed", s.Status)
		require.Equal(t, "SUB_PIPELINE_UNKNOWN", *s.ErrorCode)
		require.Contains(t, *s.Error, `pipeline "b" does not exist`)
		require.Equal(t, "completed", run.node("a").Status)
		require.Equal(t, "cancelled", run.node("c").Status)
		require.Empty(t, e.subRun(id).ChildRunIDs)
		children, ofB := e.childRuns(id, "b")
		require.Zero(t, children, "no child run is made")
		require.Zero(t, ofB)
		require.Zero(t, e.openRows(id))
	}
	checkFailed(e.trigger("top", map[string]any{"input": 1}))

	// Gone while the run is under way: b exists at the trigger, not when s becomes ready.
	e.putPipeline("b", []string{"b1"}, nil)
	release := w.holdTask("a")
	defer release()
	id := e.trigger("top", map[string]any{"input": 2})
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 2 })
	_, err = e.pool.Exec(context.Background(), `DELETE FROM pipelines WHERE id = 'b'`)
	require.NoError(t, err)
	w.releaseAndWait(release, "a", 2)
	checkFailed(id)
	require.Empty(t, w.dispatchesOf("b1"))
	require.Empty(t, w.dispatchesOf("c"))

	// One level down: outer → mid → inner, inner gone (a database of its own: nested declares
	// tasks a, s and c of another service).
	e = newEnv(t)
	nested(e, newPWorker(t, e))
	_, err = e.pool.Exec(context.Background(), `DELETE FROM pipelines WHERE id = 'inner'`)
	require.NoError(t, err)
	plan = e.dryRun("outer")
	require.True(t, plan.Valid)
	s = plan.ExecutionPlan[1].Nodes["s"]
	require.Empty(t, s.ErrorCode, "mid can start; its node ms would fail")
	require.Equal(t, "SUB_PIPELINE_UNKNOWN", s.Plan.ExecutionPlan[1].Nodes["ms"].ErrorCode)
	require.Equal(t, []string{`sub-pipeline node "s" (pipeline mid): sub-pipeline node "ms": pipeline "inner" does not exist; a run would fail the node with SUB_PIPELINE_UNKNOWN`},
		plan.Warnings)
	id = e.trigger("outer", map[string]any{"input": 3})
	run := e.waitRun(id, "failed")
	require.Equal(t, "SUB_PIPELINE_FAILED", *run.node("s").ErrorCode)
	require.Equal(t, "cancelled", run.node("c").Status)
	top := e.subRun(id)
	require.Len(t, top.ChildRunIDs, 1)
	midID := top.ChildRunIDs[0]
	mid := e.pipelineRun(midID)
	require.Equal(t, "failed", mid.Status)
	require.Equal(t, "SUB_PIPELINE_UNKNOWN", *mid.node("ms").ErrorCode)
	require.Equal(t, "cancelled", mid.node("m2").Status)
	children, ofInner := e.childRuns(midID, "inner")
	require.Zero(t, children)
	require.Zero(t, ofInner)
	require.Zero(t, e.openRows(id, midID))
}

// chain declares d1 … d10: d1 … d8 x → s, d9 y → s, each s running the next; d10 z → zs,
// without nodes.
func (e *env) chain() {
	e.t.Helper()
	e.putPipeline("d10", []string{"z"}, nil)
	e.putPipeline("d9", []string{"y"}, subNode("s", "d10"))
	for i := 8; i >= 1; i-- {
		e.putPipeline(fmt.Sprintf("d%d", i), []string{"x"}, subNode("s", fmt.Sprintf("d%d", i+1)))
	}
}

// chainRuns follows the child runs down from run id: id, its child, its grandchild...
func (e *env) chainRuns(id string) []string {
	e.t.Helper()
	out := []string{id}
	for {
		r := e.subRun(out[len(out)-1])
		if len(r.ChildRunIDs) == 0 {
			return out
		}
		require.Len(e.t, r.ChildRunIDs, 1)
		out = append(out, r.ChildRunIDs[0])
	}
}

// Nesting past MaxSubPipelineDepth (10 pipelines) reached at run time. (1) A chain of 11
// written behind the declarations' back (they refuse it): the dry run shows the 10th
// pipeline's node with SUB_PIPELINE_TOO_DEEP and a warning through every level, and a run fails
// that node with SUB_PIPELINE_TOO_DEEP: 10 runs, all failed (the others' nodes
// SUB_PIPELINE_FAILED), no 11th, nothing open. (2) Declarations that each pass, changed while a
// run is under way: d1's run started when d1 → … → d10 was the chain; then d1 stops running d2
// and d10 gains a node running leaf (d2 → … → d10 → leaf, 10 deep, accepted) before the run
// reaches d10. The run's d10 child
// is the 10th pipeline of its line, so its node fails with SUB_PIPELINE_TOO_DEEP and no leaf run
// is made, while the dry run of the stored definitions has nothing to warn of.
func TestSubPipelineTooDeepAtRunTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("deep", "1", w.URL(), task("x", next("s")), task("y", next("s")), task("s"), task("z", next("zs")), task("zs"), task("l"))
	e.chain()
	e.putPipeline("d0", []string{"x"}, nil)
	_, err := e.pool.Exec(context.Background(), `UPDATE pipelines SET nodes = '{"s": {"pipeline": "d1"}}' WHERE id = 'd0'`)
	require.NoError(t, err)

	plan := e.dryRun("d0")
	require.True(t, plan.Valid)
	require.Len(t, plan.Warnings, 1)
	require.Contains(t, plan.Warnings[0], `sub-pipeline node "s" (pipeline d1): sub-pipeline node "s" (pipeline d2):`)
	require.True(t, strings.HasSuffix(plan.Warnings[0],
		`sub-pipeline node "s": a run of d10 would nest 11 pipelines deep; at most 10; a run would fail the node with SUB_PIPELINE_TOO_DEEP`), plan.Warnings[0])
	p := plan
	for i := 1; i <= 9; i++ {
		n := p.ExecutionPlan[1].Nodes["s"]
		require.Empty(t, n.ErrorCode, "d%d", i)
		require.NotNil(t, n.Plan, "d%d", i)
		p = *n.Plan
	}
	n := p.ExecutionPlan[1].Nodes["s"]
	require.Equal(t, "d10", n.Pipeline)
	require.Equal(t, "SUB_PIPELINE_TOO_DEEP", n.ErrorCode)
	require.Nil(t, n.Plan)
	require.Equal(t, "a run of d10 would nest 11 pipelines deep; at most 10", n.PlanOmitted)

	id := e.trigger("d0", map[string]any{"input": 1})
	e.waitRun(id, "failed")
	runs := e.chainRuns(id)
	require.Len(t, runs, 10, "d0 … d9, no run of d10")
	for i, r := range runs {
		run := e.pipelineRun(r)
		require.Equal(t, fmt.Sprintf("d%d", i), run.PipelineID)
		require.Equal(t, "failed", run.Status, r)
		code := "SUB_PIPELINE_FAILED"
		if i == 9 {
			code = "SUB_PIPELINE_TOO_DEEP"
			require.Contains(t, *run.node("s").Error, "a run of d10 would nest 11 pipelines deep; at most 10")
		}
		require.Equal(t, "failed", run.node("s").Status, r)
		require.Equal(t, code, *run.node("s").ErrorCode, r)
	}
	require.Zero(t, e.count(`SELECT count(*) FROM pipeline_runs WHERE pipeline_id = 'd10'`))
	require.Zero(t, e.openRows(runs...))

	// (2) The definitions change under a run: y is held in the run's d9 child, before d9's s
	// starts d10's (a child's snapshot is its pipeline's definition when it starts).
	e.putPipeline("leaf", []string{"l"}, nil)
	release := w.holdTask("y")
	defer release()
	id = e.trigger("d1", map[string]any{"input": 2})
	w.waitUntil("y to run", func() bool { return len(w.dispatchesOf("y")) == 2 })
	e.putPipeline("d1", []string{"x"}, nil)
	e.putPipeline("d10", []string{"z"}, subNode("zs", "leaf"))
	plan = e.dryRun("d2")
	require.Empty(t, plan.Warnings, "d2 → … → d10 → leaf is 10 deep")
	w.releaseAndWait(release, "y", 2)
	e.waitRun(id, "failed")
	runs = e.chainRuns(id)
	require.Len(t, runs, 10, "d1 … d10, no run of leaf")
	bottom := e.pipelineRun(runs[9])
	require.Equal(t, "d10", bottom.PipelineID)
	require.Equal(t, "failed", bottom.Status)
	require.Equal(t, "completed", bottom.node("z").Status)
	require.Equal(t, "failed", bottom.node("zs").Status)
	require.Equal(t, "SUB_PIPELINE_TOO_DEEP", *bottom.node("zs").ErrorCode)
	require.Contains(t, *bottom.node("zs").Error, "a run of leaf would nest 11 pipelines deep")
	for _, r := range runs[:9] {
		run := e.pipelineRun(r)
		require.Equal(t, "failed", run.Status, r)
		require.Equal(t, "SUB_PIPELINE_FAILED", *run.node("s").ErrorCode, r)
	}
	require.Zero(t, e.count(`SELECT count(*) FROM pipeline_runs WHERE pipeline_id = 'leaf'`))
	require.Zero(t, e.openRows(runs...))
	require.Empty(t, w.dispatchesOf("l"))
}
