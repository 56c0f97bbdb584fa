package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Sub-pipelines (issue 15, item 2; docs/dynamic-pipelines.md, migration 015): a node declared
// {"pipeline": "<id>"} never goes to a worker. When it becomes ready, the advance's transaction
// triggers a child run of that pipeline (startChild) with the node's upstream as input, and the
// node row stays waiting, which no claim takes. When the child run ends, the transaction that
// ended it ends the node (resolveParent): completed with the child's terminal outputs, or failed
// with SUB_PIPELINE_FAILED; the parent then advances as after any node. A parent that ends
// cancels its running children (cancelChildren), recursively.
//
// Lock order: lockRuns locks a run's ancestors with it, in id order, and a child's id is always
// greater than its parent's (childRunID), so a parent is always locked before its children, and whoever holds a child holds its whole
// line of ancestors: a child's end can resolve its parent's node, and a parent's end can lock
// and cancel its children, without two transactions waiting on each other.

// MaxSubPipelineDepth bounds the nesting of sub-pipelines: a chain of sub-pipeline references
// (a pipeline with a node running another, which runs another...) has at most this many
// pipelines, the top one included. Declarations refuse deeper chains (SUB_PIPELINE_TOO_DEEP),
// and a run whose child would be deeper fails the node with the same code.
const MaxSubPipelineDepth = 10

// Sub-pipeline errors, at declaration (400) and on a run (the node's error code).
const (
	// SubPipelineUnknown: the referenced pipeline does not exist.
	SubPipelineUnknown = "SUB_PIPELINE_UNKNOWN"
	// SubPipelineCycle: the references make a cycle (the message names it).
	SubPipelineCycle = "SUB_PIPELINE_CYCLE"
	// SubPipelineTooDeep: the chain of references is deeper than MaxSubPipelineDepth.
	SubPipelineTooDeep = "SUB_PIPELINE_TOO_DEEP"
	// SubPipelineFailed: the child run ended without completing (failed, partial, cancelled,
	// timed out); the message names it.
	SubPipelineFailed = "SUB_PIPELINE_FAILED"
	// SubPipelineInvalid: the child run could not start (its pipeline cannot run now).
	SubPipelineInvalid = "SUB_PIPELINE_INVALID"
)

// subDeclLock is the advisory lock that declarations with sub-pipeline references take, so
// that two of them cannot make a cycle that neither sees alone.
const subDeclLock int64 = 0x707773756270706c

// validateSubNode checks sub-pipeline node taskID of pipeline id's declaration on its own.
func validateSubNode(id, taskID, ref string, def *protocol.PipelineDefinition) error {
	if !idPattern.MatchString(ref) {
		return nodeError("INVALID_NODES", taskID, ".pipeline", "pipeline %q: node %q: pipeline %q is not a valid pipeline id", id, taskID, ref)
	}
	if ref == id {
		err := nodeError(SubPipelineCycle, taskID, ".pipeline", "pipeline %q: node %q runs the pipeline itself: sub-pipeline cycle %s → %s", id, taskID, id, id)
		err.Details = map[string]any{"field": "nodes." + taskID + ".pipeline", "cycle": []string{id, id}}
		return err
	}
	if slices.Contains(def.EntryTasks, taskID) {
		return nodeError("SUB_PIPELINE_ON_ENTRY_TASK", taskID, ".pipeline",
			"pipeline %q: entry task %q cannot be a sub-pipeline node (a sub-pipeline node runs after its predecessors)", id, taskID)
	}
	return nil
}

// subRefs lists the pipelines that nodes reference, by node in task id order.
func subRefs(nodes map[string]protocol.NodeConfig) []string {
	var out []string
	for _, taskID := range slices.Sorted(maps.Keys(nodes)) {
		if ref := nodes[taskID].Pipeline; ref != "" && !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	return out
}

// saveChecked saves declaration d with save: at once when it references no sub-pipeline, else in
// a transaction that first checks its references (checkSubPipelines).
func (e *Engine) saveChecked(ctx context.Context, d protocol.PipelineDefinition, save func(db dbtx) error) error {
	if len(subRefs(d.Nodes)) == 0 {
		return save(e.db)
	}
	return e.db.InTx(ctx, func(tx dbtx) error {
		if err := e.checkSubPipelines(ctx, tx, []protocol.PipelineDefinition{d}); err != nil {
			return err
		}
		return save(tx)
	})
}

// checkSubPipelines checks the sub-pipeline references of declarations defs (about to be saved
// in tx) against every stored pipeline: each referenced pipeline exists (or is among defs), no
// cycle runs through the references, and no chain is deeper than MaxSubPipelineDepth. Each
// problem is a 400 that rolls tx back. Declarations with references are serialised (an advisory
// lock held until tx ends).
func (e *Engine) checkSubPipelines(ctx context.Context, tx dbtx, defs []protocol.PipelineDefinition) error {
	if !slices.ContainsFunc(defs, func(d protocol.PipelineDefinition) bool { return len(subRefs(d.Nodes)) > 0 }) {
		return nil
	}
	if err := lockSubDeclarations(ctx, tx, defs); err != nil {
		return err
	}
	rows, err := queries.SubPipelineRefs(ctx, tx)
	if err != nil {
		return fmt.Errorf("read sub-pipeline references: %w", err)
	}
	refs := map[string][]string{}
	for _, r := range rows {
		nodes, err := decodeNodes(r.Nodes)
		if err != nil {
			return fmt.Errorf("pipeline %s: %w", r.ID, err)
		}
		refs[r.ID] = subRefs(nodes)
	}
	declared := map[string]bool{}
	var wanted []string
	for _, d := range defs {
		refs[d.ID] = subRefs(d.Nodes)
		declared[d.ID] = true
		wanted = append(wanted, refs[d.ID]...)
	}
	existing, err := queries.ExistingPipelines(ctx, tx, wanted)
	if err != nil {
		return fmt.Errorf("read referenced pipelines: %w", err)
	}
	for _, id := range existing {
		declared[id] = true
	}
	for _, d := range defs {
		for _, taskID := range slices.Sorted(maps.Keys(d.Nodes)) {
			if ref := d.Nodes[taskID].Pipeline; ref != "" && !declared[ref] {
				return nodeError(SubPipelineUnknown, taskID, ".pipeline", "pipeline %q: node %q: sub-pipeline %q does not exist", d.ID, taskID, ref)
			}
		}
	}
	for _, d := range defs {
		if cycle := refCycle(refs, d.ID); cycle != nil {
			err := invalid(SubPipelineCycle, "pipeline %q: sub-pipeline references make a cycle: %s", d.ID, strings.Join(cycle, " → "))
			err.Details = map[string]any{"cycle": cycle}
			return err
		}
	}
	for _, d := range defs {
		if chain := deepestChain(refs, d.ID); len(chain) > MaxSubPipelineDepth {
			err := invalid(SubPipelineTooDeep, "pipeline %q: sub-pipelines nest %d pipelines deep (%s); at most %d", d.ID, len(chain),
				strings.Join(chain, " → "), MaxSubPipelineDepth)
			err.Details = map[string]any{"chain": chain}
			return err
		}
	}
	return nil
}

// lockSubDeclarations takes the advisory lock of declarations with sub-pipeline references
// when one of defs has some (before any other lock of the transaction: PUT and registration
// take it first).
func lockSubDeclarations(ctx context.Context, tx dbtx, defs []protocol.PipelineDefinition) error {
	if !slices.ContainsFunc(defs, func(d protocol.PipelineDefinition) bool { return len(subRefs(d.Nodes)) > 0 }) {
		return nil
	}
	if err := queries.LockSubPipelineDeclarations(ctx, tx, subDeclLock); err != nil {
		return fmt.Errorf("lock sub-pipeline declarations: %w", err)
	}
	return nil
}

// refCycle returns a cycle of references reachable from start (its first pipeline repeated at
// the end), or nil.
func refCycle(refs map[string][]string, start string) []string {
	const (
		grey = iota + 1
		black
	)
	color := map[string]int{}
	var stack, found []string
	var visit func(id string) bool
	visit = func(id string) bool {
		color[id] = grey
		stack = append(stack, id)
		for _, next := range refs[id] {
			switch color[next] {
			case grey:
				i := slices.Index(stack, next)
				found = append(slices.Clone(stack[i:]), next)
				return true
			case 0:
				if visit(next) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
		return false
	}
	if visit(start) {
		return found
	}
	return nil
}

// deepestChain is the longest chain of references through id (acyclic refs): the pipelines
// that lead to id, id, and those id leads to, top first.
func deepestChain(refs map[string][]string, id string) []string {
	down := map[string][]string{}
	var below func(id string) []string
	below = func(id string) []string {
		if c, ok := down[id]; ok {
			return c
		}
		down[id] = []string{id} // guards against a cycle (refused before)
		best := []string{}
		for _, next := range refs[id] {
			if c := below(next); len(c) > len(best) {
				best = c
			}
		}
		down[id] = append([]string{id}, best...)
		return down[id]
	}
	referrers := map[string][]string{}
	for _, from := range slices.Sorted(maps.Keys(refs)) {
		for _, to := range refs[from] {
			referrers[to] = append(referrers[to], from)
		}
	}
	up := map[string][]string{}
	var above func(id string) []string
	above = func(id string) []string {
		if c, ok := up[id]; ok {
			return c
		}
		up[id] = []string{id}
		best := []string{}
		for _, prev := range referrers[id] {
			if c := above(prev); len(c) > len(best) {
				best = c
			}
		}
		up[id] = append(slices.Clone(best), id)
		return up[id]
	}
	top := above(id)
	return append(slices.Clone(top[:len(top)-1]), below(id)...)
}

// linkRuns links the runs locked together: each to the set, to its parent when the parent is
// among them (lockRuns locks ancestors too), and marks those with sub-pipeline nodes and those
// with spawn nodes.
func linkRuns(set map[string]*lockedRun) {
	for _, r := range set {
		r.set = set
		if r.parentID != "" {
			r.parent = set[r.parentID]
		}
		for _, n := range r.snap.Tasks {
			if n != nil {
				r.hasSubs = r.hasSubs || n.Pipeline != ""
				r.hasSpawns = r.hasSpawns || n.Spawn != nil
			}
		}
	}
}

// advance moves run on after nodes resolved (advanceNodes) and then carries out what the run's
// end, if it ended, means for its sub-pipeline relatives (afterEnd). The advance commits with
// its last statements (last) only for a run without a parent or sub-pipeline nodes.
func (e *Engine) advance(ctx context.Context, tx dbtx, run *lockedRun, resolved []resolution, last bool) error {
	if err := e.advanceNodes(ctx, tx, run, resolved, last && run.parentID == "" && !run.hasSubs); err != nil {
		return err
	}
	return e.afterEnd(ctx, tx, run)
}

// afterEnd, once per run that the transaction ended: its running children are cancelled, and
// the node of its parent ends with it (and the parent advances).
func (e *Engine) afterEnd(ctx context.Context, tx dbtx, run *lockedRun) error {
	if !run.ended || run.endDone {
		return nil
	}
	run.endDone = true
	if run.hasSubs {
		if err := e.cancelChildren(ctx, tx, run); err != nil {
			return err
		}
	}
	if run.parentID != "" {
		return e.resolveParent(ctx, tx, run)
	}
	return nil
}

// cancelChildren cancels the running child runs of run, which ended, with their own children.
func (e *Engine) cancelChildren(ctx context.Context, tx dbtx, run *lockedRun) error {
	children, err := queries.RunningChildren(ctx, tx, run.id)
	if err != nil {
		return fmt.Errorf("read the child runs of %s: %w", run.id, err)
	}
	if len(children) == 0 {
		return nil
	}
	if run.set == nil {
		run.set = map[string]*lockedRun{run.id: run}
	}
	var want []string
	for _, id := range children {
		if run.set[id] == nil {
			want = append(want, id)
		}
	}
	if len(want) > 0 {
		// The children's ancestors, run among them, are locked already: this locks the children.
		locked, err := e.lockRuns(ctx, tx, want)
		if err != nil {
			return err
		}
		for id, r := range locked {
			if run.set[id] == nil {
				run.set[id] = r
			}
		}
		linkRuns(run.set)
	}
	for _, id := range children {
		c := run.set[id]
		if c == nil || c.status != protocol.PipelineRunning {
			continue
		}
		if err := e.endPipelineRun(ctx, tx, c, runEnd{status: protocol.PipelineCancelled,
			err:    fmt.Sprintf("the parent pipeline run %s ended (%s)", run.id, run.status),
			reason: "the parent pipeline run ended"}); err != nil {
			return err
		}
	}
	return nil
}

// resolveParent ends the node of child's parent that child, which ended, stands for: completed
// with the child's terminal outputs when it completed, else failed with SUB_PIPELINE_FAILED; the
// parent then advances. A parent that is no longer running, or a node that no longer waits
// (cancelled with its run), is left as it is.
func (e *Engine) resolveParent(ctx context.Context, tx dbtx, child *lockedRun) error {
	p := child.parent
	if p == nil {
		return fmt.Errorf("pipeline run %s ended, but its parent %s was not locked with it", child.id, child.parentID)
	}
	if p.status != protocol.PipelineRunning {
		return nil
	}
	node, err := queries.ParentNodeOf(ctx, tx, child.id)
	if err != nil {
		return fmt.Errorf("read the parent node of %s: %w", child.id, err)
	}
	params := dbsqlc.EndSubNodeParams{ID: node.ID}
	res := resolution{taskID: node.TaskID}
	if child.status == protocol.PipelineCompleted {
		if params, err = e.terminalOutput(ctx, tx, child, node.ID); err != nil {
			return err
		}
		res.completed = true
	} else {
		code := SubPipelineFailed
		msg := fmt.Sprintf("sub-pipeline run %s (pipeline %s) ended %s", child.id, node.PipelineID, child.status)
		if node.Error != "" {
			msg += ": " + node.Error
		}
		params.Status, params.Error, params.ErrorCode = string(protocol.StatusFailed), &msg, &code
		res.failed = true
	}
	n, err := queries.EndSubNode(ctx, tx, params)
	if err != nil {
		return fmt.Errorf("end sub-pipeline node %s: %w", node.ID, err)
	}
	if n == 0 {
		return nil
	}
	return e.advance(ctx, tx, p, []resolution{res}, false)
}

// terminalOutput is the completion of node row id with the terminal outputs of child run
// child: a JSON object keyed by the child's terminal tasks (those without successors), each the
// task's inline output, {"outputPath": ...} when it is stored, or null when the task did not
// complete (skipped). The object is inline up to InlineMax bytes, else stored at the node's
// output path.
func (e *Engine) terminalOutput(ctx context.Context, tx dbtx, child *lockedRun, id string) (dbsqlc.EndSubNodeParams, error) {
	var terminal []string
	for taskID, n := range child.snap.Tasks {
		if n != nil && len(n.AllowedNext) == 0 {
			terminal = append(terminal, taskID)
		}
	}
	slices.Sort(terminal)
	rows, err := queries.TerminalOutputs(ctx, tx, dbsqlc.TerminalOutputsParams{PipelineRunID: child.id, TaskIDs: terminal})
	if err != nil {
		return dbsqlc.EndSubNodeParams{}, fmt.Errorf("read the terminal outputs of %s: %w", child.id, err)
	}
	byTask := make(map[string]dbsqlc.TerminalOutputsRow, len(rows))
	for _, r := range rows {
		byTask[r.TaskID] = r
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, taskID := range terminal {
		if i > 0 {
			buf.WriteByte(',')
		}
		key, err := json.Marshal(taskID)
		if err != nil {
			return dbsqlc.EndSubNodeParams{}, fmt.Errorf("encode task id %s: %w", taskID, err)
		}
		buf.Write(key)
		buf.WriteByte(':')
		r, ok := byTask[taskID]
		if !ok || r.Status != protocol.StatusCompleted {
			buf.WriteString("null")
			continue
		}
		if err := writeRef(&buf, r.Output, r.OutputPath); err != nil {
			return dbsqlc.EndSubNodeParams{}, fmt.Errorf("encode the output ref of %s: %w", taskID, err)
		}
	}
	buf.WriteByte('}')
	p, err := e.nodeOutput(ctx, id, protocol.OutputPath(id), buf.Bytes())
	return dbsqlc.EndSubNodeParams(p), err
}

// ancestorsOf lists run's ancestors and run itself, the top-level run first: a child's
// ancestors. Every ancestor of a locked run is locked with it (lockRuns).
func ancestorsOf(run *lockedRun) ([]string, error) {
	out := []string{run.id}
	for r := run; r.parentID != ""; r = r.parent {
		if r.parent == nil {
			return nil, fmt.Errorf("pipeline run %s: its parent %s was not locked with it", r.id, r.parentID)
		}
		out = append(out, r.parentID)
	}
	slices.Reverse(out)
	return out, nil
}

// startChild starts sub-pipeline node taskID of run, which the advance just made pending: it
// triggers a child run of the node's pipeline in tx, whose input is the node's upstream (a JSON
// object keyed by predecessor task id, each an upstream ref {"outputPath", "output"?,
// "assets"?} as a dispatch's upstreamRefs), and puts the node row back to waiting. A child that
// cannot start (its pipeline is gone or cannot run, or it would nest too deep) fails the node:
// that is returned as the node's resolution (nil when the child started).
func (e *Engine) startChild(ctx context.Context, tx dbtx, run *lockedRun, taskID string) (*resolution, error) {
	node := run.snap.Tasks[taskID]
	ref := node.Pipeline
	row, err := queries.MapOverOutput(ctx, tx, dbsqlc.MapOverOutputParams{PipelineRunID: run.id, TaskID: taskID})
	if err != nil {
		return nil, fmt.Errorf("read sub-pipeline node %s of %s: %w", taskID, run.id, err)
	}
	fail := func(code, format string, args ...any) (*resolution, error) {
		// The node row is pending here (AdvanceSuccessors just made it so): EndSubNode, which
		// ends only a waiting node, would leave it pending for good. EndMapRow ends it as it is.
		if err := endMapRowFailed(ctx, tx, row.ID, code, fmt.Sprintf(format, args...)); err != nil {
			return nil, err
		}
		return &resolution{taskID: taskID, failed: true}, nil
	}
	// The run is depth+1 pipelines deep; its child would be depth+2.
	if run.depth+2 > MaxSubPipelineDepth {
		return fail(SubPipelineTooDeep, "sub-pipeline node %s: a run of %s would nest %d pipelines deep; at most %d", taskID, ref, run.depth+2, MaxSubPipelineDepth)
	}
	ancestors, err := ancestorsOf(run)
	if err != nil {
		return nil, err
	}
	pr, err := queries.PipelineGet(ctx, tx, ref)
	if errors.Is(err, database.ErrNotFound) {
		return fail(SubPipelineUnknown, "sub-pipeline node %s: pipeline %q does not exist", taskID, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("read pipeline %s: %w", ref, err)
	}
	p, err := pipelineOf(pr)
	if err != nil {
		return nil, err
	}
	tasks, prios, err := e.activeTasks(ctx, tx)
	if err != nil {
		return nil, err
	}
	p.resolve(tasks)
	if !p.Valid {
		return fail(SubPipelineInvalid, "sub-pipeline node %s: pipeline %q cannot run: %s", taskID, ref, strings.Join(p.Errors, "; "))
	}
	ups, err := queries.SubNodeUpstream(ctx, tx, dbsqlc.SubNodeUpstreamParams{PipelineRunID: run.id, TaskIDs: node.Predecessors})
	if err != nil {
		return nil, fmt.Errorf("read the upstream of %s in %s: %w", taskID, run.id, err)
	}
	upstream := make(map[string]protocol.UpstreamRef, len(ups))
	for _, u := range ups {
		r := protocol.UpstreamRef{OutputPath: u.OutputPath, Output: u.Output}
		if len(u.Assets) > 0 {
			if err := json.Unmarshal(u.Assets, &r.Assets); err != nil {
				return nil, fmt.Errorf("assets of %s in %s: %w", u.TaskID, run.id, err)
			}
			wireAssets(r.Assets)
		}
		upstream[u.TaskID] = r
	}
	input, err := json.Marshal(upstream)
	if err != nil {
		return nil, fmt.Errorf("encode the input of sub-pipeline node %s: %w", taskID, err)
	}
	childID := childRunID(run.id)
	inputPath := protocol.PipelineInputPath(childID)
	inline, isInline := e.inlineInput(input)
	var inlineInput []byte
	if isInline {
		inlineInput = inline
	} else {
		_, backend := e.storage.Default()
		if err := storage.PutBytes(ctx, backend, inputPath, input, "application/json"); err != nil {
			return nil, storageFailed(fmt.Errorf("store the input of %s: %w", childID, err))
		}
	}
	snap, err := json.Marshal(snapshot{PipelineID: ref, EntryTasks: p.graph.EntryTasks, FailureMode: p.FailureMode, Tasks: p.graph.Tasks})
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	nodeJSON, _, _, err := runNodes(p.graph, tasks, prios, nil, input)
	if err != nil {
		return nil, err
	}
	traceparent := telemetry.Traceparent(ctx)
	if err := queries.InsertPipelineRun(ctx, tx, dbsqlc.InsertPipelineRunParams{ID: childID, PipelineID: ref, FailureMode: p.FailureMode,
		Priority: 100, InputPath: inputPath, Input: inlineInput, Snapshot: snap, Traceparent: traceparent,
		TimeoutMs: p.TimeoutMs, Now: e.now()}); err != nil {
		return nil, fmt.Errorf("insert the child run of %s: %w", row.ID, err)
	}
	if err := queries.InsertPipelineTaskRuns(ctx, tx, dbsqlc.InsertPipelineTaskRunsParams{PipelineRunID: childID,
		InputPath: inputPath, Nodes: nodeJSON, Traceparent: traceparent}); err != nil {
		return nil, fmt.Errorf("insert the task runs of %s: %w", childID, err)
	}
	if err := queries.SetRunParent(ctx, tx, dbsqlc.SetRunParentParams{ID: childID, ParentRunID: run.id, ParentNodeRunID: row.ID,
		Ancestors: ancestors}); err != nil {
		return nil, fmt.Errorf("link %s to %s: %w", childID, run.id, err)
	}
	if err := queries.WaitSubNode(ctx, tx, row.ID); err != nil {
		return nil, fmt.Errorf("sub-pipeline node %s waits for %s: %w", row.ID, childID, err)
	}
	if err := queries.NotifyReady(ctx, tx); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	run.readied = true
	return nil, nil
}

// childRunID is a new pipeline run id greater than parent's: a run is locked after its
// ancestors because its id is greater (lockRuns locks in id order). An instance whose clock is
// behind the parent's makes an id 1 ms after the parent's.
func childRunID(parent string) string {
	id := ids.New(ids.PipelineRun)
	if id > parent {
		return id
	}
	return ids.After(parent)
}

// RunRelative is a pipeline run's parent or child run (sub-pipelines): the run, its pipeline and
// status, and the node of the parent run the child stands for (task id and task run id).
type RunRelative struct {
	RunID      string
	PipelineID string
	Status     protocol.PipelineRunStatus
	TaskID     string
	NodeRunID  string
}

// maxChildrenListed bounds the children GET /api/runs/{id} lists (a run has at most one child
// per sub-pipeline node, and at most maxNodeConfigs of those).
const maxChildrenListed = maxNodeConfigs

// readFamily sets run's parent and children.
func (e *Engine) readFamily(ctx context.Context, run *PipelineRun) error {
	rows, err := queries.RunFamily(ctx, e.db, dbsqlc.RunFamilyParams{ID: run.ID, Max: maxChildrenListed})
	if err != nil {
		return fmt.Errorf("read the parent and children of %s: %w", run.ID, err)
	}
	for _, r := range rows {
		rel := RunRelative{RunID: deref(r.RunID), PipelineID: r.PipelineID, Status: r.Status, TaskID: r.TaskID, NodeRunID: deref(r.NodeRunID)}
		if r.Relation == "parent" {
			run.Parent = &rel
		} else {
			run.Children = append(run.Children, rel)
		}
	}
	return nil
}
