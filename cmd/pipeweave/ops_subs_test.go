package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// status shows a run's child runs (node, pipeline, run, state) and a child run's parent;
// --json has them (parentRunId, childRunIds, children); dry-run shows the child plans nested.
func TestCLISubPipelines(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	s.o.FamilyWorker(t, gate)

	out := s.cli("dry-run", "outer")
	require.Contains(t, out, "sub-pipeline nodes (a child run in the node's place):\n"+
		"  - s: runs pipeline mid\n"+
		"      steps: m1 → ms → m2\n"+
		"      - ms: runs pipeline inner\n"+
		"          steps: i1\n", out)

	// A node whose child cannot run now (ghost's entry task is not registered) is flagged, and
	// the dry run still answers.
	s.api(http.MethodPut, "/api/pipelines/ghost", map[string]any{"entryTasks": []string{"nobody"}}, nil)
	s.api(http.MethodPut, "/api/pipelines/holder", map[string]any{"entryTasks": []string{"a"},
		"nodes": map[string]any{"s": map[string]any{"pipeline": "ghost"}}}, nil)
	out = s.cli("dry-run", "holder")
	require.Contains(t, out, "  - s: runs pipeline ghost — a run would fail the node with SUB_PIPELINE_INVALID\n      no plan: ", out)
	require.Regexp(t, `(?m)^warnings:\n  - sub-pipeline node "s": pipeline "ghost" cannot run: .*SUB_PIPELINE_INVALID$`, out)

	id := s.trigger("outer", map[string]any{})
	var outer, mid protocol.PipelineRun
	s.waitUntil("outer → mid → inner, inner's i1 running", func() bool {
		outer = protocol.PipelineRun{}
		s.api(http.MethodGet, "/api/runs/"+id, nil, &outer)
		if len(outer.Children) != 1 {
			return false
		}
		mid = protocol.PipelineRun{}
		s.api(http.MethodGet, "/api/runs/"+outer.Children[0].RunID, nil, &mid)
		return len(mid.Children) == 1 && taskOf(t, mid, "ms").Status == "waiting"
	})
	midID, innerID := outer.Children[0].RunID, mid.Children[0].RunID

	out = s.cli("status", id)
	require.Regexp(t, `(?m)^SUB-PIPELINE NODE\s+PIPELINE\s+CHILD RUN\s+STATUS$`, out)
	require.Regexp(t, `(?m)^s\s+mid\s+`+regexp.QuoteMeta(midID)+`\s+running$`, out)
	require.NotRegexp(t, `(?m)^parent\s`, out, "a top-level run has no parent")

	out = s.cli("status", midID)
	require.Regexp(t, `(?m)^parent\s+`+regexp.QuoteMeta(id)+` \(node s, task run `+regexp.QuoteMeta(taskOf(t, outer, "s").ID)+`\)$`, out)
	require.Regexp(t, `(?m)^ms\s+inner\s+`+regexp.QuoteMeta(innerID)+`\s+running$`, out)

	var got protocol.PipelineRun
	s.cliJSON(&got, "status", midID)
	require.Equal(t, id, got.ParentRunID)
	require.Equal(t, "s", got.ParentTaskID)
	require.Equal(t, []string{innerID}, got.ChildRunIDs)
	require.Equal(t, []protocol.ChildPipeline{{RunID: innerID, PipelineID: "inner", Status: "running", TaskID: "ms",
		NodeRunID: taskOf(t, mid, "ms").ID}}, got.Children)

	release()
	s.waitRun(id)
	out = s.cli("status", id)
	require.Regexp(t, `(?m)^s\s+mid\s+`+regexp.QuoteMeta(midID)+`\s+completed$`, out)
	require.Regexp(t, `(?m)^s\s+completed\s`, out, "the node's own row in the task table")
}

// status lists at most maxChildrenShown child runs, in the API's order, then says how many more
// there are and where to find them; --json lists them all. The run has 53 sub-pipeline nodes,
// each with its child run.
func TestCLISubPipelinesCutOff(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	const n = maxChildrenShown + 3
	nodes := make([]string, n)
	decl := map[string]protocol.NodeConfig{}
	for i := range nodes {
		nodes[i] = fmt.Sprintf("s%02d", i)
		decl[nodes[i]] = protocol.NodeConfig{Pipeline: "leafp"}
	}
	w := s.o.Worker(t, "wide", func(c *worker.Config) {
		c.Pipelines = []protocol.PipelineDefinition{{ID: "leafp", EntryTasks: []string{"leaf"}}, {ID: "wide", EntryTasks: []string{"root"}, Nodes: decl}}
	})
	done := func(ctx *worker.Context) (any, error) { return map[string]string{"task": ctx.TaskID}, nil }
	require.NoError(t, w.Register("root", worker.Options{AllowedNext: nodes}, done))
	require.NoError(t, w.Register("leaf", worker.Options{}, done))
	for _, id := range nodes {
		require.NoError(t, w.Register(id, worker.Options{}, func(*worker.Context) (any, error) {
			return nil, errors.New("a sub-pipeline node never goes to a worker")
		}))
	}
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)

	id := s.trigger("wide", map[string]any{})
	require.Equal(t, "completed", string(s.waitRun(id).Status))
	var got protocol.PipelineRun
	s.cliJSON(&got, "status", id)
	require.Len(t, got.Children, n, "--json lists every child run")

	out := s.cli("status", id)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SUB-PIPELINE NODE") })
	require.GreaterOrEqual(t, head, 0, out)
	rows := lines[head+1:]
	require.Len(t, rows, maxChildrenShown+1, "50 rows, then the cut-off line, end the output:\n%s", out)
	for i, c := range got.Children[:maxChildrenShown] {
		require.Regexp(t, `^`+c.TaskID+`\s+leafp\s+`+regexp.QuoteMeta(c.RunID)+`\s+completed$`, rows[i], "row %d", i)
	}
	require.Equal(t, fmt.Sprintf("… and 3 more child runs (status %s --json lists all %d in children)", id, n), rows[maxChildrenShown])
	for _, c := range got.Children[maxChildrenShown:] {
		require.NotContains(t, out, c.RunID, "a child run past the cut-off")
	}
	seen := map[string]bool{}
	for _, c := range got.Children {
		seen[c.TaskID] = true
	}
	require.Len(t, seen, n, "one child run per node")
}
