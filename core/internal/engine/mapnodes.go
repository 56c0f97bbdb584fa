package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Map nodes (issue 15, item 1; docs/dynamic-pipelines.md): a pipeline's nodes configuration
// declares which nodes are map nodes. This file validates declarations and attaches them to a
// pipeline's structure.

// MaxMapItems is the most items a map node may declare (maxItems) and its default.
const MaxMapItems = 10_000

// maxNodeConfigs bounds how many nodes one pipeline may configure.
const maxNodeConfigs = 1_000

// nodeError is a 400 with code, naming the node's field in details.
func nodeError(code, taskID, field, format string, args ...any) *Error {
	err := invalid(code, format, args...)
	err.Details = map[string]any{"field": "nodes." + taskID + field}
	return err
}

// validateNodes checks the pipeline's nodes declaration on its own (without the tasks): ids,
// pointers, bounds and refused options. It fills in maxItems' default.
func validateNodes(id string, def *protocol.PipelineDefinition) error {
	if len(def.Nodes) > maxNodeConfigs {
		return invalid("INVALID_NODES", "pipeline %q: nodes configures %d nodes; at most %d", id, len(def.Nodes), maxNodeConfigs)
	}
	for _, taskID := range slices.Sorted(maps.Keys(def.Nodes)) {
		n := def.Nodes[taskID]
		if !idPattern.MatchString(taskID) {
			return nodeError("INVALID_NODES", taskID, "", "pipeline %q: nodes key %q is not a valid task id", id, taskID)
		}
		m := n.Map
		if m == nil {
			return nodeError("INVALID_NODES", taskID, "", "pipeline %q: node %q declares nothing (a node config must have \"map\")", id, taskID)
		}
		if len(m.MaxConcurrency) > 0 {
			return nodeError("MAP_OPTION_UNSUPPORTED", taskID, ".map.maxConcurrency",
				"pipeline %q: node %q: maxConcurrency is not supported yet (items are not bounded in flight); remove it", id, taskID)
		}
		if slices.Contains(def.EntryTasks, taskID) {
			return nodeError("MAP_ON_ENTRY_TASK", taskID, ".map", "pipeline %q: entry task %q cannot be a map node (it has no predecessor to map over)", id, taskID)
		}
		if !idPattern.MatchString(m.Over) {
			return nodeError("MAP_OVER_INVALID", taskID, ".map.over", "pipeline %q: node %q: over %q is not a valid task id", id, taskID, m.Over)
		}
		if m.Over == taskID {
			return nodeError("MAP_OVER_NOT_PREDECESSOR", taskID, ".map.over", "pipeline %q: node %q cannot map over itself", id, taskID)
		}
		if _, err := parseItemsPointer(m.Items); err != nil {
			return nodeError("MAP_ITEMS_POINTER_INVALID", taskID, ".map.items", "pipeline %q: node %q: items: %v", id, taskID, err)
		}
		if m.MaxItems == 0 {
			m.MaxItems = MaxMapItems
		}
		if m.MaxItems < 1 || m.MaxItems > MaxMapItems {
			return nodeError("MAP_MAX_ITEMS_INVALID", taskID, ".map.maxItems", "pipeline %q: node %q: maxItems must be between 1 and %d, not %d",
				id, taskID, MaxMapItems, m.MaxItems)
		}
	}
	return nil
}

// parseItemsPointer parses a map's items pointer: an RFC 6901 pointer, where "" is the whole
// output.
func parseItemsPointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	return ParsePointer(p)
}

// checkNodesAgainst checks the nodes declaration against the pipeline's structure g: every
// configured node is a task of the pipeline and maps over one of its direct predecessors. It
// returns the first problem as a 400, nil when there is none.
func checkNodesAgainst(id string, nodes map[string]protocol.NodeConfig, g *Graph) *Error {
	if problems := nodeProblems(nodes, g); len(problems) > 0 {
		problems[0].Msg = fmt.Sprintf("pipeline %q: %s", id, problems[0].Msg)
		return problems[0]
	}
	return nil
}

// nodeProblems lists the nodes declaration's problems against structure g, in task id order.
func nodeProblems(nodes map[string]protocol.NodeConfig, g *Graph) []*Error {
	var out []*Error
	for _, taskID := range slices.Sorted(maps.Keys(nodes)) {
		m := nodes[taskID].Map
		if m == nil {
			continue
		}
		n := g.Tasks[taskID]
		if n == nil {
			out = append(out, nodeError("MAP_NODE_UNKNOWN", taskID, "",
				"map node %q is not a task of the pipeline (not registered, or not reachable from an entry task)", taskID))
			continue
		}
		if !slices.Contains(n.Predecessors, m.Over) {
			preds := "none"
			if len(n.Predecessors) > 0 {
				preds = strings.Join(n.Predecessors, ", ")
			}
			out = append(out, nodeError("MAP_OVER_NOT_PREDECESSOR", taskID, ".map.over",
				"map node %q: over %q is not a direct predecessor of the node (its predecessors: %s)", taskID, m.Over, preds))
		}
	}
	return out
}

// attachNodes sets each configured node's map declaration on the structure's node.
func attachNodes(nodes map[string]protocol.NodeConfig, g *Graph) {
	for taskID, c := range nodes {
		if n := g.Tasks[taskID]; n != nil && c.Map != nil {
			m := *c.Map
			n.Map = &m
		}
	}
}

// decodeNodes reads a pipeline's stored nodes column (NULL: none).
func decodeNodes(raw []byte) (map[string]protocol.NodeConfig, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var nodes map[string]protocol.NodeConfig
	if err := json.Unmarshal(raw, &nodes); err != nil {
		return nil, fmt.Errorf("decode nodes: %w", err)
	}
	return nodes, nil
}

// encodeNodes is the nodes column for a declaration (nil: none).
func encodeNodes(nodes map[string]protocol.NodeConfig) ([]byte, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(nodes)
	if err != nil {
		return nil, fmt.Errorf("encode nodes: %w", err)
	}
	return data, nil
}

// hasMapNodes says whether structure g has a map node.
func hasMapNodes(g *Graph) bool {
	for _, n := range g.Tasks {
		if n != nil && n.Map != nil {
			return true
		}
	}
	return false
}

// checkDeclaredNodes checks the nodes declarations of a registration's pipelines against the
// tasks registered now, the registration's own included (tx has saved them): a problem is a 400
// that rolls the registration back.
func (e *Engine) checkDeclaredNodes(ctx context.Context, tx dbtx, pipelines []protocol.PipelineDefinition) error {
	var tasks map[string]taskInfo
	for _, p := range pipelines {
		if len(p.Nodes) == 0 {
			continue
		}
		if tasks == nil {
			var err error
			if tasks, _, err = e.activeTasks(ctx, tx); err != nil {
				return err
			}
		}
		if err := checkNodesAgainst(p.ID, p.Nodes, buildGraph(p.EntryTasks, tasks)); err != nil {
			return err
		}
	}
	return nil
}
