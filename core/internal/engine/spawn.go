package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Spawn nodes (issue 15, item 1's last part; docs/dynamic-pipelines.md, migration 018): a node
// declared nodes.<taskId>.spawn may, in its run's success callback, spawn task runs known only
// at run time (CallbackRequest.Spawn). Its row keeps its own output but waits (items_total,
// items_left, as a map row does) until every spawned run resolved; each spawned run is a row of
// the pipeline run with item_index set (left out of the tally and of upstream reads) and
// spawned_by naming the spawning row, which its resolution counts down.

// Spawn error codes.
const (
	// SpawnItemFailed: a spawned run failed for good in fail-fast mode; its spawning row fails.
	SpawnItemFailed = "SPAWN_ITEM_FAILED"
	// SpawnItemsFailed marks a spawning row that completed (continue, partial-merge) with
	// failed spawned runs: FinishPipelineRunIfDone counts it as a failure too.
	SpawnItemsFailed = "SPAWN_ITEMS_FAILED"
)

// SpawnedOutputPath is where the output of a spawning row is stored when it is too large to be
// inline: {"output": ..., "items": [...]}, beside (never over) the run's own output.
func SpawnedOutputPath(runID string) string { return "runs/" + runID + "/spawned.json" }

// validateSpawnNode checks a spawn declaration on its own, filling in maxItems' default.
func validateSpawnNode(id, taskID string, s *protocol.SpawnConfig, maxItems int) error {
	if s.MaxConcurrency != nil && (*s.MaxConcurrency < 1 || *s.MaxConcurrency > MaxInt4) {
		return nodeError("SPAWN_MAX_CONCURRENCY_INVALID", taskID, ".spawn.maxConcurrency",
			"pipeline %q: node %q: maxConcurrency must be an integer between 1 and %d, not %d", id, taskID, MaxInt4, *s.MaxConcurrency)
	}
	if s.MaxItems == 0 {
		s.MaxItems = maxItems
	}
	if s.MaxItems < 1 || s.MaxItems > maxItems {
		return nodeError("SPAWN_MAX_ITEMS_INVALID", taskID, ".spawn.maxItems",
			"pipeline %q: node %q: maxItems must be an integer between 1 and %d (MAP_MAX_ITEMS), not %d", id, taskID, maxItems, s.MaxItems)
	}
	return nil
}

// spawnPlan is a checked spawn of a success callback: the rows to insert, their inputs stored
// already when they are not inline. It travels with the callback in WorkerCall.
type spawnPlan struct {
	pipelineRunID string
	p             dbsqlc.InsertSpawnedParams
	// mapItem: the callback is a map item's, spawning more items of its own map (task taskID,
	// at most maxItems in all, bounded by mapConcurrency).
	mapItem        bool
	taskID         string
	maxItems       int
	mapConcurrency *int
	// inserted: a transaction inserted the rows (it may have rolled back since).
	inserted bool
	// mapRow is the waiting map row a map item's spawn grows, as checkMapGrowth found it in the
	// callback's transaction ("" = none waits).
	mapRow string
}

// dropUnspawned removes the inputs plan stored when its rows were certainly not inserted: the
// callback was answered (err nil or an engine answer: a refusal, a stale lease, a duplicate, a
// run the cancel of its pipeline run ended first) and no transaction inserted them. When the
// outcome is unknown (the database out of reach) they stay, unreferenced at worst.
func (e *Engine) dropUnspawned(ctx context.Context, plan *spawnPlan, err error) {
	var answer *Error
	if plan.inserted || (err != nil && !errors.As(err, &answer)) {
		return
	}
	var stored []string
	for i, input := range plan.p.Inputs {
		if input == nil { // not inline: checkSpawn stored it
			stored = append(stored, plan.p.InputPaths[i])
		}
	}
	if len(stored) > 0 {
		_, backend := e.storage.Default()
		e.removeObjects(ctx, backend, stored)
	}
}

// spawnError is a 400 naming the callback's field.
func spawnError(code, field, format string, args ...any) *Error {
	err := invalid(code, format, args...)
	err.Details = map[string]any{"field": field}
	return err
}

// checkSpawn checks the spawn of success callback cb of run runID and prepares its rows (nil
// when it spawns nothing): the run must be a spawn node's own run, each task one of the spawning
// task's service, the count within the node's maxItems. Inputs over InlineMax are stored now (a
// callback refused later, a stale lease say, leaves them behind unreferenced). Nothing is
// written to the database.
func (e *Engine) checkSpawn(ctx context.Context, runID string, cb *protocol.CallbackRequest) (*spawnPlan, error) {
	if cb.Status != protocol.CallbackSuccess || len(cb.Spawn) == 0 {
		return nil, nil
	}
	n := len(cb.Spawn)
	if n > e.cfg.MapMaxItems {
		return nil, spawnError("SPAWN_TOO_MANY", "spawn", "spawn has %d entries; at most %d (MAP_MAX_ITEMS)", n, e.cfg.MapMaxItems)
	}
	for i, s := range cb.Spawn {
		if !idPattern.MatchString(s.TaskID) {
			return nil, spawnError("SPAWN_TASK_UNKNOWN", fmt.Sprintf("spawn[%d].taskId", i), "spawn[%d].taskId %q is not a valid task id", i, s.TaskID)
		}
	}
	src, err := queries.SpawnSource(ctx, e.db, runID)
	if errors.Is(err, database.ErrNotFound) {
		return nil, notFound("RUN_NOT_FOUND", "task run %q not found", runID)
	}
	if err != nil {
		return nil, fmt.Errorf("read the spawning run %s: %w", runID, err)
	}
	if src.Status != protocol.StatusDispatching && src.Status != protocol.StatusRunning {
		// The run has ended (a callback sent again, or late): nothing will be spawned, so nothing
		// is stored; the callback's own answer (a duplicate, 409) follows.
		return nil, nil
	}
	var mapDecl *protocol.MapConfig
	if src.IsItem && !src.IsSpawned && len(src.MapDecl) > 0 && string(src.MapDecl) != "null" {
		// A map item spawns more items of its own map.
		mapDecl = new(protocol.MapConfig)
		if err := json.Unmarshal(src.MapDecl, mapDecl); err != nil {
			return nil, fmt.Errorf("read the map declaration of %s: %w", runID, err)
		}
		for i, s := range cb.Spawn {
			if s.TaskID != src.TaskID {
				return nil, spawnError("SPAWN_TASK_UNKNOWN", fmt.Sprintf("spawn[%d].taskId", i),
					"spawn[%d].taskId %q: an item of map node %q may spawn only items of its own map (taskId %q)", i, s.TaskID, src.TaskID, src.TaskID)
			}
		}
		if n > mapDecl.MaxItems {
			return nil, spawnError("SPAWN_TOO_MANY", "spawn", "spawn has %d entries; map node %q allows at most %d items in all (map.maxItems)", n, src.TaskID, mapDecl.MaxItems)
		}
	} else if src.PipelineRunID == "" || src.IsItem || len(src.Spawn) == 0 || string(src.Spawn) == "null" {
		return nil, spawnError("SPAWN_NOT_DECLARED", "spawn",
			"run %q of task %q may not spawn: only the run of a node declared with \"spawn\" in its pipeline (nodes.<taskId>.spawn) may; send the callback again without spawn",
			runID, src.TaskID)
	}
	if mapDecl == nil {
		var decl protocol.SpawnConfig
		if err := json.Unmarshal(src.Spawn, &decl); err != nil {
			return nil, fmt.Errorf("read the spawn declaration of %s: %w", runID, err)
		}
		if decl.MaxItems > 0 && n > decl.MaxItems {
			return nil, spawnError("SPAWN_TOO_MANY", "spawn", "spawn has %d entries; node %q allows at most %d (spawn.maxItems)", n, src.TaskID, decl.MaxItems)
		}
	}
	var names []string
	seen := make(map[string]bool)
	for _, s := range cb.Spawn {
		if !seen[s.TaskID] {
			seen[s.TaskID] = true
			names = append(names, s.TaskID)
		}
	}
	rows, err := queries.SpawnTasks(ctx, e.db, dbsqlc.SpawnTasksParams{IDs: names, ServiceID: src.ServiceID})
	if err != nil {
		return nil, fmt.Errorf("read the tasks spawned by %s: %w", runID, err)
	}
	tasks := make(map[string]dbsqlc.SpawnTasksRow, len(rows))
	for _, r := range rows {
		tasks[r.ID] = r
	}
	plan := &spawnPlan{pipelineRunID: src.PipelineRunID, taskID: src.TaskID}
	if mapDecl != nil {
		plan.mapItem, plan.maxItems, plan.mapConcurrency = true, mapDecl.MaxItems, mapDecl.MaxConcurrency
	}
	p := &plan.p
	p.SpawnedBy = runID
	var stored [][]byte // the inputs too large to be inline, by entry (nil: inline)
	for i, s := range cb.Spawn {
		t, ok := tasks[s.TaskID]
		if !ok {
			return nil, spawnError("SPAWN_TASK_UNKNOWN", fmt.Sprintf("spawn[%d].taskId", i),
				"spawn[%d].taskId %q is not a task registered by service %q (a run may spawn only its own service's tasks)", i, s.TaskID, src.ServiceID)
		}
		id := ids.New(ids.TaskRun)
		data, inline := e.inlineInput(s.Input)
		var input, store []byte
		key := noConcurrencyKey
		if inline {
			input = data
		} else {
			store = data
		}
		// The key is read from the input whether it stays inline or is stored, as at enqueue.
		if k := concurrencyKeyOf(t.ConcurrencyKey, data); k != nil {
			key = *k
		}
		p.IDs, p.TaskIDs = append(p.IDs, id), append(p.TaskIDs, s.TaskID)
		p.InputPaths, p.Inputs = append(p.InputPaths, protocol.StandaloneInputPath(id)), append(p.Inputs, input)
		p.CodeVersions, p.CodeHashes = append(p.CodeVersions, t.CodeVersion), append(p.CodeHashes, t.CodeHash)
		p.ConcurrencyKeys, p.ItemIndexes = append(p.ConcurrencyKeys, key), append(p.ItemIndexes, i)
		stored = append(stored, store)
	}
	if err := e.storeInputs(ctx, runID, "spawn entry", p.InputPaths, stored); err != nil {
		return nil, err
	}
	return plan, nil
}

// startSpawned applies plan in the callback's transaction, after the callback completed the
// spawning row id: the row waits for the spawned runs, inserted pending. It reports whether it
// did; a pipeline run that is no longer running spawns nothing (the row stays completed).
func (e *Engine) startSpawned(ctx context.Context, tx dbtx, run *lockedRun, id string, plan *spawnPlan) (bool, error) {
	if run == nil || run.id != plan.pipelineRunID {
		return false, fmt.Errorf("spawning run %s: its pipeline run %s is not locked", id, plan.pipelineRunID)
	}
	if run.status != protocol.PipelineRunning {
		return false, nil
	}
	if plan.mapItem {
		return false, e.growMap(ctx, tx, run, plan)
	}
	n := len(plan.p.IDs)
	// With maxConcurrency, the runs past the bound are held until others resolve (resolveSpawned).
	bound := spawnBound(run, plan.taskID)
	plan.inserted = true // from here on, whatever happens to the transaction
	if err := queries.StartMapRow(ctx, tx, dbsqlc.StartMapRowParams{ID: id, N: n}); err != nil {
		return false, fmt.Errorf("start spawning row %s: %w", id, err)
	}
	for start := 0; start < n; start += mapBatch {
		end := min(start+mapBatch, n)
		p := plan.p
		batch := dbsqlc.InsertSpawnedParams{SpawnedBy: id, Bound: bound, IDs: p.IDs[start:end], TaskIDs: p.TaskIDs[start:end],
			InputPaths: p.InputPaths[start:end], Inputs: p.Inputs[start:end], CodeVersions: p.CodeVersions[start:end],
			CodeHashes: p.CodeHashes[start:end], ConcurrencyKeys: p.ConcurrencyKeys[start:end], ItemIndexes: p.ItemIndexes[start:end]}
		if err := queries.InsertSpawned(ctx, tx, batch); err != nil {
			return false, fmt.Errorf("insert the runs spawned by %s: %w", id, err)
		}
	}
	run.readied = true
	e.fannedOut(n)
	return true, nil
}

// spawnBound is spawn node taskID's maxConcurrency in run's snapshot (nil: none).
func spawnBound(run *lockedRun, taskID string) *int {
	if n := run.snap.Tasks[taskID]; n != nil && n.Spawn != nil {
		return n.Spawn.MaxConcurrency
	}
	return nil
}

// resolveSpawned turns the resolutions of spawned runs into those of their spawning rows: each
// counts its spawning row down (keyed by the row's id); the row resolves when its last spawned
// run does (completed, with the outputs), or at once when one fails in fail-fast mode. Other
// resolutions pass through unchanged.
func (e *Engine) resolveSpawned(ctx context.Context, tx dbtx, run *lockedRun, resolved []resolution) ([]resolution, error) {
	var runIDs []string
	for _, r := range resolved {
		if r.runID != "" && !r.mapRow {
			runIDs = append(runIDs, r.runID)
		}
	}
	if len(runIDs) == 0 {
		return resolved, nil
	}
	rows, err := queries.SpawnedBy(ctx, tx, runIDs)
	if err != nil {
		return nil, fmt.Errorf("read the spawning rows of %d runs of %s: %w", len(runIDs), run.id, err)
	}
	if len(rows) == 0 {
		return resolved, nil
	}
	by := make(map[string]string, len(rows))
	for _, r := range rows {
		by[r.ID] = r.SpawnedBy
	}
	out, order, counts := tallyResolutions(resolved, func(r resolution) string {
		if r.runID == "" || r.mapRow {
			return ""
		}
		return by[r.runID]
	})
	for _, id := range order {
		t := counts[id]
		row, err := queries.SpawnedResolved(ctx, tx, dbsqlc.SpawnedResolvedParams{ID: id, N: t.n})
		if errors.Is(err, database.ErrNotFound) {
			continue // the spawning row no longer waits (cancelled, or failed already)
		}
		if err != nil {
			return nil, fmt.Errorf("count down spawning row %s: %w", id, err)
		}
		switch {
		case run.mode == FailFast && t.failed > 0:
			msg := fmt.Sprintf("a run spawned by node %s failed (fail-fast)", row.TaskID)
			if err := endMapRowFailed(ctx, tx, id, SpawnItemFailed, msg); err != nil {
				return nil, err
			}
			out = append(out, resolution{taskID: row.TaskID, failed: true, mapRow: true})
		case row.ItemsLeft <= 0:
			if err := e.completeSpawnRow(ctx, tx, id, row); err != nil {
				return nil, err
			}
			out = append(out, resolution{taskID: row.TaskID, completed: true, mapRow: true, selected: row.SelectedNext})
		case spawnBound(run, row.TaskID) != nil:
			// maxConcurrency: as many held runs become ready as resolved.
			released, err := queries.ReleaseSpawned(ctx, tx, dbsqlc.ReleaseSpawnedParams{SpawnedBy: id, N: t.n})
			if err != nil {
				return nil, fmt.Errorf("release runs held by spawning row %s: %w", id, err)
			}
			if released > 0 {
				run.readied = true
			}
		}
	}
	return out, nil
}

// completeSpawnRow completes spawning row id with {"output": <its own output>, "items": [...]}:
// its own output inline, or {"outputPath": ...} when stored (null when none); the spawned runs'
// outputs in index order the same way, null for one that did not complete. The document is
// inline up to InlineMax bytes, else stored at SpawnedOutputPath. Failed runs mark the row
// SPAWN_ITEMS_FAILED (its error lists their indexes).
func (e *Engine) completeSpawnRow(ctx context.Context, tx dbtx, id string, row dbsqlc.SpawnedResolvedRow) error {
	items, err := queries.SpawnedOutputs(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("read the runs spawned by %s: %w", id, err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"output":`)
	if err := writeRef(&buf, row.Output, row.OutputPath); err != nil {
		return fmt.Errorf("encode the output of %s: %w", id, err)
	}
	buf.WriteString(`,"items":`)
	rows := make([]dbsqlc.MapItemOutputsRow, len(items))
	for i, it := range items {
		rows[i] = dbsqlc.MapItemOutputsRow(it)
	}
	failed, err := writeItems(&buf, rows)
	if err != nil {
		return fmt.Errorf("encode the outputs of the runs spawned by %s: %w", id, err)
	}
	buf.WriteByte('}')
	p, err := e.nodeOutput(ctx, id, SpawnedOutputPath(id), buf.Bytes())
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		code, msg := SpawnItemsFailed, fmt.Sprintf("%d of %d spawned runs failed: %s", len(failed), len(items), strings.Join(failed, ", "))
		p.Error, p.ErrorCode = &msg, &code
	}
	if err := queries.EndMapRow(ctx, tx, p); err != nil {
		return fmt.Errorf("complete spawning row %s: %w", id, err)
	}
	return nil
}

// reopenSpawned is the DLQ retry of spawned run failedRunID (superseded by the caller) as
// newRunID: while its spawning row still waits, the retry is one more run it waits for; once
// the row ended, 409 SPAWN_REOPEN_UNSUPPORTED (the transaction rolls back).
func (e *Engine) reopenSpawned(ctx context.Context, tx dbtx, prun, spawner, failedRunID, newRunID string, bound *int) error {
	if err := queries.InsertRetryItem(ctx, tx, dbsqlc.InsertRetryItemParams{OldID: failedRunID, ID: newRunID}); err != nil {
		return fmt.Errorf("insert retry of %s: %w", failedRunID, err)
	}
	n, err := queries.MapRowOpen(ctx, tx, spawner)
	if err != nil {
		return fmt.Errorf("count spawning row %s up: %w", spawner, err)
	}
	if n != 1 {
		return conflict("SPAWN_REOPEN_UNSUPPORTED", "pipeline run %q: task run %q was spawned by %q, which no longer waits for its spawned runs: a DLQ retry cannot re-open it; trigger the pipeline again instead",
			prun, failedRunID, spawner)
	}
	if bound != nil {
		// The retry waits for room under the node's maxConcurrency like the runs still held.
		active, err := queries.SpawnedActive(ctx, tx, spawner)
		if err != nil {
			return fmt.Errorf("count the runs of spawning row %s: %w", spawner, err)
		}
		if active > *bound {
			if err := queries.HoldSpawned(ctx, tx, newRunID); err != nil {
				return fmt.Errorf("hold retry %s: %w", newRunID, err)
			}
		}
	}
	if err := queries.NotifyReady(ctx, tx); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// checkMapGrowth refuses, before the callback of map item runID is applied, a spawn that would
// take its map past maxItems in all (400 SPAWN_TOO_MANY; nothing is written), and notes the map
// row for growMap, later in the same transaction under the same lock (plan.mapRow). A map row
// that no longer waits passes: growMap then spawns nothing.
func checkMapGrowth(ctx context.Context, tx dbtx, run *lockedRun, plan *spawnPlan) error {
	plan.mapRow = ""
	if run == nil || run.id != plan.pipelineRunID {
		return fmt.Errorf("map item spawn: pipeline run %s is not locked", plan.pipelineRunID)
	}
	row, err := queries.MapRowItems(ctx, tx, dbsqlc.MapRowItemsParams{PipelineRunID: run.id, TaskID: plan.taskID})
	if errors.Is(err, database.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the map row of %s in %s: %w", plan.taskID, run.id, err)
	}
	if n := len(plan.p.IDs); row.ItemsTotal+n > plan.maxItems {
		return spawnError("SPAWN_TOO_MANY", "spawn", "spawn has %d entries; map node %q has %d items and allows at most %d in all (map.maxItems)",
			n, plan.taskID, row.ItemsTotal, plan.maxItems)
	}
	plan.mapRow = row.ID
	return nil
}

// growMap applies the spawn of a map item (plan.mapItem): its map row waits for the new items,
// inserted pending after the others (item_index from items_total on), as the fan-out inserts
// items. Done before the spawning item's own resolution counts the map row down, so the map
// cannot complete in between. A map row that no longer waits (checkMapGrowth found none) spawns
// nothing.
func (e *Engine) growMap(ctx context.Context, tx dbtx, run *lockedRun, plan *spawnPlan) error {
	rowID := plan.mapRow
	if rowID == "" {
		return nil
	}
	n := len(plan.p.IDs)
	plan.inserted = true // from here on, whatever happens to the transaction
	base, err := queries.GrowMapRow(ctx, tx, dbsqlc.GrowMapRowParams{ID: rowID, N: n})
	if err != nil {
		return fmt.Errorf("grow map row %s: %w", rowID, err)
	}
	p := plan.p
	indexes := make([]int, n)
	for i := range indexes {
		indexes[i] = base + i
	}
	for start := 0; start < n; start += mapBatch {
		end := min(start+mapBatch, n)
		batch := dbsqlc.InsertMapItemsParams{MapRowID: rowID, IDs: p.IDs[start:end], InputPaths: p.InputPaths[start:end],
			Inputs: p.Inputs[start:end], ItemIndexes: indexes[start:end], MapConcurrency: plan.mapConcurrency}
		if err := queries.InsertMapItems(ctx, tx, batch); err != nil {
			return fmt.Errorf("insert the items spawned into %s: %w", rowID, err)
		}
	}
	if plan.mapConcurrency != nil {
		e.flowControlOn()
	}
	run.readied = true
	e.fannedOut(n)
	return nil
}
