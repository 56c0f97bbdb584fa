package core_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// dryRun is the dry run of pipeline id.
func (e *env) dryRun(id string) protocol.DryRun {
	e.t.Helper()
	var plan protocol.DryRun
	r := e.do("POST", "/api/pipelines/"+id+"/dry-run", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	r.json(e.t, &plan)
	return plan
}

// stepTasks lists the tasks of each step of plan.
func stepTasks(plan protocol.DryRun) [][]string {
	var out [][]string
	for _, s := range plan.ExecutionPlan {
		out = append(out, s.Tasks)
	}
	return out
}

// The dry run of a → s → c, where s runs mid (m1 → ms → m2) and ms runs inner (i1), shows both
// levels inline: each sub-pipeline node with its child's plan, steps and nodes as a dry run of
// that pipeline shows them.
func TestSubPipelineDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	nested(e, w)
	plan := e.dryRun("outer")
	require.True(t, plan.Valid)
	require.Empty(t, plan.Warnings)
	require.Equal(t, [][]string{{"a"}, {"s"}, {"c"}}, stepTasks(plan))
	s := plan.ExecutionPlan[1].Nodes["s"]
	require.Equal(t, "pipeline", s.Type)
	require.Equal(t, "mid", s.Pipeline)
	require.Empty(t, s.ErrorCode)
	require.Empty(t, s.PlanOmitted)
	require.NotNil(t, s.Plan)
	mid := *s.Plan
	require.True(t, mid.Valid)
	require.Equal(t, [][]string{{"m1"}, {"ms"}, {"m2"}}, stepTasks(mid))
	ms := mid.ExecutionPlan[1].Nodes["ms"]
	require.Equal(t, "inner", ms.Pipeline)
	require.NotNil(t, ms.Plan)
	require.Equal(t, [][]string{{"i1"}}, stepTasks(*ms.Plan))
	require.Nil(t, ms.Plan.ExecutionPlan[0].Nodes)

	// The child's inline plan is what the child's own dry run shows.
	require.Equal(t, e.dryRun("mid"), mid)
}

// A sub-pipeline whose pipeline can no longer run (it lost its entry task to a later
// registration) is shown as such: the dry run answers, the node carries the child's invalid
// plan with its errors and the error code a run would fail it with, and a warning says so, at
// every level above it too.
func TestSubPipelineDryRunChildInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("sub", "1", w.URL(), task("a", next("s")), task("s", next("c")), task("c"), task("m1", next("ms")), task("ms"))
	e.register("other", "1", w.URL(), task("b1"))
	e.putPipeline("b", []string{"b1"}, nil)
	e.putPipeline("mid", []string{"m1"}, subNode("ms", "b"))
	e.putPipeline("top", []string{"a"}, subNode("s", "mid"))
	require.Empty(t, e.dryRun("top").ExecutionPlan[1].Nodes["s"].Plan.ExecutionPlan[1].Nodes["ms"].Plan.Errors)
	e.register("other", "2", w.URL(), task("b9"))

	plan := e.dryRun("top")
	require.True(t, plan.Valid, "top itself can be triggered")
	s := plan.ExecutionPlan[1].Nodes["s"]
	require.Empty(t, s.ErrorCode, "mid can start; its node ms would fail")
	ms := s.Plan.ExecutionPlan[1].Nodes["ms"]
	require.Equal(t, "SUB_PIPELINE_INVALID", ms.ErrorCode)
	require.NotNil(t, ms.Plan)
	require.False(t, ms.Plan.Valid)
	require.NotEmpty(t, ms.Plan.Errors)
	require.Empty(t, ms.Plan.ExecutionPlan, "b's entry task is gone: no plan")
	require.Len(t, s.Plan.Warnings, 1)
	require.Contains(t, s.Plan.Warnings[0], `sub-pipeline node "ms": pipeline "b" cannot run`)
	require.Contains(t, s.Plan.Warnings[0], "SUB_PIPELINE_INVALID")
	require.Len(t, plan.Warnings, 1)
	require.Contains(t, plan.Warnings[0], `sub-pipeline node "s" (pipeline mid): sub-pipeline node "ms": pipeline "b" cannot run`)

	direct := e.dryRun("mid")
	require.True(t, direct.Valid)
	require.Equal(t, "SUB_PIPELINE_INVALID", direct.ExecutionPlan[1].Nodes["ms"].ErrorCode)
}

// A dry run shows at most protocol.MaxDryRunChildPlans child plans in all: three levels of five
// sub-pipeline nodes each would make 5 + 25 + 125 plans. Plans are filled in depth first, in
// plan order: p0's first three nodes show their whole trees (31 plans each), the fourth its
// plan and its first node's (with its five), and the rest (p1's four other nodes there, p0's
// last node) say where to see theirs.
func TestSubPipelineDryRunBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	// p0, p1, p2: an entry task and five sub-pipeline nodes, each running the next level; p3 a
	// single task.
	levels := []string{"p0", "p1", "p2", "p3"}
	tasks := []protocol.TaskDefinition{task("p3-leaf")}
	decl := map[string]map[string]any{}
	for i, p := range levels[:3] {
		var subs []string
		decl[p] = map[string]any{}
		for j := range 5 {
			id := fmt.Sprintf("%s-s%d", p, j)
			subs = append(subs, id)
			tasks = append(tasks, task(id))
			decl[p][id] = map[string]any{"pipeline": levels[i+1]}
		}
		tasks = append(tasks, task(p+"-entry", next(subs...)))
	}
	e.register("deep", "1", w.URL(), tasks...)
	e.putPipeline("p3", []string{"p3-leaf"}, nil)
	for _, p := range []string{"p2", "p1", "p0"} {
		e.putPipeline(p, []string{p + "-entry"}, decl[p])
	}

	plan := e.dryRun("p0")
	shown, omitted := 0, 0
	var walk func(p protocol.DryRun)
	walk = func(p protocol.DryRun) {
		for _, s := range p.ExecutionPlan {
			for _, n := range s.Nodes {
				if n.Plan != nil {
					shown++
					walk(*n.Plan)
					continue
				}
				omitted++
				require.Contains(t, n.PlanOmitted, "at most 100 sub-pipeline plans")
				require.Empty(t, n.ErrorCode)
			}
		}
	}
	walk(plan)
	require.Equal(t, protocol.MaxDryRunChildPlans, shown)
	require.Equal(t, 4+1, omitted)
	require.Empty(t, plan.Warnings)
}

// References the declarations refuse (a cycle, here written into the table behind their back)
// do not make the dry run recurse: the node that closes the cycle says so, with the error code a
// run would fail it with.
func TestSubPipelineDryRunCycleInStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	nested(e, w)
	_, err := e.pool.Exec(context.Background(), `UPDATE pipelines SET nodes = '{"ms": {"pipeline": "outer"}}' WHERE id = 'mid'`)
	require.NoError(t, err)
	plan := e.dryRun("outer")
	ms := plan.ExecutionPlan[1].Nodes["s"].Plan.ExecutionPlan[1].Nodes["ms"]
	require.Equal(t, "SUB_PIPELINE_CYCLE", ms.ErrorCode)
	require.Nil(t, ms.Plan)
	require.Equal(t, "sub-pipeline cycle outer → mid → outer", ms.PlanOmitted)
	require.Len(t, plan.Warnings, 1)
	require.Contains(t, plan.Warnings[0], `sub-pipeline node "s" (pipeline mid): sub-pipeline node "ms": sub-pipeline cycle outer → mid → outer`)
}
