package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// maxDelayMs bounds delayMs (one year).
const maxDelayMs = 365 * 24 * 3600 * 1000

// EnqueueRequest asks for one standalone run (the API decodes it from protocol.EnqueueRequest).
type EnqueueRequest struct {
	TaskID         string
	Input          json.RawMessage
	Priority       *int
	Metadata       json.RawMessage
	IdempotencyKey string
	DelayMs        int64
	// ValidationMode is strict, warn (the default) or none: how the input is checked against
	// the task's input schema (docs/api.md, Input schemas).
	ValidationMode string
}

// EnqueueResult is the run an enqueue made or, for a repeated idempotency key, found.
type EnqueueResult struct {
	RunID string
	// Status is the run's status: "pending" for a new run (as upstream's queue manager answers),
	// the first run's current status for a repeated idempotency key.
	Status       protocol.TaskRunStatus
	TaskID       string
	InputPath    string
	Deduplicated bool
	// ValidationWarnings are the input's violations of the task's schema, by task id, in
	// validationMode warn (nil when there are none).
	ValidationWarnings protocol.ValidationErrors
}

type enqueueTask struct {
	priority, ttl, codeVersion int
	codeHash                   string
	schemaHash                 string
	// concurrencyKey is the task's concurrency key, a JSON pointer ("" = none).
	concurrencyKey string
}

type enqueueItem struct {
	req       *EnqueueRequest
	task      enqueueTask
	runID     string
	inputPath string
	// inline is the input kept in the run's row (nil: written to storage at inputPath).
	inline   []byte
	firstOf  int // index of the earlier item with the same task and key, or -1
	result   EnqueueResult
	warnings protocol.ValidationErrors
}

// Enqueue validates every request (all or nothing), stores the inputs, and inserts the new runs
// in one transaction. A request whose idempotency key is held within its TTL returns the run that
// holds it instead of making one. It reports whether any new run was made.
//
// It runs in an "enqueue" span. The new runs continue the caller's trace context (in ctx, from
// the request's traceparent) when there is one, else the enqueue span's.
func (e *Engine) Enqueue(ctx context.Context, reqs []EnqueueRequest) ([]EnqueueResult, bool, error) {
	return e.enqueue(ctx, reqs, nil)
}

// enqueue is Enqueue; within, when set, runs in its transaction after the new runs are
// inserted, with their ids (a schedule's fire, schedules.go): its error rolls everything back.
func (e *Engine) enqueue(ctx context.Context, reqs []EnqueueRequest, within func(ctx context.Context, tx dbtx, runIDs []string) error) (_ []EnqueueResult, _ bool, err error) {
	traceparent := telemetry.Traceparent(ctx)
	attrs := []attribute.KeyValue{telemetry.AttrCount.Int(len(reqs))}
	if len(reqs) == 1 {
		attrs = append(attrs, telemetry.AttrTaskID.String(reqs[0].TaskID))
	}
	ctx, span := e.tracer.Start(ctx, "enqueue", trace.WithAttributes(attrs...))
	defer func() { endSpan(span, err) }()
	if traceparent == "" {
		traceparent = telemetry.Traceparent(ctx)
	}
	if len(reqs) == 0 {
		return nil, false, invalid("EMPTY_BATCH", "at least one task is required")
	}
	items, err := e.validateEnqueue(ctx, reqs)
	if err != nil {
		return nil, false, err
	}
	if err := e.checkEnqueueInputs(ctx, items); err != nil {
		return nil, false, err
	}
	uploads := enqueueUploadRefs(items)
	_, backend := e.storage.Default()
	if err := e.writeInputs(ctx, backend, items); err != nil {
		return nil, false, err
	}
	// runs are the items to insert: those that own their idempotency key, if they have one.
	runs := func(owned map[int]bool) newRuns {
		var runs newRuns
		for i := range items {
			it := &items[i]
			if it.firstOf >= 0 || (it.req.IdempotencyKey != "" && !owned[i]) {
				continue
			}
			runs.add(it.runID, it.req.TaskID, orDefault(it.req.Priority, it.task.priority), it.req.DelayMs, it.inputPath, it.inline,
				it.task.codeVersion, it.task.codeHash, nullJSON(it.req.Metadata), it.req.IdempotencyKey, traceparent,
				concurrencyKeyOf(it.task.concurrencyKey, it.req.Input))
			// The run's status, as GET /api/runs/{id} and a repeated idempotency key report it.
			it.result = EnqueueResult{RunID: it.runID, Status: protocol.StatusPending, TaskID: it.req.TaskID, InputPath: it.inputPath}
		}
		return runs
	}
	created := false
	if within == nil && uploads == nil && !hasIdempotencyKey(items) {
		// Nothing to read first: the insert and the notification go in one round trip, one
		// implicit transaction (the common batch; a 1,000-run insert waits on no answer).
		err = e.db.Pipelined(ctx, func(tx dbtx) error {
			if err := queries.InsertRuns(ctx, tx, dbsqlc.InsertRunsParams(runs(nil))); err != nil {
				return err
			}
			return queries.NotifyReady(ctx, tx)
		})
		if err != nil {
			err = fmt.Errorf("insert runs: %w", err)
		}
		created = err == nil
	} else {
		err = e.db.InTx(ctx, func(tx dbtx) error {
			owned, err := e.takeIdempotencyKeys(ctx, tx, items)
			if err != nil {
				return err
			}
			runs := runs(owned)
			if len(runs.IDs) == 0 {
				return nil
			}
			if err := queries.InsertRuns(ctx, tx, dbsqlc.InsertRunsParams(runs)); err != nil {
				return fmt.Errorf("insert runs: %w", err)
			}
			if within != nil {
				if err := within(ctx, tx, runs.IDs); err != nil {
					return err
				}
			}
			if err := e.claimTempUploads(ctx, tx, enqueueClaims(items, uploads), false); err != nil {
				return err
			}
			if err := queries.NotifyReady(ctx, tx); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
			created = true
			return nil
		})
	}
	if err != nil {
		e.removeInputs(backend, items, func(*enqueueItem) bool { return true })
		return nil, false, err
	}
	// Inputs written for requests that turned out to repeat a key are not needed.
	e.removeInputs(backend, items, func(it *enqueueItem) bool { return it.result.RunID != it.runID })
	out := make([]EnqueueResult, len(items))
	for i := range items {
		if items[i].firstOf >= 0 {
			items[i].result = items[items[i].firstOf].result
			items[i].result.Deduplicated = true
		}
		out[i] = items[i].result
		out[i].ValidationWarnings = items[i].warnings
	}
	return out, created, nil
}

func nullJSON(raw json.RawMessage) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

func (e *Engine) validateEnqueue(ctx context.Context, reqs []EnqueueRequest) ([]enqueueItem, error) {
	var taskIDs []string
	for i := range reqs {
		r := &reqs[i]
		where := ""
		if len(reqs) > 1 {
			where = fmt.Sprintf("tasks[%d]: ", i)
		}
		switch {
		case r.TaskID == "":
			return nil, invalid("INVALID_TASK_ID", "%staskId is required", where)
		case !idPattern.MatchString(r.TaskID):
			return nil, invalid("INVALID_TASK_ID", "%staskId %q is not a valid task id", where, r.TaskID)
		case r.Priority != nil && *r.Priority < 0:
			return nil, invalid("INVALID_PRIORITY", "%spriority must not be negative", where)
		case r.Priority != nil && *r.Priority > MaxInt4:
			return nil, invalid("INVALID_NUMBER", "%spriority must be at most %d", where, MaxInt4)
		case r.DelayMs < 0 || r.DelayMs > maxDelayMs:
			return nil, invalid("INVALID_DELAY", "%sdelayMs must be between 0 and %d", where, int64(maxDelayMs))
		case len(r.IdempotencyKey) > 255:
			return nil, invalid("INVALID_IDEMPOTENCY_KEY", "%sidempotencyKey must be at most 255 bytes", where)
		}
		if m := nullJSON(r.Metadata); m != nil && m[0] != '{' {
			return nil, invalid("INVALID_METADATA", "%smetadata must be a JSON object", where)
		}
		if err := CheckValidationMode(r.ValidationMode); err != nil {
			err.(*Error).Msg = where + err.Error()
			return nil, err
		}
		taskIDs = append(taskIDs, r.TaskID)
	}
	tasks, err := e.enqueueTasks(ctx, e.db, taskIDs)
	if err != nil {
		return nil, err
	}
	items := make([]enqueueItem, len(reqs))
	firstKey := map[[2]string]int{}
	for i := range reqs {
		t, ok := tasks[reqs[i].TaskID]
		if !ok {
			e := notFound("TASK_NOT_FOUND", "task %q is not registered", reqs[i].TaskID)
			if len(reqs) > 1 {
				e.Msg = fmt.Sprintf("tasks[%d]: %s", i, e.Msg)
				e.Details = map[string]any{"index": i, "taskId": reqs[i].TaskID}
			}
			return nil, e
		}
		id := ids.New(ids.TaskRun)
		items[i] = enqueueItem{req: &reqs[i], task: t, runID: id, inputPath: protocol.StandaloneInputPath(id), firstOf: -1}
		if k := reqs[i].IdempotencyKey; k != "" {
			if j, dup := firstKey[[2]string{reqs[i].TaskID, k}]; dup {
				items[i].firstOf = j
			} else {
				firstKey[[2]string{reqs[i].TaskID, k}] = i
			}
		}
	}
	return items, nil
}

// enqueueTasks reads what an enqueue needs of the active tasks among ids.
func (e *Engine) enqueueTasks(ctx context.Context, db dbtx, ids []string) (map[string]enqueueTask, error) {
	rows, err := queries.TasksForEnqueue(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("read tasks: %w", err)
	}
	tasks := map[string]enqueueTask{}
	for _, r := range rows {
		tasks[r.ID] = enqueueTask{priority: r.Priority, ttl: r.IdempotencyTtlSeconds, codeVersion: r.CodeVersion,
			codeHash: r.CodeHash, schemaHash: r.InputSchemaHash, concurrencyKey: r.ConcurrencyKey}
	}
	return tasks, nil
}

// newRuns are standalone runs to insert with InsertRuns, column by column.
type newRuns dbsqlc.InsertRunsParams

// add adds a run; input is the input it keeps inline (nil: stored at inputPath).
func (n *newRuns) add(id, taskID string, priority int, delayMs int64, inputPath string, input []byte, codeVersion int, codeHash string,
	metadata []byte, key, traceparent string, concurrencyKey *string) {
	n.IDs, n.TaskIDs, n.Priorities = append(n.IDs, id), append(n.TaskIDs, taskID), append(n.Priorities, priority)
	n.DelaysMs, n.InputPaths, n.Inputs = append(n.DelaysMs, delayMs), append(n.InputPaths, inputPath), append(n.Inputs, input)
	n.CodeVersions, n.CodeHashes = append(n.CodeVersions, codeVersion), append(n.CodeHashes, codeHash)
	n.Metadata, n.Keys, n.Traceparents = append(n.Metadata, metadata), append(n.Keys, key), append(n.Traceparents, traceparent)
	ck := noConcurrencyKey
	if concurrencyKey != nil {
		ck = *concurrencyKey
	}
	n.ConcurrencyKeys = append(n.ConcurrencyKeys, ck)
}

// inlineInput is the stored form of an input (JSON null when there is none), and whether it is
// small enough to keep in PostgreSQL.
func (e *Engine) inlineInput(input json.RawMessage) ([]byte, bool) {
	data := []byte(input)
	if len(data) == 0 {
		data = []byte("null")
	}
	return data, int64(len(data)) <= e.cfg.InlineMax
}

// writeInputs keeps each item's input inline when it is small enough and writes the others to
// the backend.
func (e *Engine) writeInputs(ctx context.Context, backend *storage.Backend, items []enqueueItem) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range items {
		it := &items[i]
		if it.firstOf >= 0 {
			continue
		}
		data, inline := e.inlineInput(it.req.Input)
		if inline {
			it.inline = data
			continue
		}
		g.Go(func() error {
			if err := storage.PutBytes(gctx, backend, it.inputPath, data, "application/json"); err != nil {
				return storageFailed(fmt.Errorf("store input of %s: %w", it.runID, err))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		e.removeInputs(backend, items, func(*enqueueItem) bool { return true })
		return err
	}
	return nil
}

// removeInputs deletes, best effort, the inputs written to storage for the items pick selects.
func (e *Engine) removeInputs(backend *storage.Backend, items []enqueueItem, pick func(*enqueueItem) bool) {
	var paths []string
	for i := range items {
		if it := &items[i]; it.firstOf < 0 && it.inline == nil && pick(it) {
			paths = append(paths, it.inputPath)
		}
	}
	e.removeObjects(context.Background(), backend, paths)
}

// removeObjects deletes paths from backend, best effort: an object already gone is fine, another
// failure is logged (the object stays behind, unreferenced). It goes on when ctx is cancelled.
func (e *Engine) removeObjects(ctx context.Context, backend *storage.Backend, paths []string) {
	for _, p := range paths {
		if err := backend.Delete(context.WithoutCancel(ctx), p); err != nil && !isNotFound(err) {
			e.log.Warn("could not remove an unused object", "path", p, "err", err)
		}
	}
}

// storeInputs stores data[i] at paths[i] for each i whose data is not nil (the inputs too large
// to be inline), 16 at a time, as writeInputs does for an enqueue. When one write fails, those
// written are removed (best effort) and the error returned; what names an input in it ("item 3
// of <owner>"). A transaction that rolls back after they were written leaves them behind,
// unreferenced (docs/dynamic-pipelines.md).
func (e *Engine) storeInputs(ctx context.Context, owner, what string, paths []string, data [][]byte) error {
	_, backend := e.storage.Default()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range data {
		if data[i] == nil {
			continue
		}
		g.Go(func() error {
			if err := storage.PutBytes(gctx, backend, paths[i], data[i], inlineContentType); err != nil {
				return storageFailed(fmt.Errorf("store the input of %s %d of %s: %w", what, i, owner, err))
			}
			return nil
		})
	}
	err := g.Wait()
	if err != nil {
		var written []string
		for i := range data {
			if data[i] != nil {
				written = append(written, paths[i])
			}
		}
		e.removeObjects(ctx, backend, written)
	}
	return err
}

// hasIdempotencyKey reports whether an item names an idempotency key.
func hasIdempotencyKey(items []enqueueItem) bool {
	for i := range items {
		if items[i].req.IdempotencyKey != "" {
			return true
		}
	}
	return false
}

// takeIdempotencyKeys claims the items' keys; owned[i] reports whether item i got its key.
// Items whose key is held by a live run get that run as their result.
func (e *Engine) takeIdempotencyKeys(ctx context.Context, tx dbtx, items []enqueueItem) (map[int]bool, error) {
	var tids, keys, runs []string
	var ttls []int
	index := map[[2]string]int{}
	for i := range items {
		it := &items[i]
		if it.req.IdempotencyKey == "" || it.firstOf >= 0 {
			continue
		}
		tids = append(tids, it.req.TaskID)
		keys = append(keys, it.req.IdempotencyKey)
		runs = append(runs, it.runID)
		ttls = append(ttls, it.task.ttl)
		index[[2]string{it.req.TaskID, it.req.IdempotencyKey}] = i
	}
	owned := map[int]bool{}
	if len(tids) == 0 {
		return owned, nil
	}
	taken, err := queries.ClaimIdempotencyKeys(ctx, tx, dbsqlc.ClaimIdempotencyKeysParams{TaskIDs: tids, Keys: keys, RunIDs: runs,
		TtlSeconds: ttls})
	if err != nil {
		return nil, fmt.Errorf("claim idempotency keys: %w", err)
	}
	for _, k := range taken {
		owned[index[[2]string{k.TaskID, k.Key}]] = true
	}
	var lostT, lostK []string
	for i := range items {
		if items[i].req.IdempotencyKey != "" && items[i].firstOf < 0 && !owned[i] {
			lostT = append(lostT, items[i].req.TaskID)
			lostK = append(lostK, items[i].req.IdempotencyKey)
		}
	}
	if len(lostT) == 0 {
		return owned, nil
	}
	existing, err := queries.ExistingIdempotentRuns(ctx, tx, dbsqlc.ExistingIdempotentRunsParams{TaskIDs: lostT, Keys: lostK})
	if err != nil {
		return nil, fmt.Errorf("read idempotent runs: %w", err)
	}
	for _, r := range existing {
		items[index[[2]string{r.TaskID, r.Key}]].result = EnqueueResult{RunID: r.ID, Status: r.Status, InputPath: r.InputPath,
			TaskID: r.TaskID, Deduplicated: true}
	}
	for i := range items {
		if items[i].req.IdempotencyKey != "" && items[i].firstOf < 0 && !owned[i] && items[i].result.RunID == "" {
			return nil, conflict("IDEMPOTENCY_KEY_ORPHANED", "idempotency key %q of task %q is held by a run that no longer exists",
				items[i].req.IdempotencyKey, items[i].req.TaskID)
		}
	}
	return owned, nil
}
