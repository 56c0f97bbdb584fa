// Package worker is the Go SDK for PipeWeave worker services: the HTTP services that run the
// steps of PipeWeave tasks and pipelines.
//
// A worker registers task handlers, serves the orchestrator's dispatches on POST /tasks/{id},
// registers itself with the orchestrator, and runs each dispatch asynchronously: it opens the
// storage credentials sealed in the run token with its service key (which authenticates the
// dispatch: only the orchestrator seals them for this service), hydrates the input and upstream outputs straight from storage with the credentials
// sealed in the token, heartbeats at the task's interval, stops the handler's context when the
// orchestrator says the run was cancelled, and on success uploads the output, the assets and the
// logs before it calls back. A failed attempt uploads nothing. Each attempt works in its own
// temporary directory, which is removed when the attempt ends.
//
// The SDK links the local storage driver only. A worker whose orchestrator stores objects in a
// cloud provider imports that provider's driver for its side effect (core/storage/s3 for
// aws-s3, core/storage/gcs, core/storage/minio, or core/storage/drivers for all four), so
// that its binary carries only the SDKs it uses; an attempt whose backend's driver is not
// linked fails with an error naming the import to add.
//
//	w, err := worker.New(worker.Config{
//		OrchestratorURL: "http://orchestrator:3000",
//		ServiceID:       "pdf-processor",
//		Version:         "1.1.0",
//		ServiceKey:      os.Getenv("PIPEWEAVE_SERVICE_KEY"), // pipeweave token service --service pdf-processor
//	})
//	...
//	err = w.Register("download", worker.Options{AllowedNext: []string{"extract-text"}},
//		func(ctx *worker.Context) (any, error) {
//			var in struct{ URL string }
//			if err := ctx.Decode(&in); err != nil {
//				return nil, worker.Fail("BAD_INPUT", err.Error())
//			}
//			...
//			return map[string]any{"pages": 10}, nil
//		})
//	...
//	err = w.Listen(ctx, ":8080")
//
// The wire contract is the one of package protocol (docs/protocol.md); the worker speaks the
// authenticated protocol (run tokens and registration JWTs), not the Node.js SDK 1.x
// compatibility mode.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/inputschema"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
)

// Config configures a Worker.
type Config struct {
	// OrchestratorURL is the orchestrator's base URL, such as "http://orchestrator:3000"
	// (required).
	OrchestratorURL string
	// ServiceID names the worker service (required). It is also the id of the pipeline the
	// service implicitly defines.
	ServiceID string
	// Version is the service's version (required). Registering a new version that no longer
	// lists a task cancels that task's pending runs.
	Version string
	// ServiceKey is the service's key, 64 hexadecimal characters: what `pipeweave token service
	// --service ID` prints for this ServiceID (conventionally PIPEWEAVE_SERVICE_KEY). With it the
	// worker can register only its own service and open only its own runs' storage credentials.
	// Exactly one of ServiceKey and SecretKey is required.
	ServiceKey string
	// SecretKey is the orchestrator's master secret PIPEWEAVE_SECRET_KEY (at least 32 bytes: 64
	// hex characters are taken as hex), from which the worker derives its service key itself.
	//
	// Deprecated: a worker holding the master secret can impersonate every service; use
	// ServiceKey. SecretKey is accepted for one more release; New logs a warning.
	SecretKey string
	// BaseURL is the URL at which the orchestrator reaches this worker. When empty, Listen and
	// Serve derive it from the listening address (an unspecified host becomes "localhost"),
	// which only suits a worker on the orchestrator's own machine: set it in deployments.
	BaseURL string
	// TempDir is where each attempt gets its temporary directory (default
	// os.TempDir()/pipeweave-worker).
	TempDir string
	// TempCleanupOnFailure says whether a failed attempt's temporary directory is removed
	// (default true). Set it to false to inspect what a failed attempt left.
	TempCleanupOnFailure *bool
	// CodeHash is the code hash registered for every task that sets none in its Options. By
	// default it is derived from the binary's build information (see Options.CodeHash).
	CodeHash string
	// HTTPClient makes the calls to the orchestrator (default: a client with a 60 s timeout that
	// keeps up to 256 idle connections per host, so that attempts calling back at once reuse them).
	HTTPClient *http.Client
	// Logger receives the worker's logs and, with the run's attributes, the handlers' Log lines
	// (default slog.Default()).
	Logger *slog.Logger
	// ShutdownTimeout bounds how long Listen and Serve wait for running attempts once their
	// context ends (default 30 s). Attempts still running then have their context cancelled
	// and report a retryable WORKER_SHUTDOWN failure.
	ShutdownTimeout time.Duration
	// TracerProvider makes the "task" span of each attempt (default: the global OpenTelemetry
	// provider, otel.GetTracerProvider(), read at each attempt). Whatever the provider, the
	// handler's context carries the trace context of the dispatch (its W3C traceparent), and
	// the attempt's heartbeats and callback send the traceparent of the handler's context, so
	// that the orchestrator's spans and the handler's own spans are one trace.
	TracerProvider trace.TracerProvider
	// Pipelines are pipelines the registration declares (protocol.RegisterRequest.Pipelines),
	// such as one with map nodes (docs/dynamic-pipelines.md); nil: only the service's implicit
	// pipeline. A declaration with the service's own id replaces its implicit pipeline.
	Pipelines []protocol.PipelineDefinition
}

// Options describe a task at registration. Zero values mean the orchestrator's defaults
// (docs/protocol.md): timeout 300 s, 3 retries, exponential backoff from 1 s up to
// MAX_RETRY_DELAY_MS, a heartbeat every 60 s, no concurrency limit, priority 100, idempotency
// TTL IDEMPOTENCY_TTL_SECONDS.
type Options struct {
	// AllowedNext are the tasks this task may lead to in a pipeline; a handler picks among them
	// with Result.RunNext.
	AllowedNext []string
	// Timeout is the attempt's hard limit, rounded up to whole seconds. The handler's context
	// ends when it passes.
	Timeout time.Duration
	// Retries is the number of attempts after the first (nil: the default, 3; new(0): none).
	Retries *int
	// RetryBackoff is protocol.BackoffExponential (the default) or protocol.BackoffFixed.
	RetryBackoff string
	// RetryDelay is the delay before the first retry (0: the default, 1 s; negative: none).
	RetryDelay time.Duration
	// MaxRetryDelay caps the exponential delay (0: the orchestrator's default).
	MaxRetryDelay time.Duration
	// HeartbeatInterval is how often the worker heartbeats while the task runs; the
	// orchestrator fails an attempt silent for twice as long (0: the default, 60 s).
	HeartbeatInterval time.Duration
	// Concurrency caps the attempts of this task running at once across all workers
	// (0: unlimited).
	Concurrency int
	// RateLimit caps how many of the task's runs the orchestrator dispatches per period, across
	// every instance (nil: none): {Limit, PeriodMs}, the period at most a day. RateLimitKey
	// instead names a rate limit shared with other tasks (created with PUT
	// /api/rate-limits/{key} or pipeweave rate-limits put); set at most one of the two.
	RateLimit    *protocol.RateLimit
	RateLimitKey string
	// ConcurrencyKey is a JSON pointer (RFC 6901) into the run's input, such as "/customerId":
	// runs whose inputs hold the same value there have at most ConcurrencyPerKey attempts in
	// flight at once, across all workers; a busy key does not hold up the others. Set both or
	// neither.
	ConcurrencyKey    string
	ConcurrencyPerKey int
	// Priority orders ready runs, lower first (nil: the default, 100).
	Priority *int
	// IdempotencyTTL is how long a result recorded under an idempotency key is reused, rounded
	// up to whole seconds (0: the orchestrator's default).
	IdempotencyTTL time.Duration
	// Description is shown by the orchestrator's API.
	Description string
	// InputSchema is the input's schema in upstream PipeWeave's field-list format
	// ({"fields": [...], "strict": bool}, package core/inputschema), the format the Node.js
	// SDK registers; the dashboard builds its trigger form from it.
	InputSchema json.RawMessage
	// InputJSONSchema is a standard JSON Schema of the input (references only inside itself).
	// The orchestrator validates enqueued and triggered inputs against both schemas, in the
	// request's validationMode (docs/api.md, "Input schemas").
	InputJSONSchema json.RawMessage
	// CodeHash identifies the task's code; a change increments the task's code version. It
	// defaults to Config.CodeHash and then to a hash of the binary's build information (the
	// main module, its dependencies, the VCS revision and the Go version; for a build without
	// VCS information or with local modifications, the executable's content too): 16 hex
	// characters, stable for one binary.
	CodeHash string
	// IdempotencyKey, when set, makes the task idempotent: before running an attempt the
	// worker asks the orchestrator whether a completed result is recorded under the key the
	// function returns for the input and code version, within IdempotencyTTL; if so, the
	// attempt reports that result instead of running (successors run with the cached output).
	// A successful run records its result under the key. An empty key disables the check for
	// that run; a key longer than 255 bytes is replaced by its SHA-256.
	IdempotencyKey func(input json.RawMessage, codeVersion int) string
}

// Handler runs one attempt of a task. It returns the task's output, or a Result to also choose
// the successors; any value but a Result is the output itself. The output is encoded as JSON;
// a json.RawMessage or a []byte holding JSON is stored as is. A *TaskError chooses the error
// code and whether the attempt may be retried; any other error is retryable with code
// TASK_ERROR. A panic fails the attempt (retryable, code PANIC) and the worker carries on.
type Handler func(ctx *Context) (any, error)

// Result is what a Handler returns to choose its successors as well as its output.
type Result struct {
	// Output is the task's output (encoded like a handler's plain return value).
	Output any
	// RunNext names the successors to run, a subset of Options.AllowedNext. Empty means all
	// of them: the protocol has no way to select none.
	RunNext []string
}

// ErrCancelled is the cause (see context.Cause) of a handler's context that ended because the
// orchestrator cancelled the run or gave its attempt to someone else. Nothing is uploaded and
// no callback is made for such an attempt.
var ErrCancelled = errors.New("worker: the orchestrator cancelled this attempt")

// serviceKeys derives the worker's keys from cfg's ServiceKey, or from the service key it
// derives from the deprecated SecretKey (fromMaster).
func serviceKeys(cfg Config) (keys token.Keys, fromMaster bool, err error) {
	var svc []byte
	switch {
	case cfg.ServiceKey != "" && cfg.SecretKey != "":
		return token.Keys{}, false, errors.New("worker: set ServiceKey or SecretKey, not both")
	case cfg.ServiceKey != "":
		if svc, err = token.ParseServiceKey(cfg.ServiceKey); err != nil {
			return token.Keys{}, false, fmt.Errorf("worker: ServiceKey: %w (`pipeweave token service --service %s` prints it)", err, cfg.ServiceID)
		}
	case cfg.SecretKey != "":
		if svc, err = token.ServiceKey(cfg.SecretKey, cfg.ServiceID); err != nil {
			return token.Keys{}, false, fmt.Errorf("worker: SecretKey: %w", err)
		}
		fromMaster = true
	default:
		return token.Keys{}, false, errors.New("worker: ServiceKey is required (`pipeweave token service --service " + cfg.ServiceID + "` prints it)")
	}
	keys, err = token.ServiceKeys(svc)
	if err != nil {
		return token.Keys{}, false, fmt.Errorf("worker: %w", err)
	}
	return keys, fromMaster, nil
}

// errShutdown is the cause of handler contexts cancelled by a shutdown that ran out of time.
var errShutdown = errors.New("worker: shutting down")

// idPattern is the orchestrator's pattern for task ids; asset keys follow it too.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Worker serves tasks. Create it with New, add handlers with Register, and run it with Listen,
// Serve or Handler. Its methods are safe for concurrent use.
type Worker struct {
	cfg              Config
	api              *apiclient.Client // the orchestrator
	keys             token.Keys
	log              *slog.Logger
	tempDir          string
	cleanupOnFailure bool
	codeHash         string // default for tasks without their own

	// base is the parent of every attempt's context; stop cancels it at a forced shutdown.
	base context.Context
	stop context.CancelCauseFunc

	mu       sync.Mutex
	tasks    map[string]*task
	baseURL  string
	draining bool
	running  map[runKey]struct{}
	inFlight int
	idle     chan struct{} // closed while inFlight == 0

	backendsMu sync.Mutex
	backends   map[[32]byte]*storage.Backend // opened backends by the digest of their config

	// callbacks sends the attempts' callbacks, several in one request under load.
	callbacks callbackBatcher
}

// task is one registered task.
type task struct {
	id      string
	opts    Options
	handler Handler
	hash    string
}

// runKey identifies one dispatched attempt.
type runKey struct {
	runID string
	lease int64
}

// New validates cfg and returns a worker with no tasks.
func New(cfg Config) (*Worker, error) {
	u, err := url.Parse(cfg.OrchestratorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("worker: OrchestratorURL %q must be an absolute http(s) URL", cfg.OrchestratorURL)
	}
	if strings.TrimSpace(cfg.ServiceID) == "" {
		return nil, errors.New("worker: ServiceID is required")
	}
	if strings.TrimSpace(cfg.Version) == "" {
		return nil, errors.New("worker: Version is required")
	}
	keys, fromMaster, err := serviceKeys(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.BaseURL != "" {
		if b, err := url.Parse(cfg.BaseURL); err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
			return nil, fmt.Errorf("worker: BaseURL %q must be an absolute http(s) URL", cfg.BaseURL)
		}
	}
	w := &Worker{
		cfg:              cfg,
		keys:             keys,
		log:              cfg.Logger,
		tempDir:          cfg.TempDir,
		cleanupOnFailure: cfg.TempCleanupOnFailure == nil || *cfg.TempCleanupOnFailure,
		codeHash:         cfg.CodeHash,
		tasks:            map[string]*task{},
		baseURL:          strings.TrimRight(cfg.BaseURL, "/"),
		running:          map[runKey]struct{}{},
		idle:             make(chan struct{}),
		backends:         map[[32]byte]*storage.Backend{},
	}
	w.callbacks.w, w.callbacks.stall = w, callbackStall
	close(w.idle)
	apiOpts := []apiclient.Option{apiclient.WithAnswerLimit(4 << 20),
		// The attempt's trace context, so the orchestrator's spans join the trace.
		apiclient.WithHeader(func(ctx context.Context, h http.Header) { traceContext.Inject(ctx, propagation.HeaderCarrier(h)) })}
	if cfg.HTTPClient != nil {
		apiOpts = append(apiOpts, apiclient.WithHTTPClient(cfg.HTTPClient))
	}
	if w.api, err = apiclient.New(cfg.OrchestratorURL, "", apiOpts...); err != nil {
		return nil, fmt.Errorf("worker: OrchestratorURL: %w", err)
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("service", cfg.ServiceID)
	if fromMaster {
		w.log.Warn("worker: Config.SecretKey (the master PIPEWEAVE_SECRET_KEY) is deprecated and will be removed in the next release: " +
			"a worker holding it can impersonate every service. Give the worker its service key instead: " +
			"Config.ServiceKey = $PIPEWEAVE_SERVICE_KEY, from `pipeweave token service --service " + cfg.ServiceID + "`")
	}
	if w.tempDir == "" {
		w.tempDir = filepath.Join(os.TempDir(), "pipeweave-worker")
	}
	if w.tempDir, err = filepath.Abs(w.tempDir); err != nil {
		return nil, fmt.Errorf("worker: TempDir: %w", err)
	}
	if err := os.MkdirAll(w.tempDir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: create TempDir: %w", err)
	}
	if w.codeHash == "" {
		w.codeHash = defaultCodeHash()
	}
	if w.cfg.ShutdownTimeout <= 0 {
		w.cfg.ShutdownTimeout = 30 * time.Second
	}
	w.base, w.stop = context.WithCancelCause(context.Background())
	return w, nil
}

// Register adds the handler h of task id. Task ids are global across services and follow the
// orchestrator's pattern (a letter or digit, then letters, digits, '.', '_' or '-', at most
// 128 characters); registering an id twice is an error. Tasks registered after the worker
// registered with the orchestrator are served but only announced by the next
// RegisterWithOrchestrator.
func (w *Worker) Register(id string, opts Options, h Handler) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("worker: register task %q: the id must match %s", id, idPattern)
	}
	if h == nil {
		return fmt.Errorf("worker: register task %q: the handler is nil", id)
	}
	for _, next := range opts.AllowedNext {
		if !idPattern.MatchString(next) {
			return fmt.Errorf("worker: register task %q: AllowedNext entry %q is not a valid task id", id, next)
		}
	}
	switch opts.RetryBackoff {
	case "", protocol.BackoffFixed, protocol.BackoffExponential:
	default:
		return fmt.Errorf("worker: register task %q: RetryBackoff must be %q or %q, got %q",
			id, protocol.BackoffFixed, protocol.BackoffExponential, opts.RetryBackoff)
	}
	if _, err := inputschema.Compile(opts.InputSchema, opts.InputJSONSchema); err != nil {
		return fmt.Errorf("worker: register task %q: %w", id, err)
	}
	switch {
	case opts.Timeout < 0, opts.MaxRetryDelay < 0, opts.HeartbeatInterval < 0, opts.IdempotencyTTL < 0:
		return fmt.Errorf("worker: register task %q: Timeout, MaxRetryDelay, HeartbeatInterval and IdempotencyTTL must not be negative", id)
	case opts.Concurrency < 0:
		return fmt.Errorf("worker: register task %q: Concurrency must not be negative (0 = unlimited)", id)
	case opts.RateLimit != nil && opts.RateLimitKey != "":
		return fmt.Errorf("worker: register task %q: set RateLimit or RateLimitKey, not both", id)
	case opts.RateLimit != nil && (opts.RateLimit.Limit < 1 || opts.RateLimit.PeriodMs < 1):
		return fmt.Errorf("worker: register task %q: RateLimit needs a Limit and a PeriodMs of at least 1", id)
	case (opts.ConcurrencyKey == "") != (opts.ConcurrencyPerKey == 0):
		return fmt.Errorf("worker: register task %q: set ConcurrencyKey and ConcurrencyPerKey together", id)
	case opts.ConcurrencyPerKey < 0:
		return fmt.Errorf("worker: register task %q: ConcurrencyPerKey must be at least 1", id)
	case opts.Retries != nil && *opts.Retries < 0:
		return fmt.Errorf("worker: register task %q: Retries must not be negative", id)
	case opts.Priority != nil && *opts.Priority < 0:
		return fmt.Errorf("worker: register task %q: Priority must not be negative", id)
	}
	opts.AllowedNext = slices.Clone(opts.AllowedNext)
	t := &task{id: id, opts: opts, handler: h, hash: opts.CodeHash}
	if t.hash == "" {
		t.hash = w.codeHash
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.tasks[id]; dup {
		return fmt.Errorf("worker: register task %q: already registered", id)
	}
	w.tasks[id] = t
	return nil
}

// task returns the registered task id, or nil.
func (w *Worker) task(id string) *task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tasks[id]
}

// Wait blocks until no attempt is running: every dispatched attempt has called back (or given
// up) and removed its temporary directory.
func (w *Worker) Wait() {
	w.mu.Lock()
	idle := w.idle
	w.mu.Unlock()
	<-idle
}

// begin records a new attempt and returns the parent of its context. It reports started
// false when the same attempt is already running, and draining true (starting nothing) while
// the worker shuts down.
func (w *Worker) begin(k runKey) (base context.Context, started, draining bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining {
		return nil, false, true
	}
	if _, dup := w.running[k]; dup {
		return nil, false, false
	}
	w.running[k] = struct{}{}
	if w.inFlight == 0 {
		w.idle = make(chan struct{})
	}
	w.inFlight++
	return w.base, true, false
}

// end records the end of an attempt.
func (w *Worker) end(k runKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, k)
	w.inFlight--
	if w.inFlight == 0 {
		close(w.idle)
	}
}

// Close releases the storage clients the worker opened for its attempts. Call it once the
// worker is done serving (Listen and Serve do not, so that a worker can serve again); an
// attempt that needs storage afterwards opens its client anew.
func (w *Worker) Close() error {
	w.backendsMu.Lock()
	defer w.backendsMu.Unlock()
	var errs []error
	for sum, b := range w.backends {
		if err := b.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(w.backends, sum)
	}
	return errors.Join(errs...)
}
