package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Map nodes (issue 15, item 1; docs/dynamic-pipelines.md): a pipeline's nodes configuration
// declares which nodes are map nodes. This file validates declarations and attaches them to a
// pipeline's structure.

// MaxMapItems is the default of MAP_MAX_ITEMS (Config.MapMaxItems): the most items a map node
// may declare (maxItems), and its maxItems when it declares none.
const MaxMapItems = defaults.MapMaxItems

// MapMaxItemsLimit bounds MAP_MAX_ITEMS.
const MapMaxItemsLimit = defaults.MaxMapMaxItems

// maxNodeConfigs bounds how many nodes one pipeline may configure.
const maxNodeConfigs = 1_000

// nodeError is a 400 with code, naming the node's field in details.
func nodeError(code, taskID, field, format string, args ...any) *Error {
	err := invalid(code, format, args...)
	err.Details = map[string]any{"field": "nodes." + taskID + field}
	return err
}

// validateNodes checks the pipeline's nodes declaration on its own (without the tasks): ids,
// pointers, bounds and refused options. It fills in maxItems' default, maxItems (the
// orchestrator's MAP_MAX_ITEMS), which also caps it.
func validateNodes(id string, def *protocol.PipelineDefinition, maxItems int) error {
	if len(def.Nodes) > maxNodeConfigs {
		return invalid("INVALID_NODES", "pipeline %q: nodes configures %d nodes; at most %d", id, len(def.Nodes), maxNodeConfigs)
	}
	for _, taskID := range slices.Sorted(maps.Keys(def.Nodes)) {
		n := def.Nodes[taskID]
		if !idPattern.MatchString(taskID) {
			return nodeError("INVALID_NODES", taskID, "", "pipeline %q: nodes key %q is not a valid task id", id, taskID)
		}
		kinds := 0
		for _, set := range []bool{n.Map != nil, n.Pipeline != "", n.Spawn != nil} {
			if set {
				kinds++
			}
		}
		if kinds > 1 {
			return nodeError("INVALID_NODES", taskID, "", "pipeline %q: node %q declares more than one of \"map\", \"pipeline\" and \"spawn\"; a node config has exactly one", id, taskID)
		}
		if n.Spawn != nil {
			if err := validateSpawnNode(id, taskID, n.Spawn, maxItems); err != nil {
				return err
			}
			continue
		}
		if n.Pipeline != "" {
			if err := validateSubNode(id, taskID, n.Pipeline, def); err != nil {
				return err
			}
			continue
		}
		m := n.Map
		if m == nil {
			return nodeError("INVALID_NODES", taskID, "", "pipeline %q: node %q declares nothing (a node config must have \"map\", \"pipeline\" or \"spawn\")", id, taskID)
		}
		if m.MaxConcurrency != nil && (*m.MaxConcurrency < 1 || *m.MaxConcurrency > MaxInt4) {
			return nodeError("MAP_MAX_CONCURRENCY_INVALID", taskID, ".map.maxConcurrency",
				"pipeline %q: node %q: maxConcurrency must be an integer between 1 and %d, not %d", id, taskID, MaxInt4, *m.MaxConcurrency)
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
			m.MaxItems = maxItems
		}
		if m.MaxItems < 1 || m.MaxItems > maxItems {
			return nodeError("MAP_MAX_ITEMS_INVALID", taskID, ".map.maxItems",
				"pipeline %q: node %q: maxItems must be an integer between 1 and %d (MAP_MAX_ITEMS), not %d", id, taskID, maxItems, m.MaxItems)
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
		if nodes[taskID].Spawn != nil && g.Tasks[taskID] == nil {
			out = append(out, nodeError("SPAWN_NODE_UNKNOWN", taskID, "",
				"spawn node %q is not a task of the pipeline (not registered, or not reachable from an entry task)", taskID))
		}
		if nodes[taskID].Pipeline != "" && g.Tasks[taskID] == nil {
			out = append(out, nodeError("SUB_PIPELINE_NODE_UNKNOWN", taskID, "",
				"sub-pipeline node %q is not a task of the pipeline (not registered, or not reachable from an entry task)", taskID))
		}
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
		if n := g.Tasks[taskID]; n != nil && c.Pipeline != "" {
			n.Pipeline = c.Pipeline
		}
		if n := g.Tasks[taskID]; n != nil && c.Spawn != nil {
			sp := *c.Spawn
			n.Spawn = &sp
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

// Map node errors on a run: the map row fails with them.
const (
	// MapItemsInvalid: the items pointer does not resolve in the over task's output, or what it
	// selects is not an array.
	MapItemsInvalid = "MAP_ITEMS_INVALID"
	// MapTooLarge: the array has more elements than the node's maxItems.
	MapTooLarge = "MAP_TOO_LARGE"
	// MapItemFailed: an item failed for good in fail-fast mode.
	MapItemFailed = "MAP_ITEM_FAILED"
	// MapItemsFailed marks a map row that completed (continue, partial-merge) with failed items:
	// FinishPipelineRunIfDone counts it as a failure too.
	MapItemsFailed = "MAP_ITEMS_FAILED"
)

// mapBatch is how many item rows one INSERT writes.
const mapBatch = 1_000

// maxMapSource bounds the stored output a map reads its items from.
const maxMapSource = 64 << 20

// isItem says whether resolution r of run is an item of a map node: a map node's own row never
// goes to a worker, so any other resolution of its task is one of its items.
func isItem(run *lockedRun, r resolution) bool {
	n := run.snap.Tasks[r.taskID]
	return n != nil && n.Map != nil && !r.mapRow
}

// resolveItems turns the resolutions of map items into those of their map rows: each item
// counts its map row down (MapItemsResolved); the map row resolves when its last item does
// (completed, with the items' outputs), or at once when an item fails in fail-fast mode. Other
// resolutions pass through unchanged.
func (e *Engine) resolveItems(ctx context.Context, tx dbtx, run *lockedRun, resolved []resolution) ([]resolution, error) {
	out, order, byTask := tallyResolutions(resolved, func(r resolution) string {
		if isItem(run, r) {
			return r.taskID
		}
		return ""
	})
	for _, taskID := range order {
		t := byTask[taskID]
		row, err := queries.MapItemsResolved(ctx, tx, dbsqlc.MapItemsResolvedParams{PipelineRunID: run.id, TaskID: taskID, N: t.n})
		if errors.Is(err, database.ErrNotFound) {
			continue // the map row is no longer open (cancelled, or failed already)
		}
		if err != nil {
			return nil, fmt.Errorf("count down the map row of %s in %s: %w", taskID, run.id, err)
		}
		switch {
		case run.mode == FailFast && t.failed > 0:
			msg := fmt.Sprintf("an item of map node %s failed (fail-fast)", taskID)
			if err := endMapRowFailed(ctx, tx, row.ID, MapItemFailed, msg); err != nil {
				return nil, err
			}
			out = append(out, resolution{taskID: taskID, failed: true, mapRow: true})
		case row.ItemsLeft != nil && *row.ItemsLeft <= 0:
			if err := e.completeMapRow(ctx, tx, run.id, taskID, row.ID); err != nil {
				return nil, err
			}
			out = append(out, resolution{taskID: taskID, completed: true, mapRow: true})
		}
	}
	return out, nil
}

// tally counts the resolutions of one node's items (or spawned runs), and the failed ones.
type tally struct{ n, failed int }

// tallyResolutions splits resolved: those whose key is "" are returned as they are (rest); the
// others are counted per key (counts), keys in the order first seen.
func tallyResolutions(resolved []resolution, key func(resolution) string) (rest []resolution, keys []string, counts map[string]*tally) {
	counts = map[string]*tally{}
	for _, r := range resolved {
		k := key(r)
		if k == "" {
			rest = append(rest, r)
			continue
		}
		t := counts[k]
		if t == nil {
			t = &tally{}
			counts[k] = t
			keys = append(keys, k)
		}
		t.n++
		if r.failed {
			t.failed++
		}
	}
	return rest, keys, counts
}

func endMapRowFailed(ctx context.Context, tx dbtx, id, code, msg string) error {
	if err := queries.EndMapRow(ctx, tx, dbsqlc.EndMapRowParams{ID: id, Status: string(protocol.StatusFailed), Error: &msg, ErrorCode: &code}); err != nil {
		return fmt.Errorf("fail map row %s: %w", id, err)
	}
	return nil
}

// completeMapRow completes map row id of node taskID with the JSON array of its items' outputs
// in index order: an item's inline output, {"outputPath": ...} for one stored, null for an item
// that did not complete. The array is inline up to InlineMax bytes, else stored at the map
// row's output path. Failed items mark the row MAP_ITEMS_FAILED (its error lists them).
func (e *Engine) completeMapRow(ctx context.Context, tx dbtx, runID, taskID, id string) error {
	items, err := queries.MapItemOutputs(ctx, tx, dbsqlc.MapItemOutputsParams{PipelineRunID: runID, TaskID: taskID})
	if err != nil {
		return fmt.Errorf("read the items of %s: %w", id, err)
	}
	var buf bytes.Buffer
	failed, err := writeItems(&buf, items)
	if err != nil {
		return fmt.Errorf("encode the outputs of the items of %s: %w", id, err)
	}
	p, err := e.nodeOutput(ctx, id, protocol.OutputPath(id), buf.Bytes())
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		code, msg := MapItemsFailed, fmt.Sprintf("%d of %d items failed: %s", len(failed), len(items), strings.Join(failed, ", "))
		p.Error, p.ErrorCode = &msg, &code
	}
	if err := queries.EndMapRow(ctx, tx, p); err != nil {
		return fmt.Errorf("complete map row %s: %w", id, err)
	}
	return nil
}

// nodeOutput is the completion of node row id (a map row, a spawning row, a sub-pipeline node)
// with output data: inline up to InlineMax bytes, else stored at path first.
func (e *Engine) nodeOutput(ctx context.Context, id, path string, data []byte) (dbsqlc.EndMapRowParams, error) {
	size := int64(len(data))
	p := dbsqlc.EndMapRowParams{ID: id, Status: string(protocol.StatusCompleted), OutputPath: &path, OutputSize: &size}
	if size <= e.cfg.InlineMax {
		p.Output = data
		return p, nil
	}
	_, backend := e.storage.Default()
	if err := storage.PutBytes(ctx, backend, path, data, inlineContentType); err != nil {
		return p, storageFailed(fmt.Errorf("store the output of node row %s: %w", id, err))
	}
	return p, nil
}

// writeItems writes the JSON array of items' outputs in their order (writeRef; null for one
// that did not complete) and returns the indexes of those that did not.
func writeItems(buf *bytes.Buffer, items []dbsqlc.MapItemOutputsRow) (failed []string, err error) {
	buf.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		if it.Status != protocol.StatusCompleted {
			buf.WriteString("null")
			failed = append(failed, strconv.Itoa(it.ItemIndex))
			continue
		}
		if err := writeRef(buf, it.Output, it.OutputPath); err != nil {
			return nil, fmt.Errorf("item %d: %w", it.ItemIndex, err)
		}
	}
	buf.WriteByte(']')
	return failed, nil
}

// writeRef writes an output to buf: inline, {"outputPath": path} when stored, null when none.
func writeRef(buf *bytes.Buffer, inline []byte, path string) error {
	switch {
	case inline != nil:
		buf.Write(inline)
	case path != "":
		ref, err := json.Marshal(map[string]string{"outputPath": path})
		if err != nil {
			return err
		}
		buf.Write(ref)
	default:
		buf.WriteString("null")
	}
	return nil
}

// fanOut starts map node taskID of run, which the advance just made pending: it reads the over
// task's output, selects the items, and inserts one pending item row per element (batches of
// mapBatch), the map row going back to waiting with its counters. A bad items value fails the
// map row (MAP_ITEMS_INVALID, MAP_TOO_LARGE), an empty array completes it with []: both are
// returned as the map row's resolution (nil when items were inserted).
func (e *Engine) fanOut(ctx context.Context, tx dbtx, run *lockedRun, taskID string) (*resolution, error) {
	m := run.snap.Tasks[taskID].Map
	row, err := queries.MapOverOutput(ctx, tx, dbsqlc.MapOverOutputParams{PipelineRunID: run.id, TaskID: taskID})
	if err != nil {
		return nil, fmt.Errorf("read map row %s of %s: %w", taskID, run.id, err)
	}
	fail := func(code, format string, args ...any) (*resolution, error) {
		if err := endMapRowFailed(ctx, tx, row.ID, code, fmt.Sprintf(format, args...)); err != nil {
			return nil, err
		}
		return &resolution{taskID: taskID, failed: true, mapRow: true}, nil
	}
	over, err := queries.MapOverOutput(ctx, tx, dbsqlc.MapOverOutputParams{PipelineRunID: run.id, TaskID: m.Over})
	if err != nil && !errors.Is(err, database.ErrNotFound) {
		return nil, fmt.Errorf("read the output of %s in %s: %w", m.Over, run.id, err)
	}
	if err != nil || over.Status != protocol.StatusCompleted {
		return fail(MapItemsInvalid, "map node %s: %s did not complete: there are no items at %q", taskID, m.Over, m.Items)
	}
	doc := over.Output
	if doc == nil && over.OutputPath != "" {
		var problem string
		if doc, problem, err = e.readStored(ctx, over.OutputPath); err != nil {
			return nil, err
		}
		if problem != "" {
			return fail(MapItemsInvalid, "map node %s: items %q: the output of %s %s", taskID, m.Items, m.Over, problem)
		}
	}
	items, code, msg := selectItems(doc, m)
	if code != "" {
		return fail(code, "map node %s: %s", taskID, msg)
	}
	if len(items) == 0 {
		// The empty array, inline or stored as any map output (INLINE_PAYLOAD_MAX_BYTES).
		p, err := e.nodeOutput(ctx, row.ID, protocol.OutputPath(row.ID), []byte("[]"))
		if err != nil {
			return nil, err
		}
		if err := queries.EndMapRow(ctx, tx, p); err != nil {
			return nil, fmt.Errorf("complete map row %s: %w", row.ID, err)
		}
		return &resolution{taskID: taskID, completed: true, mapRow: true}, nil
	}
	if err := queries.StartMapRow(ctx, tx, dbsqlc.StartMapRowParams{ID: row.ID, N: len(items)}); err != nil {
		return nil, fmt.Errorf("start map row %s: %w", row.ID, err)
	}
	if m.MaxConcurrency != nil {
		// Bounded items are ClaimFlowControl's: this engine's claims use it from now on (other
		// instances' within flowControlRecheck; their plain claim leaves the items alone).
		e.flowControlOn()
	}
	p := dbsqlc.InsertMapItemsParams{MapRowID: row.ID, IDs: make([]string, len(items)), InputPaths: make([]string, len(items)),
		Inputs: make([][]byte, len(items)), ItemIndexes: make([]int, len(items))}
	stored := make([][]byte, len(items))
	for i, item := range items {
		id := ids.New(ids.TaskRun)
		p.IDs[i], p.InputPaths[i], p.ItemIndexes[i] = id, protocol.StandaloneInputPath(id), i
		if data, inline := e.inlineInput(item); inline {
			p.Inputs[i] = data
		} else {
			stored[i] = data
		}
	}
	if err := e.storeInputs(ctx, row.ID, "item", p.InputPaths, stored); err != nil {
		return nil, err
	}
	for start := 0; start < len(items); start += mapBatch {
		end := min(start+mapBatch, len(items))
		batch := dbsqlc.InsertMapItemsParams{MapRowID: row.ID, IDs: p.IDs[start:end], InputPaths: p.InputPaths[start:end],
			Inputs: p.Inputs[start:end], ItemIndexes: p.ItemIndexes[start:end], MapConcurrency: m.MaxConcurrency}
		if err := queries.InsertMapItems(ctx, tx, batch); err != nil {
			return nil, fmt.Errorf("insert the items of %s: %w", row.ID, err)
		}
	}
	e.fannedOut(len(items))
	return nil, nil
}

// readStored reads the stored output at path. An output that is missing or longer than
// maxMapSource is a problem of the run (problem says which), not an error.
func (e *Engine) readStored(ctx context.Context, path string) (data []byte, problem string, err error) {
	_, backend := e.storage.Default()
	data, err = readSmall(ctx, backend, path, maxMapSource)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Sprintf("is missing from storage (%s)", path), nil
	case errors.Is(err, errTooBig):
		return nil, fmt.Sprintf("is longer than %d bytes", maxMapSource), nil
	case err != nil:
		return nil, "", storageFailed(err)
	}
	return data, "", nil
}

// selectItems resolves m's items pointer in doc (nil: no output) and splits the array it
// selects into its elements; a problem is returned as an error code and message.
func selectItems(doc []byte, m *protocol.MapConfig) ([]json.RawMessage, string, string) {
	tokens, err := parseItemsPointer(m.Items)
	if err != nil {
		return nil, MapItemsInvalid, fmt.Sprintf("items %q: %v", m.Items, err)
	}
	if doc == nil {
		return nil, MapItemsInvalid, fmt.Sprintf("items %q: %s has no output", m.Items, m.Over)
	}
	v, ok := lookupValue(doc, tokens)
	if !ok {
		return nil, MapItemsInvalid, fmt.Sprintf("items %q does not resolve in the output of %s", m.Items, m.Over)
	}
	var items []json.RawMessage
	if kind := jsonKind(v); kind != "array" {
		return nil, MapItemsInvalid, fmt.Sprintf("items %q selects a JSON %s in the output of %s, not an array", m.Items, kind, m.Over)
	}
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, MapItemsInvalid, fmt.Sprintf("items %q: the array does not decode: %v", m.Items, err)
	}
	if len(items) > m.MaxItems {
		return nil, MapTooLarge, fmt.Sprintf("items %q has %d elements; maxItems is %d", m.Items, len(items), m.MaxItems)
	}
	return items, "", ""
}

// lookupValue is the value tokens select in doc (nil tokens: doc itself), null included.
func lookupValue(doc []byte, tokens []string) (json.RawMessage, bool) {
	cur := json.RawMessage(doc)
	for _, t := range tokens {
		switch jsonKind(cur) {
		case "object":
			var obj map[string]json.RawMessage
			if json.Unmarshal(cur, &obj) != nil {
				return nil, false
			}
			v, ok := obj[t]
			if !ok {
				return nil, false
			}
			cur = v
		case "array":
			var arr []json.RawMessage
			if json.Unmarshal(cur, &arr) != nil {
				return nil, false
			}
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 || n >= len(arr) || (len(t) > 1 && t[0] == '0') {
				return nil, false
			}
			cur = arr[n]
		default:
			return nil, false
		}
	}
	return cur, true
}

// jsonKind names the JSON type of the value v.
func jsonKind(v []byte) string {
	s := bytes.TrimLeft(v, " \t\r\n")
	if len(s) == 0 {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}
