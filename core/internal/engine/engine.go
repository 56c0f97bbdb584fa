// Package engine is the orchestrator's core: registration, enqueueing, claiming, dispatch,
// worker calls, retries, the sweep and the dead letter queue, all on PostgreSQL.
//
// Every state change is a guarded SQL statement, every time comparison uses the database clock,
// and nothing important lives in process memory, so any number of engines may run against one
// database and any of them may die at any moment.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
	"github.com/pipeweave/pipeweave/core/internal/netguard"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// dbtx is what a statement runs on: the pool, or a transaction when several must commit together.
type dbtx = database.Executor

// queries are the engine's statements (package dbsqlc); each call names the executor it runs on.
var queries = dbsqlc.New()

// Config holds the engine's settings. Zero values pick the defaults noted.
type Config struct {
	// MaxConcurrency caps runs in flight (dispatching + running) across all instances; 0 = no cap.
	MaxConcurrency int
	// DispatchTimeout bounds one dispatch request (default 10 s).
	DispatchTimeout time.Duration
	// WebhookTimeout bounds one webhook delivery request (default 10 s).
	WebhookTimeout time.Duration
	// ClaimBatch is the most runs one claim takes (default 100).
	ClaimBatch int
	// SweepBatch is the most expired attempts one sweep handles (default 500).
	SweepBatch int
	// IdempotencyTTL is the default idempotency TTL of tasks that set none (default 24 h).
	IdempotencyTTL time.Duration
	// MaxRetryDelay is the default maxRetryDelayMs of tasks that set none (default 24 h).
	MaxRetryDelay time.Duration
	// BackPressureDelay is how long a run waits after a worker answered 429/503 (default 1 s).
	BackPressureDelay time.Duration
	// Compat enables PIPEWEAVE_COMPAT=node-sdk-v1: compat storage tokens, unauthenticated workers.
	Compat bool
	// Secret is PIPEWEAVE_SECRET_KEY, needed for the compat token format.
	Secret string
	// InlineMax is the largest input or output, in bytes, kept in PostgreSQL rather than in the
	// storage backend (INLINE_PAYLOAD_MAX_BYTES; 0 = none: every payload goes to storage).
	InlineMax int64
	// MapMaxItems is MAP_MAX_ITEMS: the most items a map node may declare (maxItems) and its
	// maxItems when it declares none (default MaxMapItems, 10,000; at most MapMaxItemsLimit).
	MapMaxItems int
	// Metrics receive the engine's counts and timings (default: metrics of their own that
	// nobody reads).
	Metrics *telemetry.Metrics
	// TracerProvider makes the engine's spans (default: a no-op provider, which still
	// propagates the trace context of runs to workers).
	TracerProvider trace.TracerProvider
	// WorkerAllowedNetworks are the loopback, private and shared (CGNAT) networks dispatches
	// may connect to (WORKER_ALLOWED_NETWORKS); public addresses are always allowed, link-local
	// and metadata addresses never (package netguard).
	WorkerAllowedNetworks []netip.Prefix
	// Now is the time the statements that take one compare deadlines with: claims, the sweep,
	// failed attempts and the purges (default nil: the database clock). Tests set it to move
	// time without sleeping.
	Now func() time.Time
	// Signals, when set, tell tests what the engine committed (default: off).
	Signals *Signals
}

func (c *Config) setDefaults() {
	if c.DispatchTimeout <= 0 {
		c.DispatchTimeout = defaults.DispatchTimeout
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = defaultWebhookTimeout
	}
	if c.ClaimBatch <= 0 {
		c.ClaimBatch = 100
	}
	if c.SweepBatch <= 0 {
		c.SweepBatch = 500
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = defaults.IdempotencyTTL
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = defaults.MaxRetryDelay
	}
	if c.BackPressureDelay <= 0 {
		c.BackPressureDelay = time.Second
	}
	if c.MapMaxItems <= 0 {
		c.MapMaxItems = MaxMapItems
	}
	c.MapMaxItems = min(c.MapMaxItems, MapMaxItemsLimit)
	if c.Metrics == nil {
		c.Metrics = telemetry.NewMetrics()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = noop.NewTracerProvider()
	}
	if c.Signals == nil {
		c.Signals = &Signals{}
	}
}

// Engine runs the orchestrator's work against one database.
type Engine struct {
	// db runs the statements; its errors match the sentinels of package database.
	db *database.DB
	// backend is the default storage backend as workers receive it (sealed in the run token).
	backend []byte
	keys    *token.Keyring
	storage *storage.Set
	cfg     Config
	client  *http.Client
	// noBatchRoute holds, by base URL, when a worker there answered a batch dispatch 404 or
	// 405 (time.Time): its runs go alone for noBatchRouteFor (dispatchbatch.go).
	noBatchRoute sync.Map
	// whClient sends webhook deliveries: the dispatch client's guarded dialer, WebhookTimeout.
	whClient *http.Client
	// whClock is the webhook statements' clock when tests set one (webhooks.go).
	whClock webhookClock
	// guard is the dispatch address policy the client's dialer applies.
	guard   *netguard.Policy
	log     *slog.Logger
	metrics *telemetry.Metrics
	tracer  trace.Tracer
	// tracing is false when the tracer provider is a no-op one (no exporter configured): the
	// hot paths then start no spans and only pass the stored traceparent on.
	tracing bool
	// notRunning is true when the maintenance mode this engine last read was not running: the
	// hint that makes callbacks and dispatch results check whether waiting_for_maintenance
	// can end (maintenance.go).
	notRunning atomic.Bool
	// callbacks is the group commit that applies workers' callbacks (groupcommit.go).
	callbacks groupCommit
	// pipelineOf knows the pipeline run of the runs this engine claimed (groupcommit.go).
	pipelineOf pipelineHints
	// refill, when set, dispatches the runs a group commit of callbacks claimed (SetRefill).
	refill atomic.Pointer[func([]Claimed)]
	// rateRefill is when the rate limit the last claim found spent refills, in epoch ms (0: none).
	rateRefill atomic.Int64
	// flowInUse is whether some task had a rate limit or a concurrency key when last read, at
	// flowChecked (zero: read it again), and flowRefreshing whether a read is under way in the
	// background; flowMu guards them.
	flowMu         sync.Mutex
	flowInUse      bool
	flowChecked    time.Time
	flowRefreshing bool
	// grown counts the items fanned out since the last ANALYZE of task_runs, analyzedAt is
	// when this engine last started one (epoch ns) and analyzes how many it ran (mapstats.go).
	grown, analyzedAt, analyzes atomic.Int64
	// acks are the workers' acknowledgements of dispatches waiting to be recorded (acks.go).
	acks pendingAcks
	// callbackTxs counts the transactions the callbacks' group commits ran (tests read it).
	callbackTxs atomic.Int64
	// beforeCommit, when set (by tests), runs on the connection of each of a group commit's
	// transactions before it commits: before its one statement for the plain successes, before
	// COMMIT for the others.
	beforeCommit func(ctx context.Context, x dbtx)
	// siblingWait is how long a lone pipeline callback waits for a sibling's (siblingWait,
	// groupcommit.go; tests lengthen it).
	siblingWait time.Duration
}

// New builds an engine. The pool's search path must lead to the pipeweave schema.
func New(pool *pgxpool.Pool, keys *token.Keyring, store *storage.Set, cfg Config, log *slog.Logger) (*Engine, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	guard := netguard.New(cfg.WorkerAllowedNetworks)
	defaultCfg, _ := store.Default()
	backend, err := json.Marshal(defaultCfg)
	if err != nil {
		return nil, fmt.Errorf("encode the default storage backend: %w", err)
	}
	return &Engine{
		siblingWait: siblingWait,
		db:          database.New(pool),
		backend:     backend,
		keys:        keys,
		storage:     store,
		cfg:         cfg,
		client:      newDispatchClient(cfg, guard),
		whClient:    newDispatchClient(Config{DispatchTimeout: cfg.WebhookTimeout}, guard),
		guard:       guard,
		log:         log,
		metrics:     cfg.Metrics,
		tracer:      cfg.TracerProvider.Tracer(telemetry.TracerName),
		tracing:     !isNoop(cfg.TracerProvider),
	}, nil
}

// isNoop reports whether tp records nothing.
func isNoop(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case noop.TracerProvider, *noop.TracerProvider:
		return true
	}
	return false
}

// now is the time for the statements that take one: nil (the database clock) unless Config.Now
// is set.
func (e *Engine) now() *time.Time {
	if e.cfg.Now == nil {
		return nil
	}
	t := e.cfg.Now()
	return &t
}

// Ping checks that the database answers.
func (e *Engine) Ping(ctx context.Context) error { return e.db.Ping(ctx) }

// Close records the dispatch acknowledgements that wait and releases the dispatch and webhook
// clients' idle connections.
func (e *Engine) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.FlushAcks(ctx); err != nil {
		e.log.Warn("recording dispatch acknowledgements at close failed; the sweep will recover the runs", "err", err)
	}
	e.client.CloseIdleConnections()
	e.whClient.CloseIdleConnections()
}
