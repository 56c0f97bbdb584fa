package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Sub-pipelines in the CLI (issue 15, item 4): status shows a run's parent and its child runs
// (the answer of GET /api/runs/{id}: parentRunId, children), and dry-run shows each
// sub-pipeline node's child plan, nested.

// maxChildrenShown bounds the child runs status lists in its table; --json has them all (the
// API lists up to 1,000, one per sub-pipeline node of the run).
const maxChildrenShown = 50

// parentText is a child run's parent: "prun_… (node s, task run trun_…)", or "" for a run
// without a parent.
func parentText(run protocol.PipelineRun) string {
	if run.ParentRunID == "" {
		return ""
	}
	return fmt.Sprintf("%s (node %s, task run %s)", run.ParentRunID, run.ParentTaskID, run.ParentNodeRunID)
}

// printChildren shows a table of run's child runs, at most maxChildrenShown of them.
func printChildren(w io.Writer, run protocol.PipelineRun) error {
	if len(run.Children) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	row(tw, "SUB-PIPELINE NODE", "PIPELINE", "CHILD RUN", "STATUS")
	for i, c := range run.Children {
		if i == maxChildrenShown {
			break
		}
		row(tw, c.TaskID, c.PipelineID, c.RunID, string(c.Status))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := len(run.Children); n > maxChildrenShown {
		fmt.Fprintf(w, "… and %d more child runs (status %s --json lists all %d in children)\n", n-maxChildrenShown, run.ID, n)
	}
	return nil
}

// subPlanLines lists sub-pipeline node id (n) of a dry run's plan and, nested under it, its
// child plan's steps and its own sub-pipeline nodes, each level indented by two spaces more.
func subPlanLines(id string, n protocol.PlanNode, indent string) []string {
	line := fmt.Sprintf("%s- %s: runs pipeline %s", indent, id, n.Pipeline)
	if n.ErrorCode != "" {
		line += " — a run would fail the node with " + n.ErrorCode
	}
	lines := []string{line}
	in := indent + "    "
	switch {
	case n.Plan == nil:
		if n.PlanOmitted != "" {
			lines = append(lines, in+"(plan not shown: "+n.PlanOmitted+")")
		}
	case len(n.Plan.ExecutionPlan) == 0:
		lines = append(lines, in+"no plan: "+strings.Join(n.Plan.Errors, "; "))
	default:
		var steps []string
		for _, s := range n.Plan.ExecutionPlan {
			steps = append(steps, strings.Join(s.Tasks, ", "))
		}
		valid := ""
		if !n.Plan.Valid {
			valid = " (invalid: " + strings.Join(n.Plan.Errors, "; ") + ")"
		}
		lines = append(lines, in+"steps: "+strings.Join(steps, " → ")+valid)
		for _, s := range n.Plan.ExecutionPlan {
			for _, t := range s.Tasks {
				if c, ok := s.Nodes[t]; ok && c.Type == "pipeline" {
					lines = append(lines, subPlanLines(t, c, in)...)
				}
			}
		}
	}
	return lines
}
