package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Sub-pipeline views (issue 15, item 4): a dry run shows each sub-pipeline node's child
// pipeline's plan inline, recursively, as deep as MaxSubPipelineDepth pipelines and at most
// protocol.MaxDryRunChildPlans plans in all. Nothing here runs on the claim, enqueue, trigger or
// callback paths.

// childPlanner expands the sub-pipeline nodes of one dry run: it reads each referenced pipeline
// once and resolves it against the tasks the dry run read.
type childPlanner struct {
	e     *Engine
	tasks map[string]taskInfo
	// pipelines caches the referenced pipelines by id (nil: it does not exist).
	pipelines map[string]*Pipeline
	// left is how many child plans the dry run may still show.
	left int
}

// pipeline reads pipeline id, resolved, once per dry run (nil: it does not exist).
func (c *childPlanner) pipeline(ctx context.Context, id string) (*Pipeline, error) {
	if p, ok := c.pipelines[id]; ok {
		return p, nil
	}
	p, err := c.e.readPipeline(ctx, id)
	if errors.Is(err, ErrNotFound) {
		c.pipelines[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.resolve(c.tasks)
	c.pipelines[id] = &p
	return &p, nil
}

// expand fills in the sub-pipeline nodes of steps, the plan of the last pipeline of chain (the
// pipelines from the dry run's down to it): each node's child plan, or why there is none. It
// returns the warnings of that pipeline about nodes whose runs would fail (their child could
// not start), its own and those of its children's nodes, prefixed with the node they are in.
func (c *childPlanner) expand(ctx context.Context, steps []PlanStep, chain []string) ([]string, error) {
	var warnings []string
	for i := range steps {
		for _, taskID := range steps[i].Tasks {
			n, ok := steps[i].Nodes[taskID]
			if !ok || n.Type != "pipeline" {
				continue
			}
			w, err := c.child(ctx, &n, taskID, chain)
			if err != nil {
				return nil, err
			}
			steps[i].Nodes[taskID] = n
			warnings = append(warnings, w...)
		}
	}
	return warnings, nil
}

// child sets the plan of sub-pipeline node taskID (n) of the last pipeline of chain, or why it
// has none, and returns the warnings expand reports for it.
func (c *childPlanner) child(ctx context.Context, n *protocol.PlanNode, taskID string, chain []string) ([]string, error) {
	ref, depth := n.Pipeline, len(chain)+1
	fails := func(code, omitted, why string) []string {
		n.ErrorCode, n.PlanOmitted = code, omitted
		return []string{fmt.Sprintf("sub-pipeline node %q: %s; a run would fail the node with %s", taskID, why, code)}
	}
	switch {
	case slices.Contains(chain, ref):
		cycle := strings.Join(append(slices.Clone(chain), ref), " → ")
		return fails(SubPipelineCycle, "sub-pipeline cycle "+cycle, "sub-pipeline cycle "+cycle), nil
	case depth > MaxSubPipelineDepth:
		msg := fmt.Sprintf("a run of %s would nest %d pipelines deep; at most %d", ref, depth, MaxSubPipelineDepth)
		return fails(SubPipelineTooDeep, msg, msg), nil
	}
	p, err := c.pipeline(ctx, ref)
	if err != nil {
		return nil, err
	}
	if p == nil {
		msg := fmt.Sprintf("pipeline %q does not exist", ref)
		return fails(SubPipelineUnknown, msg, msg), nil
	}
	var warnings []string
	if !p.Valid {
		n.ErrorCode = SubPipelineInvalid
		warnings = append(warnings, fmt.Sprintf("sub-pipeline node %q: pipeline %q cannot run: %s; a run would fail the node with %s",
			taskID, ref, strings.Join(p.Errors, "; "), SubPipelineInvalid))
	}
	if c.left <= 0 {
		n.PlanOmitted = fmt.Sprintf("a dry run shows at most %d sub-pipeline plans; the dry run of pipeline %s shows this one",
			protocol.MaxDryRunChildPlans, ref)
		return warnings, nil
	}
	c.left--
	plan := protocol.DryRun{Valid: p.Valid, ExecutionPlan: []protocol.PlanStep{}, Warnings: nonNil(p.graph.warnings()), Errors: nonNil(p.Errors)}
	if p.graph.Cycle == nil && len(p.graph.Tasks) > 0 {
		steps := p.graph.plan()
		describeNodes(steps, p.graph)
		below, err := c.expand(ctx, steps, append(slices.Clone(chain), ref))
		if err != nil {
			return nil, err
		}
		plan.Warnings = append(plan.Warnings, below...)
		for _, s := range steps {
			plan.ExecutionPlan = append(plan.ExecutionPlan, protocol.PlanStep(s))
		}
		for _, w := range below {
			warnings = append(warnings, fmt.Sprintf("sub-pipeline node %q (pipeline %s): %s", taskID, ref, w))
		}
	}
	n.Plan = &plan
	return warnings, nil
}
