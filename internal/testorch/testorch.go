// Package testorch starts an orchestrator in the test process for the project's tests: on a
// fresh database of its own (package testdb), with local storage in a temporary directory,
// served over HTTP by httptest, in serverless mode (requests dispatch inline; tests call
// Process or Run themselves), and closed when the test ends. Its logs are kept and printed
// when the test fails.
package testorch

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/local" // the fixture's storage backend
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
	"github.com/pipeweave/pipeweave/worker"
)

// Secret is the PIPEWEAVE_SECRET_KEY of the orchestrators this package starts unless told
// otherwise; workers of a test use it too.
const Secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// Options change what Start starts. The zero value is a serverless orchestrator on a new
// database.
type Options struct {
	// Pool is the database (default: a new one from testdb.New).
	Pool *pgxpool.Pool
	// Configure changes the configuration after the test defaults are set.
	Configure func(*core.Config)
	// Core are the orchestrator's options; Pool is set from Pool, and Logger, when nil, writes
	// JSON lines at debug level to Logs.
	Core core.Options
	// BeforeServe, when set, runs between core.New and the first request served (a test turns
	// the orchestrator's signals on there).
	BeforeServe func(*core.Orchestrator)
}

// inlineThresholds are the INLINE_PAYLOAD_MAX_BYTES values the tests of readers run over:
// 0 (every payload in the storage backend) and the default (small ones in PostgreSQL). Inline
// and stored payloads must look the same to every reader.
var inlineThresholds = []int64{0, core.DefaultConfig().InlinePayloadMaxBytes}

// EachInlineThreshold runs test once per inlineThresholds value, as parallel subtests named
// "inline=N"; inline sets the threshold on a configuration (pass it to Configure).
func EachInlineThreshold(t *testing.T, test func(t *testing.T, inline func(*core.Config))) {
	t.Helper()
	for _, n := range inlineThresholds {
		t.Run(fmt.Sprintf("inline=%d", n), func(t *testing.T) {
			t.Parallel()
			test(t, func(c *core.Config) { c.InlinePayloadMaxBytes = n })
		})
	}
}

// Orchestrator is a running test orchestrator.
type Orchestrator struct {
	*core.Orchestrator
	// URL is where it serves HTTP.
	URL string
	// Config is the configuration it was started with.
	Config core.Config
	// Pool is its database.
	Pool *pgxpool.Pool
	// StorageDir is the base path of its local storage backend "local".
	StorageDir string
	// Logs holds what it logged (when the caller gave no Logger).
	Logs *testutil.SyncBuffer
}

// Start starts an orchestrator for the test t.
func Start(t testing.TB, opts Options) *Orchestrator {
	t.Helper()
	pool := opts.Pool
	if pool == nil {
		pool = testdb.New(t)
	}
	o := &Orchestrator{Pool: pool, StorageDir: t.TempDir(), Logs: &testutil.SyncBuffer{}}
	cfg := core.DefaultConfig()
	cfg.DatabaseURL = pool.Config().ConnString()
	cfg.StorageBackends = []storage.Config{{ID: "local", Provider: storage.ProviderLocal,
		Credentials: map[string]any{"basePath": o.StorageDir}, IsDefault: true}}
	cfg.SecretKey, cfg.Mode, cfg.MaxConcurrency = Secret, core.ModeServerless, 0
	cfg.PollInterval, cfg.DispatchTimeout = 50*time.Millisecond, 5*time.Second
	cfg.InsecureNoAuth = true                     // tests that need API keys set them in Configure
	cfg.WorkerAllowedNetworks = testutil.Loopback // the test workers listen on loopback
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	o.Config = cfg
	copts := opts.Core
	copts.Pool = pool
	if copts.Logger == nil {
		copts.Logger = slog.New(slog.NewJSONHandler(o.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	orch, err := core.New(context.Background(), cfg, copts)
	require.NoError(t, err)
	o.Orchestrator = orch
	if opts.BeforeServe != nil {
		opts.BeforeServe(orch)
	}
	srv := httptest.NewServer(orch.Handler())
	o.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		orch.Close()
		if t.Failed() && o.Logs.String() != "" {
			t.Logf("orchestrator logs:\n%s", o.Logs.String())
		}
	})
	return o
}

// Worker is a worker of the Go SDK served over HTTP for a test.
type Worker struct {
	*worker.Worker
	// Config is the configuration it was made with (BaseURL is where it serves).
	Config worker.Config
	// Logs holds what it logged (when mod set no Logger).
	Logs *testutil.SyncBuffer
}

// ServiceKey is the service key (64 hex, what `pipeweave token service` prints) of service
// under the master secret.
func ServiceKey(t testing.TB, secret, service string) string {
	t.Helper()
	k, err := token.ServiceKey(secret, service)
	require.NoError(t, err)
	return hex.EncodeToString(k)
}

// Worker makes a Go SDK worker of service for o, served by httptest; mod adjusts its
// configuration. Register its tasks, then call RegisterWithOrchestrator. When the test ends it
// waits (up to 30 s) for the attempts it runs to finish, then stops serving, and prints its
// logs if the test failed.
func (o *Orchestrator) Worker(t testing.TB, service string, mod ...func(*worker.Config)) *Worker {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	tw := &Worker{Logs: &testutil.SyncBuffer{}}
	// The worker holds its service's key, as in production, not the master secret.
	svcKey := ServiceKey(t, o.Config.SecretKey, service)
	tw.Config = worker.Config{
		OrchestratorURL: o.URL,
		ServiceID:       service,
		Version:         "1",
		ServiceKey:      svcKey,
		BaseURL:         "http://" + srv.Listener.Addr().String(),
		TempDir:         t.TempDir(),
		Logger:          slog.New(slog.NewJSONHandler(tw.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&tw.Config)
	}
	//lint:ignore SA1019 a test may give a worker the deprecated master secret instead
	if tw.Config.SecretKey != "" && tw.Config.ServiceKey == svcKey {
		tw.Config.ServiceKey = "" // mod chose the (deprecated) master secret instead
	}
	w, err := worker.New(tw.Config)
	require.NoError(t, err)
	tw.Worker = w
	srv.Config.Handler = w.Handler()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() && tw.Logs.String() != "" {
			t.Logf("worker %s logs:\n%s", service, tw.Logs.String())
		}
	})
	// Runs before the server closes: let the attempts finish.
	t.Cleanup(func() { tw.WaitIdle(t) })
	return tw
}

// WaitIdle waits, with a generous limit, until the worker runs no attempt.
func (w *Worker) WaitIdle(t testing.TB) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		w.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("worker %s still runs attempts after 30 s", w.Config.ServiceID)
	}
}
