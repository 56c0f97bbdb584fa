// Package platform runs a PipeWeave function on the platform it finds at start-up: under AWS
// Lambda (AWS_LAMBDA_RUNTIME_API is set) it serves invocations through aws-lambda-go; anywhere
// else it serves HTTP on $PORT, the Cloud Run contract, and shuts down gracefully on SIGTERM.
//
// A Function has both faces. The HTTP face is an http.Handler: the orchestrator's API for the
// api function, and POST / (the JSON summary) plus GET /health for the scheduled functions.
// The Lambda face is a lambda.Handler: API Gateway proxy events (REST API and HTTP API payloads)
// for the api function, and EventBridge/CloudWatch scheduled events, or any JSON, for the others.
//
// Each process opens one orchestrator, outside any handler, so its small connection pool is
// reused by every warm invocation.
package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/migrate"
)

// Env is what a Builder gets: the orchestrator of the process and its configuration.
type Env struct {
	Orchestrator *core.Orchestrator
	Config       core.Config
	// Getenv reads the variables of the function's own, such as PURGE_TIME_BUDGET_MS.
	Getenv func(string) string
	Log    *slog.Logger
}

// Builder makes a function from the orchestrator of the process.
type Builder func(e Env) (*Function, error)

// Function is one deployable function with its HTTP face and its Lambda face.
type Function struct {
	name   string
	http   http.Handler
	invoke func(ctx context.Context, payload []byte) ([]byte, error)
	// loop, when set, runs beside the HTTP server (the standalone loop of the api function).
	loop func(ctx context.Context) error
	// port is $PORT, where Run serves HTTP outside Lambda (set by Open).
	port int
	// cfg is the configuration Open read; Serve takes the HTTP server's timeouts from it.
	cfg core.Config
}

// Name is the function's name, such as "process".
func (f *Function) Name() string { return f.name }

// ServeHTTP serves the HTTP face.
func (f *Function) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.http.ServeHTTP(w, r) }

// Invoke serves one Lambda invocation: it is the lambda.Handler of the function.
func (f *Function) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return f.invoke(ctx, payload)
}

// OnLambda reports whether the process runs under AWS Lambda, whose runtime sets
// AWS_LAMBDA_RUNTIME_API.
func OnLambda(getenv func(string) string) bool { return getenv("AWS_LAMBDA_RUNTIME_API") != "" }

// Config reads the orchestrator's configuration like `pipeweave serve` does, except that MODE
// defaults to serverless. Under Lambda, standalone mode is refused: a frozen sandbox cannot run
// a background loop.
func Config(getenv func(string) string) (core.Config, error) {
	cfg, err := core.ConfigFromEnv(func(k string) string {
		if v := getenv(k); v != "" || k != "MODE" {
			return v
		}
		return string(core.ModeServerless)
	})
	if err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	if cfg.Mode == core.ModeStandalone && OnLambda(getenv) {
		return cfg, fmt.Errorf("configuration: %w", &core.ConfigError{Var: "MODE",
			Msg: "standalone needs a long-running process; under AWS Lambda use serverless (the default)"})
	}
	return cfg, nil
}

// scheduledFunctions are the functions that serve only /health and POST /, which their platform
// authenticates (an EventBridge schedule; a private Cloud Run service invoked with Cloud
// Scheduler's OIDC token): they start without PIPEWEAVE_API_KEYS, which cloudbuild.yaml does
// not give them. Any other function (api) serves the operator API and needs the keys.
var scheduledFunctions = map[string]bool{"process": true, "heartbeat-sweep": true, "dlq-purge": true}

// storageFreeFunctions are the functions that never read or write an object: they open no
// storage backend (core.Options.NoStorage), so their binaries link no storage driver. The
// other functions' main packages import core/storage/drivers.
var storageFreeFunctions = map[string]bool{"heartbeat-sweep": true}

// schemaCheckWait bounds the start-up check of the schema: a database that does not answer
// within it is checked again on first use instead.
const schemaCheckWait = 3 * time.Second

// Open reads the configuration, opens the orchestrator and builds the function. release closes
// the orchestrator. It checks the database's schema first: a missing, older or newer schema
// stops start-up with one line naming the fix (Cloud Run then keeps the previous revision; a
// Lambda init fails with that line in its log). A database that is down does not stop
// start-up: the pool connects lazily, and the schema is checked on first use (the API answers
// 503 SCHEMA_MISMATCH, /health 503, a scheduled invocation fails with the reason).
func Open(ctx context.Context, name string, getenv func(string) string, log *slog.Logger, build Builder) (f *Function, release func(), err error) {
	cfg, err := Config(getenv)
	if err != nil {
		return nil, nil, err
	}
	o, err := core.New(ctx, cfg, core.Options{Logger: log, NoAPI: scheduledFunctions[name], NoStorage: storageFreeFunctions[name]})
	if err != nil {
		return nil, nil, fmt.Errorf("open the orchestrator: %w", err)
	}
	checkCtx, cancel := context.WithTimeout(ctx, schemaCheckWait)
	err = o.CheckSchema(checkCtx)
	cancel()
	if errors.Is(err, migrate.ErrSchema) {
		o.Close()
		return nil, nil, err
	}
	if err != nil {
		log.Warn("the database did not answer at start-up; its schema is checked on first use", "error", err.Error())
	}
	f, err = build(Env{Orchestrator: o, Config: cfg, Getenv: getenv, Log: log})
	if err != nil {
		o.Close()
		return nil, nil, fmt.Errorf("build the %s function: %w", name, err)
	}
	f.port = cfg.Port
	f.cfg = cfg
	return f, o.Close, nil
}

// Logger is the JSON logger of a function on stderr (CloudWatch Logs, Cloud Logging), at
// LOG_LEVEL (debug, info, warn or error; default info).
func Logger(name string, getenv func(string) string) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.TrimSpace(getenv("LOG_LEVEL")))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("function", name)
}

// Main runs the function named name for the platform found at start-up and exits the process
// with status 1 if it cannot start. It is the whole body of each function's main.
func Main(name string, build Builder) {
	ctx := context.Background()
	stop := func() {}
	if !OnLambda(os.Getenv) {
		// Under Lambda the runtime ends the process itself; elsewhere SIGTERM (Cloud Run) or
		// an interrupt starts a graceful shutdown.
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	}
	err := Run(ctx, name, os.Getenv, Logger(name, os.Getenv), build)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Run opens the function once for the life of the process and serves it: through the Lambda
// runtime API when under Lambda (it never returns then), else over HTTP on :$PORT (default
// 3000; Cloud Run sets it) until ctx ends.
func Run(ctx context.Context, name string, getenv func(string) string, log *slog.Logger, build Builder) error {
	f, release, err := Open(ctx, name, getenv, log, build)
	if err != nil {
		return err
	}
	defer release()
	if OnLambda(getenv) {
		lambda.StartWithOptions(f, lambda.WithContext(ctx))
		return nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", f.port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", f.port, err)
	}
	log.Info("serving HTTP", "addr", ln.Addr().String())
	return Serve(ctx, ln, f, log)
}

// shutdownGrace is how long in-flight requests may finish after the context ends; Cloud Run
// kills the instance 10 s after SIGTERM.
const shutdownGrace = 8 * time.Second

// Serve serves f's HTTP face on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, f *Function, log *slog.Logger) error {
	srv := f.cfg.HTTPServer(f)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	loopDone := make(chan error, 1)
	go func() {
		if f.loop == nil {
			loopDone <- nil
			return
		}
		loopDone <- f.loop(loopCtx)
	}()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	select {
	case err := <-serveDone:
		stopLoop()
		<-loopDone
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	stopLoop()
	loopErr := <-loopDone
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down the HTTP server: %w", err)
	}
	if loopErr != nil {
		return fmt.Errorf("background loop: %w", loopErr)
	}
	return nil
}
