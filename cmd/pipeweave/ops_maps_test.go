package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// status, trigger --wait and dry-run show a map node with its items counted by state, and list
// none of the items themselves; --json has the counts in maps.
func TestCLIMapNode(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	gate := make(chan struct{})
	s.o.PagesWorker(t, 5, 2, gate)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)

	out := s.cli("dry-run", "pages")
	require.Contains(t, out, "map nodes (one task run per item):\n")
	require.Contains(t, out, `  - ocr: map over split items "/pages" (maxItems 10000); item count unknown until run time`+"\n")
	var plan protocol.DryRun
	s.cliJSON(&plan, "dry-run", "pages")
	require.Equal(t, protocol.ItemCountUnknown, plan.ExecutionPlan[1].Nodes["ocr"].ItemCount)
	// A sub-pipeline node: the dry run names the pipeline it runs.
	s.api(http.MethodPut, "/api/pipelines/outer", map[string]any{"entryTasks": []string{"split"},
		"nodes": map[string]any{"ocr": map[string]any{"pipeline": "pages"}}}, nil)
	out = s.cli("dry-run", "outer")
	require.Contains(t, out, "sub-pipeline nodes (a child run in the node's place):\n  - ocr: runs pipeline pages\n      steps: split → ocr → merge\n")
	require.NotContains(t, out, "map nodes")

	id := s.trigger("pages", map[string]any{})
	var run protocol.PipelineRun
	s.waitUntil("items 0 and 1 resolved, 2-4 running", func() bool {
		run = protocol.PipelineRun{}
		s.api(http.MethodGet, "/api/runs/"+id+"?items=false", nil, &run)
		m := mapOf(run, "ocr")
		return m != nil && m.Counts["completed"] == 1 && m.Counts["failed"] == 1 && m.Counts["running"] == 3
	})

	out = s.cli("status", id)
	require.Regexp(t, `(?m)^MAP NODE\s+STATUS\s+OVER\s+ITEMS\s+PENDING\s+DISPATCHING\s+RUNNING\s+COMPLETED\s+FAILED\s+CANCELLED$`, out)
	require.Regexp(t, `(?m)^ocr\s+waiting\s+split /pages\s+5\s+0\s+0\s+3\s+1\s+1\s+0$`, out)
	// The task table lists the map node's own row once, not its items.
	require.Len(t, regexp.MustCompile(`(?m)^ocr\s`).FindAllString(out, -1), 2, out)
	require.Regexp(t, `(?m)^split\s+completed`, out)

	var got protocol.PipelineRun
	s.cliJSON(&got, "status", id)
	require.Len(t, got.Tasks, 3, "split, the map row of ocr, merge: no item")
	require.Len(t, got.Maps, 1)
	require.Equal(t, 5, *got.Maps[0].ItemsTotal)
	require.Equal(t, map[protocol.TaskRunStatus]int{"pending": 0, "dispatching": 0, "running": 3, "completed": 1, "failed": 1, "cancelled": 0},
		got.Maps[0].Counts)

	release()
	s.waitRun(id)
	out = s.cli("status", id)
	require.Regexp(t, `(?m)^ocr\s+completed\s+split /pages\s+5\s+0\s+0\s+0\s+4\s+1\s+0$`, out)

	// trigger --wait: one line per change of the map node's counts, never one per item.
	out, _, err := runCmd(t, s.env(), "trigger", "pages", "-i", `{}`, "--wait", "--poll", "20ms")
	require.ErrorContains(t, err, "ended failed; failed tasks: ocr (MAP_ITEMS_FAILED: 1 of 5 items failed: 1)")
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d ocr completed · map 5 items: 4 completed, 1 failed$`, out)
	require.NotContains(t, out, "UNREADABLE", "no item's line")
	require.Equal(t, 1, strings.Count(out, "split completed"))
}
