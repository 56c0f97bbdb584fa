package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// idPattern is what service and task ids may contain: they appear in URL paths.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// taskRow is a task definition with every default applied, named like the table's columns.
type taskRow struct {
	ID                    string          `json:"id"`
	CodeHash              string          `json:"code_hash"`
	CodeVersion           int             `json:"code_version"`
	AllowedNext           []string        `json:"allowed_next"`
	TimeoutSeconds        int             `json:"timeout_seconds"`
	Retries               int             `json:"retries"`
	RetryBackoff          string          `json:"retry_backoff"`
	RetryDelayMs          int64           `json:"retry_delay_ms"`
	MaxRetryDelayMs       int64           `json:"max_retry_delay_ms"`
	HeartbeatIntervalMs   int64           `json:"heartbeat_interval_ms"`
	Concurrency           int             `json:"concurrency"`
	Priority              int             `json:"priority"`
	IdempotencyTTLSeconds int             `json:"idempotency_ttl_seconds"`
	Description           string          `json:"description"`
	InputSchema           json.RawMessage `json:"input_schema,omitempty"`
	InputJSONSchema       json.RawMessage `json:"input_json_schema,omitempty"`
	InputSchemaHash       string          `json:"input_schema_hash,omitempty"`
	RateLimit             *int            `json:"rate_limit"`
	RateLimitPeriodMs     *int64          `json:"rate_limit_period_ms"`
	RateLimitKey          *string         `json:"rate_limit_key"`
	ConcurrencyKey        *string         `json:"concurrency_key"`
	ConcurrencyPerKey     *int            `json:"concurrency_per_key"`
}

func orDefault[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// validateRegistration checks a registration and returns its tasks with defaults applied.
func (e *Engine) validateRegistration(req *protocol.RegisterRequest) ([]taskRow, error) {
	if !idPattern.MatchString(req.ServiceID) {
		return nil, invalid("INVALID_SERVICE_ID", "serviceId must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if req.Version == "" {
		return nil, invalid("INVALID_VERSION", "version is required")
	}
	if err := checkBaseURL(req.BaseURL); err != nil {
		return nil, err
	}
	if req.DispatchBatchMax < 0 {
		return nil, invalid("INVALID_DISPATCH_BATCH_MAX", "dispatchBatchMax must be 0 (one dispatch per request) or more")
	}
	rows := make([]taskRow, 0, len(req.Tasks))
	seen := map[string]bool{}
	for i, t := range req.Tasks {
		bad := func(format string, args ...any) error {
			e := invalid("INVALID_TASK", "tasks[%d] (%s): %s", i, t.ID, fmt.Sprintf(format, args...))
			return e
		}
		if !idPattern.MatchString(t.ID) {
			return nil, bad("id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
		}
		if seen[t.ID] {
			return nil, bad("task listed twice")
		}
		seen[t.ID] = true
		if t.CodeHash == "" {
			return nil, bad("codeHash is required")
		}
		row := taskRow{
			ID:                    t.ID,
			CodeHash:              t.CodeHash,
			AllowedNext:           t.AllowedNext,
			TimeoutSeconds:        orDefault(t.Timeout, 300),
			Retries:               orDefault(t.Retries, 3),
			RetryBackoff:          t.RetryBackoff,
			RetryDelayMs:          orDefault(t.RetryDelayMs, 1000),
			MaxRetryDelayMs:       orDefault(t.MaxRetryDelayMs, e.cfg.MaxRetryDelay.Milliseconds()),
			HeartbeatIntervalMs:   orDefault(t.HeartbeatIntervalMs, 60000),
			Concurrency:           orDefault(t.Concurrency, 0),
			Priority:              orDefault(t.Priority, 100),
			IdempotencyTTLSeconds: orDefault(t.IdempotencyTTL, int(e.cfg.IdempotencyTTL.Seconds())),
			Description:           t.Description,
		}
		if err := compileSchemasOf(&t, &row); err != nil {
			return nil, err
		}
		if err := validateFlowControl(i, &t, &row); err != nil {
			return nil, err
		}
		if row.AllowedNext == nil {
			row.AllowedNext = []string{}
		}
		if row.RetryBackoff == "" {
			row.RetryBackoff = protocol.BackoffExponential
		}
		switch {
		case row.TimeoutSeconds <= 0:
			return nil, bad("timeout must be a positive number of seconds")
		case row.Retries < 0:
			return nil, bad("retries must not be negative")
		case row.RetryBackoff != protocol.BackoffFixed && row.RetryBackoff != protocol.BackoffExponential:
			return nil, bad("retryBackoff must be %q or %q", protocol.BackoffFixed, protocol.BackoffExponential)
		case row.RetryDelayMs < 0:
			return nil, bad("retryDelayMs must not be negative")
		case row.MaxRetryDelayMs < 0:
			return nil, bad("maxRetryDelayMs must not be negative")
		case row.HeartbeatIntervalMs <= 0:
			return nil, bad("heartbeatIntervalMs must be positive")
		case row.Concurrency < 0:
			return nil, bad("concurrency must not be negative (0 = unlimited)")
		case row.Priority < 0:
			return nil, bad("priority must not be negative")
		case row.IdempotencyTTLSeconds < 0:
			return nil, bad("idempotencyTTL must not be negative")
		}
		// Integer columns (int4) hold at most MaxInt4.
		for _, f := range []struct {
			name string
			v    int
		}{{"timeout", row.TimeoutSeconds}, {"retries", row.Retries}, {"concurrency", row.Concurrency},
			{"priority", row.Priority}, {"idempotencyTTL", row.IdempotencyTTLSeconds}} {
			if f.v > MaxInt4 {
				e := bad("%s must be at most %d", f.name, MaxInt4)
				e.(*Error).Code = "INVALID_NUMBER"
				e.(*Error).Details = map[string]string{"field": fmt.Sprintf("tasks[%d].%s", i, f.name)}
				return nil, e
			}
		}
		// Durations in ms (bigint) take part in timestamp arithmetic (now() + 2 × the heartbeat
		// interval, now() + the retry delay): past a year they would overflow it at dispatch.
		for _, f := range []struct {
			name string
			v    int64
		}{{"retryDelayMs", row.RetryDelayMs}, {"maxRetryDelayMs", row.MaxRetryDelayMs}, {"heartbeatIntervalMs", row.HeartbeatIntervalMs}} {
			if f.v > maxDelayMs {
				e := bad("%s must be at most %d (a year)", f.name, int64(maxDelayMs))
				e.(*Error).Code = "INVALID_NUMBER"
				e.(*Error).Details = map[string]string{"field": fmt.Sprintf("tasks[%d].%s", i, f.name)}
				return nil, e
			}
		}
		for _, next := range row.AllowedNext {
			if !idPattern.MatchString(next) {
				return nil, bad("allowedNext entry %q is not a valid task id", next)
			}
		}
		rows = append(rows, row)
	}
	seenPipelines := map[string]bool{}
	for i := range req.Pipelines {
		p := &req.Pipelines[i]
		if seenPipelines[p.ID] {
			return nil, invalid("INVALID_PIPELINE", "pipeline %q is declared twice", p.ID)
		}
		seenPipelines[p.ID] = true
		if err := validatePipelineDef(p.ID, p, e.cfg.MapMaxItems); err != nil {
			if e, ok := err.(*Error); ok && e.Code == "INVALID_TIMEOUT" {
				e.Details = map[string]string{"field": fmt.Sprintf("pipelines[%d].timeoutMs", i)}
			}
			return nil, err
		}
	}
	return rows, nil
}

// Register records a worker service and its tasks: code changes bump a task's code version and
// append to its history; tasks that a new service version no longer lists are orphaned and
// their runs that have not started are cancelled. Registrations of one service serialise.
// keyID is the key id of the master secret whose service key signed the registration ("" for
// an unauthenticated compat-mode one); the service's dispatches are sealed under it from now on.
func (e *Engine) Register(ctx context.Context, req *protocol.RegisterRequest, keyID string) (*protocol.RegisterResponse, error) {
	rows, err := e.validateRegistration(req)
	if err != nil {
		return nil, err
	}
	resp := &protocol.RegisterResponse{Success: true, CodeChanges: []protocol.CodeChange{}, OrphanedTasks: []string{}}
	err = e.db.InTx(ctx, func(tx dbtx) error {
		// Declarations with sub-pipeline references take their lock first, as PUT does.
		if err := lockSubDeclarations(ctx, tx, req.Pipelines); err != nil {
			return err
		}
		if err := queries.LockService(ctx, tx, req.ServiceID); err != nil {
			return fmt.Errorf("lock service: %w", err)
		}
		oldVersion, err := queries.ServiceVersion(ctx, tx, req.ServiceID)
		switch {
		case errors.Is(err, database.ErrNotFound):
		case err != nil:
			return fmt.Errorf("read service: %w", err)
		}
		type existing struct {
			service, hash string
			version       int
			removed       bool
		}
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		current := map[string]existing{}
		owners, err := queries.TaskOwners(ctx, tx, dbsqlc.TaskOwnersParams{IDs: ids, ServiceID: req.ServiceID})
		if err != nil {
			return fmt.Errorf("read tasks: %w", err)
		}
		for _, o := range owners {
			current[o.ID] = existing{service: o.ServiceID, hash: o.CodeHash, version: o.CodeVersion, removed: o.Removed}
		}
		var histIDs, histHashes, histVersions []string
		var histNums []int
		for i := range rows {
			r := &rows[i]
			old, ok := current[r.ID]
			switch {
			case ok && old.service != req.ServiceID:
				return conflict("TASK_OWNED_BY_OTHER_SERVICE", "task %q is registered by service %q", r.ID, old.service)
			case !ok:
				r.CodeVersion = 1
			case old.hash != r.CodeHash:
				r.CodeVersion = old.version + 1
				resp.CodeChanges = append(resp.CodeChanges, protocol.CodeChange{
					TaskID: r.ID, OldHash: old.hash, NewHash: r.CodeHash, OldVersion: old.version, NewVersion: r.CodeVersion,
				})
			default:
				r.CodeVersion = old.version
				continue
			}
			histIDs = append(histIDs, r.ID)
			histNums = append(histNums, r.CodeVersion)
			histHashes = append(histHashes, r.CodeHash)
			histVersions = append(histVersions, req.Version)
		}
		if err := rateLimitKeys(ctx, tx, rows); err != nil {
			return err
		}
		var kid *string
		if keyID != "" {
			kid = &keyID
		}
		if err := queries.UpsertService(ctx, tx, dbsqlc.UpsertServiceParams{ID: req.ServiceID, Version: req.Version, BaseURL: req.BaseURL,
			KeyID: kid, DispatchBatchMax: e.dispatchBatchMax(req.DispatchBatchMax)}); err != nil {
			return fmt.Errorf("save service: %w", err)
		}
		if len(rows) > 0 {
			payload, err := json.Marshal(rows)
			if err != nil {
				return fmt.Errorf("encode tasks: %w", err)
			}
			if err := queries.UpsertTasks(ctx, tx, dbsqlc.UpsertTasksParams{Tasks: payload, ServiceID: req.ServiceID}); err != nil {
				return fmt.Errorf("save tasks: %w", err)
			}
		}
		if len(histIDs) > 0 {
			if err := queries.InsertHistory(ctx, tx, dbsqlc.InsertHistoryParams{TaskIDs: histIDs, CodeVersions: histNums,
				CodeHashes: histHashes, ServiceVersions: histVersions}); err != nil {
				return fmt.Errorf("save code history: %w", err)
			}
		}
		// The service's implicit pipeline, and the pipelines it declares.
		if err := queries.UpsertPipeline(ctx, tx, dbsqlc.UpsertPipelineParams{ID: req.ServiceID, ServiceID: &req.ServiceID,
			EntryTasks: []string{}, FailureMode: FailFast, Implicit: true}); err != nil {
			return fmt.Errorf("save the service's pipeline: %w", err)
		}
		if err := e.checkDeclaredNodes(ctx, tx, req.Pipelines); err != nil {
			return err
		}
		if err := e.checkSubPipelines(ctx, tx, req.Pipelines); err != nil {
			return err
		}
		for _, p := range req.Pipelines {
			nodes, err := encodeNodes(p.Nodes)
			if err != nil {
				return err
			}
			if err := queries.UpsertPipeline(ctx, tx, dbsqlc.UpsertPipelineParams{ID: p.ID, ServiceID: &req.ServiceID,
				EntryTasks: p.EntryTasks, FailureMode: p.FailureMode, Description: p.Description, TimeoutMs: p.TimeoutMs, Nodes: nodes}); err != nil {
				return fmt.Errorf("save pipeline %s: %w", p.ID, err)
			}
		}
		if oldVersion != "" && oldVersion != req.Version {
			for id, x := range current {
				if x.service == req.ServiceID && !x.removed && !slices.Contains(ids, id) {
					resp.OrphanedTasks = append(resp.OrphanedTasks, id)
				}
			}
			slices.Sort(resp.OrphanedTasks)
			if len(resp.OrphanedTasks) > 0 {
				if err := queries.OrphanTasks(ctx, tx, dbsqlc.OrphanTasksParams{IDs: resp.OrphanedTasks, Version: req.Version}); err != nil {
					return fmt.Errorf("orphan tasks: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.forgetFlowControl()
	slices.SortFunc(resp.CodeChanges, func(a, b protocol.CodeChange) int {
		if a.TaskID < b.TaskID {
			return -1
		}
		if a.TaskID > b.TaskID {
			return 1
		}
		return 0
	})
	e.log.Info("service registered", "service", req.ServiceID, "version", req.Version,
		"tasks", len(rows), "codeChanges", len(resp.CodeChanges), "orphaned", len(resp.OrphanedTasks))
	e.warnIfRefused(req.ServiceID, req.BaseURL)
	return resp, nil
}

// PauseTask pauses task id: its runs are still accepted (enqueued, triggered, retried) and wait,
// pending, until ResumeTask; attempts already dispatched run to their end. The pause holds the
// claim lock, so once it returns no claim takes the task's runs. Pausing a paused task keeps its
// first pausedAt. An unknown task is 404 TASK_NOT_FOUND.
func (e *Engine) PauseTask(ctx context.Context, id string) (TaskPause, error) {
	return e.setTaskPaused(ctx, id, true)
}

// ResumeTask resumes task id: the claims that follow take its waiting runs in priority order, as
// any other. Resuming a task that is not paused changes nothing.
func (e *Engine) ResumeTask(ctx context.Context, id string) (TaskPause, error) {
	return e.setTaskPaused(ctx, id, false)
}

func (e *Engine) setTaskPaused(ctx context.Context, id string, paused bool) (TaskPause, error) {
	var row dbsqlc.SetTaskPausedRow
	err := e.db.InTx(ctx, func(tx dbtx) error {
		if err := queries.LockClaims(ctx, tx, claimLock); err != nil {
			return fmt.Errorf("take claim lock: %w", err)
		}
		var err error
		row, err = queries.SetTaskPaused(ctx, tx, dbsqlc.SetTaskPausedParams{ID: id, Paused: paused})
		if errors.Is(err, database.ErrNotFound) {
			return notFound("TASK_NOT_FOUND", "task %q is not registered", id)
		}
		if err != nil {
			return fmt.Errorf("set task %s paused: %w", id, err)
		}
		if !paused {
			// The task's waiting runs are ready for every instance's loop.
			return queries.NotifyReady(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return TaskPause{}, err
	}
	return TaskPause{TaskID: row.ID, Paused: row.PausedAt != nil, PausedAt: row.PausedAt}, nil
}

// Paused lists the task types and pipelines paused now, for /metrics.
func (e *Engine) Paused(ctx context.Context) ([]telemetry.Paused, error) {
	rows, err := queries.PausedList(ctx, e.db)
	if err != nil {
		return nil, fmt.Errorf("list what is paused: %w", err)
	}
	out := make([]telemetry.Paused, len(rows))
	for i, r := range rows {
		out[i] = telemetry.Paused(r)
	}
	return out, nil
}
