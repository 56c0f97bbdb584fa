package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Map nodes in the CLI (issue 15, item 4): status, trigger --wait and the demo read a pipeline
// run without its map nodes' items (GET /api/runs/{id}?items=false) and show each map node's
// items counted by state (the answer's maps); dry-run marks the map nodes of its plan.

// nodesOnly is the query that leaves the items of map nodes out of a pipeline run.
var nodesOnly = url.Values{"items": {"false"}}

// mapOf is the map node taskID of run (nil: not a map node).
func mapOf(run protocol.PipelineRun, taskID string) *protocol.MapNodeState {
	for i := range run.Maps {
		if run.Maps[i].TaskID == taskID {
			return &run.Maps[i]
		}
	}
	return nil
}

// isItem says whether t is an item of a map node of run (not the node's own row).
func isItem(run protocol.PipelineRun, t protocol.PipelineRunTask) bool {
	m := mapOf(run, t.TaskID)
	return m != nil && m.MapRunID != "" && t.ID != m.MapRunID
}

// mapCounts is a map node's items in one phrase: "12 items: 5 completed, 2 failed, 5 running"
// (states with no item left out), or what it waits for before it has any.
func mapCounts(m protocol.MapNodeState) string {
	if m.ItemsTotal == nil {
		return "items unknown until " + m.Map.Over + " completes"
	}
	var parts []string
	for _, st := range []protocol.TaskRunStatus{protocol.StatusCompleted, protocol.StatusFailed, protocol.StatusCancelled,
		protocol.StatusRunning, protocol.StatusDispatching, protocol.StatusPending} {
		if n := m.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	s := fmt.Sprintf("%d items", *m.ItemsTotal)
	if *m.ItemsTotal == 1 {
		s = "1 item"
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

// mapSuffix is " · map 12 items: …" for the row of a map node of run, "" for any other row.
func mapSuffix(run protocol.PipelineRun, t protocol.TaskRun) string {
	if m := mapOf(run, t.TaskID); m != nil {
		return " · map " + mapCounts(*m)
	}
	return ""
}

// printMapNodes shows a table of run's map nodes with their items counted by state.
func printMapNodes(w io.Writer, run protocol.PipelineRun) error {
	if len(run.Maps) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	header := []string{"MAP NODE", "STATUS", "OVER", "ITEMS"}
	for _, st := range protocol.MapItemStates {
		header = append(header, strings.ToUpper(string(st)))
	}
	row(tw, header...)
	for _, m := range run.Maps {
		total := "unknown"
		if m.ItemsTotal != nil {
			total = strconv.Itoa(*m.ItemsTotal)
		}
		cells := []string{m.TaskID, string(m.Status), m.Map.Over + " " + m.Map.Items, total}
		for _, st := range protocol.MapItemStates {
			cells = append(cells, strconv.Itoa(m.Counts[st]))
		}
		row(tw, cells...)
	}
	return tw.Flush()
}

// printPlanNodes lists the map nodes and the sub-pipeline nodes of a dry run's plan.
func printPlanNodes(w io.Writer, plan protocol.DryRun) {
	var lines, subs []string
	for _, s := range plan.ExecutionPlan {
		for _, id := range s.Tasks {
			n, ok := s.Nodes[id]
			if ok && n.Pipeline != "" {
				subs = append(subs, subPlanLines(id, n, "  ")...)
			}
			if !ok || n.Map == nil {
				continue
			}
			count := n.ItemCount
			if count == protocol.ItemCountUnknown {
				count = "unknown until run time"
			}
			lines = append(lines, fmt.Sprintf("  - %s: %s over %s items %q (maxItems %d); item count %s",
				id, n.Type, n.Map.Over, n.Map.Items, n.Map.MaxItems, count))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "\nmap nodes (one task run per item):")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	if len(subs) > 0 {
		fmt.Fprintln(w, "\nsub-pipeline nodes (a child run in the node's place):")
		for _, l := range subs {
			fmt.Fprintln(w, l)
		}
	}
}
