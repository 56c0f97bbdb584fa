package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Map node views (issue 15, item 4): the dry run's description of map (and sub-pipeline) nodes, a run's map nodes
// with their items counted by state, and a page of one map node's items. Nothing here runs on
// the claim, enqueue, trigger or callback paths.

// describeNodes marks the map, sub-pipeline and spawn nodes of each step of a plan of g.
func describeNodes(steps []PlanStep, g *Graph) {
	for i := range steps {
		for _, id := range steps[i].Tasks {
			n := g.Tasks[id]
			var node protocol.PlanNode
			switch {
			case n == nil:
				continue
			case n.Map != nil:
				m := *n.Map
				node = protocol.PlanNode{Type: "map", Map: &m, ItemCount: protocol.ItemCountUnknown}
			case n.Pipeline != "":
				node = protocol.PlanNode{Type: "pipeline", Pipeline: n.Pipeline}
			case n.Spawn != nil:
				sp := *n.Spawn
				node = protocol.PlanNode{Type: "spawn", Spawn: &sp, ItemCount: protocol.ItemCountUnknown}
			default:
				continue
			}
			if steps[i].Nodes == nil {
				steps[i].Nodes = map[string]protocol.PlanNode{}
			}
			steps[i].Nodes[id] = node
		}
	}
}

// mapTasks lists the map nodes of a run's snapshot in task id order, with their declarations.
func mapTasks(raw json.RawMessage) ([]string, map[string]*protocol.MapConfig, error) {
	if len(raw) == 0 {
		return nil, nil, nil
	}
	var snap snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return nil, nil, fmt.Errorf("decode the run's snapshot: %w", err)
	}
	var ids []string
	maps := map[string]*protocol.MapConfig{}
	for id, n := range snap.Tasks {
		if n != nil && n.Map != nil {
			ids = append(ids, id)
			maps[id] = n.Map
		}
	}
	slices.Sort(ids)
	return ids, maps, nil
}

// mapNodeStates reads the map nodes of run id (snapshot snap) with one grouped query over
// their rows (the index task_runs_pipeline_node): nil when the run has none, without a query.
func (e *Engine) mapNodeStates(ctx context.Context, id string, snap json.RawMessage) ([]protocol.MapNodeState, error) {
	ids, decl, err := mapTasks(snap)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	rows, err := queries.MapNodeCounts(ctx, e.db, dbsqlc.MapNodeCountsParams{PipelineRunID: id, TaskIDs: ids})
	if err != nil {
		return nil, fmt.Errorf("count the map items of %s: %w", id, err)
	}
	out := make([]protocol.MapNodeState, len(ids))
	at := map[string]*protocol.MapNodeState{}
	for i, taskID := range ids {
		counts := make(map[protocol.TaskRunStatus]int, len(protocol.MapItemStates))
		for _, st := range protocol.MapItemStates {
			counts[st] = 0
		}
		out[i] = protocol.MapNodeState{TaskID: taskID, Map: *decl[taskID], Counts: counts}
		at[taskID] = &out[i]
	}
	for _, r := range rows {
		s := at[r.TaskID]
		if !r.MapRow {
			s.Counts[r.Status] += r.N
			continue
		}
		s.MapRunID, s.Status = r.ID, r.Status
		if r.ItemsTotal >= 0 {
			total := r.ItemsTotal
			s.ItemsTotal = &total
		}
	}
	return out, nil
}

// runTaskRows reads the task runs of pipeline run id: all of them, or (items false) all but
// the items of map nodes.
func (e *Engine) runTaskRows(ctx context.Context, id string, items bool) ([]dbsqlc.PipelineRunTaskRunsRow, error) {
	return queries.PipelineRunTaskRuns(ctx, e.db, dbsqlc.PipelineRunTaskRunsParams{PipelineRunID: id, Items: items})
}

// MapItemsFilter selects a page of a map node's items: Status ("" = any), Cursor (the last
// item index of the previous page, "" = from the first), Limit (0 = 50, at most
// protocol.MaxPageSize).
type MapItemsFilter struct {
	Status, Cursor string
	Limit          int
}

// itemCursor is a map items cursor: an item index.
var itemCursor = regexp.MustCompile(`^(0|[1-9][0-9]{0,5})$`)

// MapItems lists the items of map node taskID of pipeline run runID in index order, a page at
// a time (GET /api/runs/{id}/maps/{taskId}/items). 404 PIPELINE_RUN_NOT_FOUND, 404
// MAP_NODE_NOT_FOUND when taskID is not a map node of the run; 400 INVALID_STATUS,
// INVALID_LIMIT, INVALID_CURSOR.
func (e *Engine) MapItems(ctx context.Context, runID, taskID string, f MapItemsFilter) (Page[protocol.MapItem], error) {
	if f.Status != "" && !protocol.TaskRunStatus(f.Status).Valid() {
		return Page[protocol.MapItem]{}, invalid("INVALID_STATUS", "status must be one of %v", protocol.TaskRunStatuses)
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return Page[protocol.MapItem]{}, err
	}
	after := -1
	if f.Cursor != "" {
		if !itemCursor.MatchString(f.Cursor) {
			return Page[protocol.MapItem]{}, invalid("INVALID_CURSOR", "cursor is not a cursor this API returned (use nextCursor of the previous page)")
		}
		after, _ = strconv.Atoi(f.Cursor)
	}
	if !idPattern.MatchString(runID) {
		return Page[protocol.MapItem]{}, notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", runID)
	}
	row, err := queries.PipelineRunGet(ctx, e.db, runID)
	if errors.Is(err, database.ErrNotFound) {
		return Page[protocol.MapItem]{}, notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", runID)
	}
	if err != nil {
		return Page[protocol.MapItem]{}, fmt.Errorf("read pipeline run %s: %w", runID, err)
	}
	_, decl, err := mapTasks(row.Snapshot)
	if err != nil {
		return Page[protocol.MapItem]{}, fmt.Errorf("read pipeline run %s: %w", runID, err)
	}
	if decl[taskID] == nil {
		return Page[protocol.MapItem]{}, notFound("MAP_NODE_NOT_FOUND", "pipeline run %q has no map node %q", runID, taskID)
	}
	rows, err := queries.MapItemsPage(ctx, e.db, dbsqlc.MapItemsPageParams{PipelineRunID: runID, TaskID: taskID, After: after,
		Status: f.Status, Max: limit + 1})
	if err != nil {
		return Page[protocol.MapItem]{}, fmt.Errorf("list the items of %s in %s: %w", taskID, runID, err)
	}
	items := make([]protocol.MapItem, len(rows))
	for i, r := range rows {
		items[i] = protocol.MapItem{ItemIndex: r.ItemIndex, RunID: r.ID, Status: r.Status, Attempt: r.Attempt, Error: nonEmpty(r.Error),
			ErrorCode: nonEmpty(r.ErrorCode), InputPath: r.InputPath, OutputPath: nonEmpty(r.OutputPath), StartedAt: r.StartedAt,
			CompletedAt: r.CompletedAt, UpdatedAt: r.UpdatedAt}
	}
	return paginate(items, limit, func(it protocol.MapItem) string { return strconv.Itoa(it.ItemIndex) }), nil
}
