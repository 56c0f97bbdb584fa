package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// taskInfo is what the graph needs of a registered task.
type taskInfo struct {
	ServiceID   string
	AllowedNext []string
	CodeVersion int
	CodeHash    string
	Concurrency int
	// SchemaHash names the task's input schemas ("" when it has none).
	SchemaHash string
	// ConcurrencyKey is the task's concurrency key, a JSON pointer ("" = none).
	ConcurrencyKey string
}

// Node is one task of a pipeline's structure, as stored in a run's snapshot. It is the wire
// shape on purpose: the snapshot is stored as JSON in that shape and GET /api/runs/{id} serves
// it as stored, so the engine writes and reads nodes as the API shows them.
type Node = protocol.PipelineNode

// Graph is a pipeline's structure: the tasks reachable from its entry tasks through allowedNext.
type Graph struct {
	EntryTasks []string
	Tasks      map[string]*Node
	// Missing lists the tasks named (as entries or in allowedNext) that are not registered.
	Missing []string
	// Cycle is one cycle, its first task repeated at the end; nil when there is none.
	Cycle []string
}

// buildGraph walks from entries through the registered tasks. Edges into an entry task do not
// make it wait (an entry task starts with the run) but do count for cycles.
func buildGraph(entries []string, tasks map[string]taskInfo) *Graph {
	g := &Graph{EntryTasks: slices.Clone(entries), Tasks: map[string]*Node{}}
	missing := map[string]bool{}
	queue := []string{}
	for _, id := range entries {
		if _, ok := tasks[id]; !ok {
			missing[id] = true
			continue
		}
		if g.Tasks[id] == nil {
			g.Tasks[id] = nil
			queue = append(queue, id)
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		t := tasks[id]
		g.Tasks[id] = &Node{ServiceID: t.ServiceID, AllowedNext: nonNil(slices.Clone(t.AllowedNext)), Predecessors: []string{},
			CodeVersion: t.CodeVersion, CodeHash: t.CodeHash, Concurrency: t.Concurrency}
		for _, next := range t.AllowedNext {
			if _, ok := tasks[next]; !ok {
				missing[next] = true
				continue
			}
			if _, seen := g.Tasks[next]; !seen {
				g.Tasks[next] = nil
				queue = append(queue, next)
			}
		}
	}
	for id, n := range g.Tasks {
		kept := n.AllowedNext[:0]
		for _, next := range n.AllowedNext {
			if _, ok := g.Tasks[next]; ok {
				kept = append(kept, next)
				if !slices.Contains(entries, next) {
					g.Tasks[next].Predecessors = append(g.Tasks[next].Predecessors, id)
				}
			}
		}
		n.AllowedNext = kept
	}
	for _, n := range g.Tasks {
		slices.Sort(n.Predecessors)
	}
	for id := range missing {
		g.Missing = append(g.Missing, id)
	}
	slices.Sort(g.Missing)
	g.Cycle = g.findCycle()
	return g
}

// findCycle returns one cycle of the graph, or nil.
func (g *Graph) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(id string) bool
	visit = func(id string) bool {
		color[id] = grey
		stack = append(stack, id)
		for _, next := range g.Tasks[id].AllowedNext {
			switch color[next] {
			case grey:
				i := slices.Index(stack, next)
				found = append(slices.Clone(stack[i:]), next)
				return true
			case white:
				if visit(next) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
		return false
	}
	for _, id := range g.sortedIDs() {
		if color[id] == white && visit(id) {
			return found
		}
	}
	return nil
}

func (g *Graph) sortedIDs() []string {
	ids := make([]string, 0, len(g.Tasks))
	for id := range g.Tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// problems lists what makes the graph impossible to run, as sentences.
func (g *Graph) problems() []string {
	var out []string
	if len(g.EntryTasks) == 0 {
		out = append(out, "the pipeline has no entry task")
	}
	if len(g.Missing) > 0 {
		out = append(out, "tasks not registered: "+strings.Join(g.Missing, ", "))
	}
	if g.Cycle != nil {
		out = append(out, "cycle: "+strings.Join(g.Cycle, " → "))
	}
	return out
}

// levels returns each task's depth: the longest path from an entry task. Only for acyclic graphs.
func (g *Graph) levels() map[string]int {
	depth := map[string]int{}
	var walk func(id string) int
	walk = func(id string) int {
		if d, ok := depth[id]; ok {
			return d
		}
		d := 0
		for _, p := range g.Tasks[id].Predecessors {
			d = max(d, walk(p)+1)
		}
		depth[id] = d
		return d
	}
	for id := range g.Tasks {
		walk(id)
	}
	return depth
}

// PlanStep is one step of a dry run's execution plan.
type PlanStep struct {
	Step     int
	Tasks    []string
	Type     string // entry, parallel, join or end
	WaitsFor []string
	// Nodes describes the step's map and sub-pipeline nodes by task id (nil: none).
	Nodes map[string]protocol.PlanNode
}

// plan orders an acyclic graph into steps by depth: the entry tasks, then per depth one step for
// the tasks that follow a single predecessor ("parallel", or "end" when the last ones have no
// successor) and one "join" step per task that waits for several.
func (g *Graph) plan() []PlanStep {
	depth := g.levels()
	maxDepth := 0
	for _, d := range depth {
		maxDepth = max(maxDepth, d)
	}
	byDepth := make([][]string, maxDepth+1)
	for _, id := range g.sortedIDs() {
		byDepth[depth[id]] = append(byDepth[depth[id]], id)
	}
	var steps []PlanStep
	add := func(tasks []string, typ string, waits []string) {
		steps = append(steps, PlanStep{Step: len(steps) + 1, Tasks: tasks, Type: typ, WaitsFor: waits})
	}
	for d, ids := range byDepth {
		if d == 0 {
			add(ids, "entry", nil)
			continue
		}
		var plain []string
		for _, id := range ids {
			if preds := g.Tasks[id].Predecessors; len(preds) > 1 {
				add([]string{id}, "join", preds)
			} else {
				plain = append(plain, id)
			}
		}
		if len(plain) == 0 {
			continue
		}
		typ := "parallel"
		if d == maxDepth {
			typ = "end"
			for _, id := range plain {
				if len(g.Tasks[id].AllowedNext) > 0 {
					typ = "parallel"
				}
			}
		}
		add(plain, typ, nil)
	}
	return steps
}

// warnings lists what may surprise the user without stopping the run.
func (g *Graph) warnings() []string {
	var out []string
	for _, id := range g.sortedIDs() {
		n := g.Tasks[id]
		if n.Concurrency > 0 {
			out = append(out, fmt.Sprintf("task %q has concurrency %d: its runs queue behind each other across all pipeline runs", id, n.Concurrency))
		}
	}
	for _, id := range g.EntryTasks {
		for _, other := range g.sortedIDs() {
			if slices.Contains(g.Tasks[other].AllowedNext, id) {
				out = append(out, fmt.Sprintf("entry task %q is also listed in allowedNext of %q; it starts with the run and does not wait", id, other))
			}
		}
	}
	return out
}

// selects reports whether a resolved node enables its successor next: every successor when it
// completed and selected none, only the selected ones otherwise, none when it did not complete.
func selects(completed bool, selected []string, next string) bool {
	if !completed {
		return false
	}
	return len(selected) == 0 || slices.Contains(selected, next)
}
