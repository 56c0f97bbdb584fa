// Package core is the PipeWeave orchestrator: it wires configuration, the PostgreSQL pool, the
// storage backends and the engine into an HTTP handler, a standalone loop and the bounded batch
// functions that serverless deployments call.
package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/pipeweave/pipeweave/core/internal/api"
	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/testsignal"
)

// Summary says what one bounded batch did: {swept, claimed, dispatched, failed, durationMs}.
type Summary = protocol.ProcessSummary

// Orchestrator is one instance of the orchestrator. Any number of instances may share one
// database.
type Orchestrator struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	ownPool bool
	store   *storage.Set
	eng     *engine.Engine
	api     *api.Server
	wake    chan struct{}
	// scheduleWake wakes the schedule firer (fireSchedules) when a schedule changed.
	scheduleWake chan struct{}
	metrics      *telemetry.Metrics
	// shutdownTracing flushes and stops the tracer provider New built (nil when the caller
	// passed one, or when the exporter is off).
	shutdownTracing func(context.Context) error

	// Inline dispatch (serverless ready, standalone readyNow): one claimer at a time per process.
	inlineMu      sync.Mutex
	inlinePending atomic.Bool
	// inlineWG counts standalone mode's inline dispatches (readyNow, engine.SetRefill), which Close waits for
	// (after the server stopped, so that no request adds one meanwhile).
	inlineWG sync.WaitGroup

	// healthOnly: Handler serves only GET /health (Options.NoAPI without API keys).
	healthOnly bool
	// schemaOK remembers that CheckSchema found the schema current, so that later checks cost
	// an atomic load.
	schemaOK atomic.Bool

	// signals tell tests what the standalone loop and the engine did; off (nil channels)
	// outside tests.
	signals loopSignals
}

// loopSignals are the steps of the standalone loop, and the engine's commits, a test can wait
// for (export_test.go turns them on).
type loopSignals struct {
	// engine: the engine's commits (its Config.Signals).
	engine engine.Signals
	// listening: the loop's LISTEN connection is in place.
	listening testsignal.Signal[struct{}]
	// pass: a pass of the loop ended, having claimed this many runs.
	pass testsignal.Signal[int]
	// firePass: a pass of the schedule firer ended, having fired this many slots.
	firePass testsignal.Signal[int]
}

// Options are the parts New does not read from Config.
type Options struct {
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Pool, when set, is used instead of opening one from Config.DatabaseURL; the caller closes it.
	Pool *pgxpool.Pool
	// TracerProvider makes the orchestrator's spans (trigger, enqueue, claim, dispatch, callback,
	// heartbeat); the caller shuts it down. When nil, New builds one from the configuration: an
	// OTLP/HTTP exporter when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
	// set (Close flushes and stops it), else a no-op provider that only propagates the W3C trace
	// context of runs to workers.
	TracerProvider trace.TracerProvider
	// NoAPI says that the caller serves nothing of Handler but GET /health: a scheduled
	// function, whose trigger its platform authenticates (a private Cloud Run service, an
	// EventBridge schedule). New then starts without PIPEWEAVE_API_KEYS, and Handler answers
	// every other route 404 when no key is configured.
	NoAPI bool
	// NoStorage says that the caller never reads or writes an object (the heartbeat-sweep
	// function): New validates STORAGE_BACKENDS but opens no backend, so the binary need not
	// link any storage driver. Calls that would touch an object fail.
	NoStorage bool
}

// New builds an orchestrator. It does not wait for the database: requests made while it is
// unreachable get 503 and the orchestrator recovers when it returns.
func New(ctx context.Context, cfg Config, opts Options) (*Orchestrator, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	keys, err := deriveKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := checkAuth(cfg, opts.NoAPI, log); err != nil {
		return nil, err
	}
	var store *storage.Set
	if opts.NoStorage {
		store, err = storage.NewUnopenedSet(cfg.StorageBackends, cfg.DefaultStorageBackendID)
	} else {
		store, err = storage.NewSet(ctx, cfg.StorageBackends, cfg.DefaultStorageBackendID)
	}
	if err != nil {
		return nil, fmt.Errorf("STORAGE_BACKENDS: %w", err)
	}
	o := &Orchestrator{cfg: cfg, log: log, store: store, wake: make(chan struct{}, 1), scheduleWake: make(chan struct{}, 1), metrics: telemetry.NewMetrics(),
		healthOnly: opts.NoAPI && len(cfg.APIKeys) == 0 && !cfg.InsecureNoAuth}
	tp := opts.TracerProvider
	if tp == nil {
		if tp, o.shutdownTracing, err = tracerProvider(ctx, cfg); err != nil {
			_ = store.Close()
			return nil, err
		}
	}
	o.pool = opts.Pool
	if o.pool == nil {
		conns := int32(cfg.DBMaxConns)
		if conns == 0 {
			conns = 10
			if cfg.Mode == ModeServerless {
				conns = 4
			}
		}
		if o.pool, err = database.Open(ctx, cfg.DatabaseURL, database.Options{MaxConns: conns}); err != nil {
			o.stopTracing()
			_ = store.Close()
			return nil, err
		}
		o.ownPool = true
	}
	o.eng, err = engine.New(o.pool, keys, store, engine.Config{
		MaxConcurrency:  cfg.MaxConcurrency,
		DispatchTimeout: cfg.DispatchTimeout,
		WebhookTimeout:  cfg.WebhookTimeout,
		ClaimBatch:      cfg.ProcessBatchSize,
		IdempotencyTTL:  cfg.IdempotencyTTL,
		MaxRetryDelay:   cfg.MaxRetryDelay,
		Compat:          cfg.Compat == CompatNodeSDKv1,
		Secret:          cfg.SecretKey,
		InlineMax:       cfg.inlineMax(),
		MapMaxItems:     cfg.MapMaxItems,
		Metrics:         o.metrics,
		TracerProvider:  tp,
		Signals:         &o.signals.engine,

		WorkerAllowedNetworks: cfg.WorkerAllowedNetworks,
	}, log)
	if err != nil {
		if o.ownPool {
			o.pool.Close()
		}
		o.stopTracing()
		_ = store.Close()
		return nil, err
	}
	o.metrics.RegisterDatabase(o.eng.LiveCounts, o.pool)
	o.metrics.RegisterMaintenance(func(ctx context.Context) (string, error) {
		m, err := o.eng.SettleMaintenance(ctx)
		return string(m.Mode), err
	})
	o.metrics.RegisterPaused(o.eng.Paused)
	o.api = api.New(o.eng, keys, api.Options{
		APIKeys:                 cfg.APIKeys,
		Compat:                  cfg.Compat == CompatNodeSDKv1,
		MaxBodyBytes:            cfg.MaxBodyBytes,
		MaxBatchSize:            cfg.MaxBatchSize,
		MaxTasksPerRegistration: cfg.MaxTasksPerRegistration,
		MaxWorkerBodyBytes:      cfg.MaxWorkerBodyBytes,
		MaxInlineOutputBytes:    cfg.inlineMax(),
		Mode:                    string(cfg.Mode),
		MaxConcurrency:          cfg.MaxConcurrency,
		PollInterval:            cfg.PollInterval,
		Ready:                   o.ready,
		ReadyNow:                o.readyNow,
		Process:                 o.Process,
		Schema:                  o.CheckSchema,
		Metrics: promhttp.HandlerFor(o.metrics.Registry, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		}),
		MaxUploadBytes: cfg.MaxUploadBytes,
		InsecureNoAuth: cfg.insecure(),
		AllowedHosts:   cfg.allowedHosts(),

		MaxConcurrentBodies:      cfg.MaxConcurrentBodies,
		MaxUnauthenticatedBodies: cfg.MaxUnauthenticatedBodies,
	}, log)
	if cfg.Compat == CompatNodeSDKv1 {
		log.Warn("PIPEWEAVE_COMPAT=node-sdk-v1: registration and worker calls are accepted without authentication")
	}
	return o, nil
}

// Handler serves the HTTP API (only GET /health under Options.NoAPI without API keys).
func (o *Orchestrator) Handler() http.Handler {
	if o.healthOnly {
		return healthOnly(o.api)
	}
	return o.api
}

// Close releases the orchestrator's resources; it flushes the spans of the OTLP exporter New
// started.
func (o *Orchestrator) Close() {
	o.inlineWG.Wait()
	o.eng.Close()
	if o.ownPool {
		o.pool.Close()
	}
	o.stopTracing()
	_ = o.store.Close()
}

// tracerProvider builds the tracer provider the configuration asks for: an OTLP/HTTP exporter
// when an endpoint is set, else a no-op provider. stop is nil for the no-op provider.
func tracerProvider(ctx context.Context, cfg Config) (tp trace.TracerProvider, stop func(context.Context) error, err error) {
	url := telemetry.TracesURL(cfg.OTLPEndpoint, cfg.OTLPTracesEndpoint)
	if url == "" {
		return noop.NewTracerProvider(), nil, nil
	}
	name := cfg.ServiceName
	if name == "" {
		name = "pipeweave"
	}
	sdk, err := telemetry.OTLPProvider(ctx, url, name)
	if err != nil {
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	return sdk, sdk.Shutdown, nil
}

// stopTracing flushes and stops the tracer provider New built, if any, within a few seconds.
func (o *Orchestrator) stopTracing() {
	if o.shutdownTracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.shutdownTracing(ctx); err != nil {
		o.log.Warn("flushing the trace exporter failed", "err", err)
	}
	o.shutdownTracing = nil
}

// CheckSchema compares the database's schema with this binary's migrations. It returns nil
// when the schema is current (remembered for the life of the orchestrator, so that it is read
// once), an error wrapping [migrate.ErrSchema] that names the fix when the schema is missing,
// older or newer, or the error of reaching the database. The API answers 503 SCHEMA_MISMATCH
// and /health 503 while the schema does not match, and Process, Sweep and Purge refuse to
// work, so that a serverless function deployed before `pipeweave db migrate` says so instead
// of failing every statement.
func (o *Orchestrator) CheckSchema(ctx context.Context) error {
	if o.schemaOK.Load() {
		return nil
	}
	switch err := migrate.Verify(ctx, o.pool); {
	case errors.Is(err, migrate.ErrSchema):
		return fmt.Errorf("the database %w", err)
	case err != nil:
		return fmt.Errorf("check the schema: %w", err)
	}
	o.schemaOK.Store(true)
	return nil
}

// Process does one bounded batch: sweep expired attempts, then claim and dispatch up to
// PROCESS_BATCH_SIZE runs and send up to as many due webhook deliveries, within
// PROCESS_TIME_BUDGET_MS.
func (o *Orchestrator) Process(ctx context.Context) (Summary, error) {
	if err := o.CheckSchema(ctx); err != nil {
		return Summary{}, err
	}
	// Due schedule slots first, so that the runs they make are claimed by this same call.
	if _, err := o.eng.FireSchedules(ctx, scheduleBatch); err != nil {
		o.log.Warn("firing schedules failed; the next call tries again", "err", err)
	}
	s, err := o.eng.Process(ctx, o.cfg.ProcessBatchSize, o.cfg.ProcessTimeBudget)
	return wire.ProcessSummary(s), err
}

// scheduleBatch is the most schedules one pass fires; dueAgainWait is how soon the loop looks
// again at a slot that is still due after its pass (another instance is firing it).
const (
	scheduleBatch = 100
	dueAgainWait  = 10 * time.Millisecond
)

// fireSchedules fires due schedule slots until ctx ends (the standalone loop's companion): it
// sleeps until the soonest slot of any enabled schedule, and wakes when a schedule changed on
// any instance (NotifySchedules) and at least every PollInterval.
func (o *Orchestrator) fireSchedules(ctx context.Context) {
	for ctx.Err() == nil {
		s, err := o.eng.FireSchedules(ctx, scheduleBatch)
		if err != nil && ctx.Err() == nil {
			o.log.Warn("firing schedules failed; trying again", "err", err)
		}
		if s.Fired > 0 {
			o.kick()
		}
		o.signals.firePass.Send(s.Fired)
		wait := o.cfg.PollInterval
		switch {
		case err != nil:
			// Try again after the poll interval, not at once.
		case s.Schedules == scheduleBatch:
			wait = 0 // more may be due
		default:
			if next, ok, err := o.eng.NextScheduleWait(ctx); err == nil && ok {
				// A slot still due now is another instance's, or failed: look again shortly
				// rather than spin.
				wait = min(wait, max(next, dueAgainWait))
			}
		}
		select {
		case <-ctx.Done():
		case <-o.scheduleWake:
		case <-time.After(wait):
		}
	}
}

// PurgeSummary counts what a purge deleted.
type PurgeSummary = protocol.PurgeSummary

// Purge deletes DLQ entries, finished runs and finished webhook deliveries older than
// DLQ_RETENTION_DAYS, expired idempotency keys, and expired temporary uploads that no run
// claimed (object and record), in bounded chunks, within budget.
func (o *Orchestrator) Purge(ctx context.Context, budget time.Duration) (PurgeSummary, error) {
	if err := o.CheckSchema(ctx); err != nil {
		return PurgeSummary{}, err
	}
	s, err := o.eng.Purge(ctx, o.cfg.DLQRetention, 1000, budget)
	return wire.PurgeSummary(s), err
}

// Sweep ends attempts whose heartbeat deadline, timeout or dispatch lease passed, and times out
// the pipeline runs whose deadline (timeoutMs) passed; it returns how many of both it ended.
func (o *Orchestrator) Sweep(ctx context.Context) (int, error) {
	if err := o.CheckSchema(ctx); err != nil {
		return 0, err
	}
	return o.eng.Sweep(ctx, 0)
}

// ready is called when a request made work ready. Standalone mode wakes the loop; serverless
// mode has no loop, so the request itself claims and dispatches one bounded batch.
func (o *Orchestrator) ready(ctx context.Context) {
	if o.cfg.Mode != ModeServerless {
		o.kick()
		return
	}
	// One request of this process claims at a time, for the work the others made ready
	// meanwhile: concurrent callbacks then share claims instead of queueing on the claim lock one
	// by one. A request that finds a claim in progress only flags its work. Dispatching happens
	// outside the single flight, so the next claim does not wait for workers to answer.
	o.inlinePending.Store(true)
	deadline := time.Now().Add(inlineBudget)
	for o.inlineMu.TryLock() {
		var claimed []engine.Claimed
		var err error
		if o.inlinePending.Swap(false) {
			claimed, err = o.eng.Claim(ctx, o.cfg.ProcessBatchSize)
			if len(claimed) == o.cfg.ProcessBatchSize {
				o.inlinePending.Store(true)
			}
		}
		o.inlineMu.Unlock()
		if err != nil {
			o.log.Warn("inline claim failed; the next /api/process will pick the work up", "err", err)
			return
		}
		if len(claimed) > 0 {
			if _, err := o.eng.Dispatch(ctx, claimed); err != nil {
				o.log.Warn("inline dispatch failed; the sweep will recover the runs", "err", err)
			}
		}
		// Work flagged after the claim but before the unlock would have no claimer left.
		if !o.inlinePending.Load() || time.Now().After(deadline) {
			return
		}
	}
}

// readyNow is ready for a pipeline's next step. Serverless mode claims inline as ready does;
// standalone mode claims and dispatches at once too, in a goroutine of its own so that the
// request is answered first, rather than wake the loop, which spaces its passes. When an
// inline claim is already under way the loop is woken instead, as by ready: only one request
// at a time claims for the latency. Close waits for these dispatches.
func (o *Orchestrator) readyNow(ctx context.Context) {
	if o.cfg.Mode == ModeServerless {
		o.ready(ctx)
		return
	}
	if !o.inlineMu.TryLock() {
		o.kick()
		return
	}
	o.inlineWG.Add(1)
	go func() {
		defer o.inlineWG.Done()
		ctx := context.WithoutCancel(ctx)
		claimed, err := o.eng.Claim(ctx, o.cfg.ProcessBatchSize)
		o.inlineMu.Unlock()
		switch {
		case err != nil:
			o.log.Warn("inline claim failed; the loop will pick the work up", "err", err)
			o.kick()
			return
		case len(claimed) == o.cfg.ProcessBatchSize:
			// More may be ready than one claim took.
			o.kick()
		}
		if _, err := o.eng.Dispatch(ctx, claimed); err != nil {
			o.log.Warn("inline dispatch failed; the sweep will recover the runs", "err", err)
		}
	}()
}

// inlineBudget bounds how long one request claims and dispatches for others in serverless mode.
const inlineBudget = 2 * time.Second

func (o *Orchestrator) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run runs the standalone loop until ctx ends: it wakes on NOTIFY from any instance, on work
// made ready by this instance's requests, and every PollInterval; it sweeps and claims and
// dispatches in batches. In serverless mode it returns at once.
func (o *Orchestrator) Run(ctx context.Context) error {
	if o.cfg.Mode == ModeServerless {
		return nil
	}
	// While the loop runs, a group commit of callbacks claims the places its completions freed
	// and dispatches them here, as the loop would (engine.SetRefill).
	o.eng.SetRefill(func(claimed []engine.Claimed) {
		o.inlineWG.Add(1)
		go func() {
			defer o.inlineWG.Done()
			if _, err := o.eng.Dispatch(context.WithoutCancel(ctx), claimed); err != nil {
				o.log.Warn("recording dispatch results failed; the sweep will recover the runs", "err", err)
			}
		}()
	})
	defer o.eng.SetRefill(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.listen(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.fireSchedules(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.sendWebhooks(ctx)
	}()
	// At most this many dispatch batches are in flight at once.
	slots := make(chan struct{}, 8)
	ticker := time.NewTicker(o.cfg.PollInterval)
	defer ticker.Stop()
	var lastSweep, lastPurge time.Time
	spacing := claimSpacing
	// refill fires when a rate limit that the last claim found spent refills (nil: none is).
	var refill <-chan time.Time
	o.kick()
	for {
		select {
		case <-ctx.Done():
			for range cap(slots) {
				slots <- struct{}{}
			}
			wg.Wait()
			return nil
		case <-o.wake:
		case <-ticker.C:
		case <-refill:
		}
		if time.Since(lastSweep) >= o.cfg.PollInterval {
			lastSweep = time.Now()
			if _, err := o.eng.Sweep(ctx, 0); err != nil && ctx.Err() == nil {
				o.log.Warn("sweep failed", "err", err)
			}
		}
		if time.Since(lastPurge) >= purgeInterval {
			lastPurge = time.Now()
			if s, err := o.Purge(ctx, 10*time.Second); err != nil && ctx.Err() == nil {
				o.log.Warn("purge failed", "err", err)
			} else if s.DLQ+s.Runs+s.PipelineRuns+s.IdempotencyKeys+s.TempUploads+s.ScheduleSlots+s.WebhookDeliveries > 0 {
				o.log.Info("purged past retention", "dlq", s.DLQ, "runs", s.Runs, "pipelineRuns", s.PipelineRuns, "idempotencyKeys", s.IdempotencyKeys,
					"tempUploads", s.TempUploads, "scheduleSlots", s.ScheduleSlots, "webhookDeliveries", s.WebhookDeliveries)
			}
		}
		total := 0
		for ctx.Err() == nil {
			claimed, err := o.eng.Claim(ctx, o.cfg.ProcessBatchSize)
			if err != nil {
				if ctx.Err() == nil {
					o.log.Warn("claim failed", "err", err)
				}
				break
			}
			if len(claimed) == 0 {
				break
			}
			total += len(claimed)
			slots <- struct{}{}
			go func() {
				defer func() { <-slots }()
				// Dispatches finish even when ctx ends: the runs are already claimed.
				if _, err := o.eng.Dispatch(context.WithoutCancel(ctx), claimed); err != nil {
					o.log.Warn("recording dispatch results failed; the sweep will recover the runs", "err", err)
				}
			}()
			if len(claimed) < o.cfg.ProcessBatchSize {
				break
			}
		}
		o.signals.pass.Send(total)
		refill = nil
		if at := o.eng.RateLimitRefill(); !at.IsZero() {
			// A rate-limited backlog waits for its window: the loop claims again when it refills
			// (the database's clock decides; a wait out of range is bounded by the poll).
			refill = time.After(min(max(time.Until(at)+time.Millisecond, time.Millisecond), o.cfg.PollInterval))
		}
		// The last claim came back short: the queue or the capacity ran out. Under load every
		// callback frees one slot and wakes the loop; pausing a moment lets one claim serve the
		// wake-ups of many callbacks instead of one claim per callback. A pass that claimed
		// nothing doubles the pause (up to maxClaimSpacing): when other instances' loops take
		// the work first, this one claims less often instead of queueing on the claim lock to
		// find nothing. The pause only delays wake-ups that come within it.
		if total == 0 {
			spacing = min(2*spacing, maxClaimSpacing)
		} else {
			spacing = claimSpacing
		}
		select {
		case <-ctx.Done():
		case <-time.After(spacing):
		}
	}
}

// webhookInterval is how often the standalone loop looks for due webhook deliveries.
const webhookInterval = time.Second

// sendWebhooks sends due webhook deliveries every webhookInterval until ctx ends: one indexed
// look at an empty range when nothing is due. Requests in flight when ctx ends are abandoned;
// their deliveries are due again after their lease (at least once).
func (o *Orchestrator) sendWebhooks(ctx context.Context) {
	ticker := time.NewTicker(webhookInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for ctx.Err() == nil {
			s, err := o.eng.DeliverWebhooks(ctx, webhookBatch, 30*time.Second)
			if err != nil {
				if ctx.Err() == nil {
					o.log.Warn("sending webhook deliveries failed", "err", err)
				}
				break
			}
			if s.Delivered+s.Failed+s.Dead < webhookBatch {
				break
			}
		}
	}
}

// webhookBatch is the most deliveries one pass of sendWebhooks sends before it looks again.
const webhookBatch = 200

// purgeInterval is how often the standalone loop purges past retention.
const purgeInterval = time.Hour

// claimSpacing is the pause after a short claim in the standalone loop; maxClaimSpacing the
// longest it grows to after passes that claimed nothing.
const (
	claimSpacing    = 2 * time.Millisecond
	maxClaimSpacing = 16 * time.Millisecond
)

// listen wakes the loop on NOTIFY pipeweave_ready, reconnecting after failures.
func (o *Orchestrator) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := database.ListenReady(ctx, o.pool, func() { o.signals.listening.Send(struct{}{}) }, func(payload string) {
			if payload != "schedules" {
				o.kick()
				return
			}
			// A schedule changed: it wakes the firer, not the claim loop.
			select {
			case o.scheduleWake <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		o.log.Debug("listen connection lost; polling covers the gap", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// ListenAndServe serves the API on addr (and, in standalone mode, runs the loop) until ctx
// ends, then shuts down gracefully.
func (o *Orchestrator) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return o.Serve(ctx, ln)
}

// Serve is ListenAndServe on an open listener.
func (o *Orchestrator) Serve(ctx context.Context, ln net.Listener) error {
	srv := o.cfg.HTTPServer(o.Handler())
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	loopDone := make(chan error, 1)
	go func() { loopDone <- o.Run(loopCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	select {
	case err := <-serveDone:
		stopLoop()
		<-loopDone
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	stopLoop()
	<-loopDone
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
