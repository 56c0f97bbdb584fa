package worker_test

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

type registeredTask struct {
	ID                  string              `json:"id"`
	CodeHash            string              `json:"codeHash"`
	CodeVersion         int                 `json:"codeVersion"`
	AllowedNext         []string            `json:"allowedNext"`
	Timeout             int                 `json:"timeout"`
	Retries             int                 `json:"retries"`
	RetryBackoff        string              `json:"retryBackoff"`
	RetryDelayMs        int64               `json:"retryDelayMs"`
	MaxRetryDelayMs     int64               `json:"maxRetryDelayMs"`
	HeartbeatIntervalMs int64               `json:"heartbeatIntervalMs"`
	Concurrency         int                 `json:"concurrency"`
	Priority            int                 `json:"priority"`
	IdempotencyTTL      int                 `json:"idempotencyTTL"`
	Description         string              `json:"description"`
	RateLimit           *protocol.RateLimit `json:"rateLimit"`
	ConcurrencyKey      string              `json:"concurrencyKey"`
	ConcurrencyPerKey   int                 `json:"concurrencyPerKey"`
}

func (e *env) tasksOf(service string) map[string]registeredTask {
	e.t.Helper()
	r := e.do("GET", "/api/services/"+service+"/tasks", nil)
	require.Equal(e.t, http.StatusOK, r.Status, "%s", r.Body)
	var list []registeredTask
	r.json(e.t, &list)
	out := map[string]registeredTask{}
	for _, t := range list {
		out[t.ID] = t
	}
	return out
}

var hexHash = regexp.MustCompile(`^[0-9a-f]{16}$`)

// The default code hash is derived from the build, stable across workers of one binary, and
// overridable per worker and per task; registration sends it and the options in the
// protocol's units.
func TestCodeHashAndRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	noop := func(*worker.Context) (any, error) { return nil, nil }

	w1 := e.newWorker("hashes")
	require.NoError(t, w1.Register("plain", worker.Options{}, noop))
	require.NoError(t, w1.Register("custom", worker.Options{
		CodeHash: "custom-v1", AllowedNext: []string{"plain"}, Timeout: 1500 * time.Millisecond, Retries: new(0),
		RetryBackoff: protocol.BackoffFixed, RetryDelay: 250 * time.Millisecond, MaxRetryDelay: time.Minute,
		HeartbeatInterval: 5 * time.Second, Concurrency: 2, Priority: new(0), IdempotencyTTL: time.Hour,
		Description: "custom task", RateLimit: &protocol.RateLimit{Limit: 10, PeriodMs: 1000},
		ConcurrencyKey: "/customerId", ConcurrencyPerKey: 3,
	}, noop))
	resp := w1.register(t)
	require.True(t, resp.Success)
	tasks := e.tasksOf("hashes")
	require.Regexp(t, hexHash, tasks["plain"].CodeHash)
	require.Equal(t, registeredTask{ID: "custom", CodeHash: "custom-v1", CodeVersion: 1, AllowedNext: []string{"plain"},
		Timeout: 2, Retries: 0, RetryBackoff: "fixed", RetryDelayMs: 250, MaxRetryDelayMs: 60000, HeartbeatIntervalMs: 5000,
		Concurrency: 2, Priority: 0, IdempotencyTTL: 3600, Description: "custom task",
		RateLimit: &protocol.RateLimit{Limit: 10, PeriodMs: 1000}, ConcurrencyKey: "/customerId", ConcurrencyPerKey: 3}, tasks["custom"])
	// Defaults are the orchestrator's.
	require.Equal(t, 300, tasks["plain"].Timeout)
	require.Equal(t, 3, tasks["plain"].Retries)
	require.EqualValues(t, 60000, tasks["plain"].HeartbeatIntervalMs)
	require.Equal(t, 100, tasks["plain"].Priority)

	// Another worker of the same binary computes the same hash: no code change.
	w2 := e.newWorker("hashes")
	require.NoError(t, w2.Register("plain", worker.Options{}, noop))
	require.NoError(t, w2.Register("custom", worker.Options{CodeHash: "custom-v1"}, noop))
	resp = w2.register(t)
	require.Empty(t, resp.CodeChanges)
	require.Equal(t, 1, e.tasksOf("hashes")["plain"].CodeVersion)

	// Config.CodeHash overrides the default; Options.CodeHash still wins for its task.
	w3 := e.newWorker("hashes", func(c *worker.Config) { c.CodeHash = "release-42" })
	require.NoError(t, w3.Register("plain", worker.Options{}, noop))
	require.NoError(t, w3.Register("custom", worker.Options{CodeHash: "custom-v1"}, noop))
	resp = w3.register(t)
	require.Equal(t, []protocol.CodeChange{{TaskID: "plain", OldHash: tasks["plain"].CodeHash, NewHash: "release-42", OldVersion: 1, NewVersion: 2}}, resp.CodeChanges)
	tasks = e.tasksOf("hashes")
	require.Equal(t, "release-42", tasks["plain"].CodeHash)
	require.Equal(t, 2, tasks["plain"].CodeVersion)
	require.Equal(t, "custom-v1", tasks["custom"].CodeHash)

	// The dispatch carries the version, and the handler sees it.
	seen := make(chan [2]any, 1)
	w4 := e.newWorker("versions", func(c *worker.Config) { c.CodeHash = "h1" })
	require.NoError(t, w4.Register("versioned", worker.Options{}, func(ctx *worker.Context) (any, error) {
		seen <- [2]any{ctx.CodeVersion, ctx.CodeHash}
		return nil, nil
	}))
	w4.register(t)
	e.waitStatus(e.enqueue("versioned", nil), protocol.StatusCompleted)
	require.Equal(t, [2]any{1, "h1"}, recv(t, seen, "the handler"))
}

// A registration with the wrong secret or without a base URL is refused.
func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	noop := func(*worker.Context) (any, error) { return nil, nil }
	w := e.newWorker("svc", func(c *worker.Config) { c.SecretKey = "another secret that is long enough to use" })
	require.NoError(t, w.Register("t", worker.Options{}, noop))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.ErrorContains(t, err, "401")
	require.ErrorContains(t, err, "service key does not match the key this orchestrator derives from its secret")
	// Listen stops at a refused registration instead of retrying it.
	err = w.Listen(context.Background(), "127.0.0.1:0")
	require.ErrorContains(t, err, "401")

	nobase, err := worker.New(worker.Config{OrchestratorURL: e.url, ServiceID: "svc", Version: "1", SecretKey: testSecret,
		TempDir: t.TempDir(), Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, nobase.Register("t", worker.Options{}, noop))
	_, err = nobase.RegisterWithOrchestrator(context.Background())
	require.ErrorContains(t, err, "BaseURL")

	empty := e.newWorker("empty")
	_, err = empty.RegisterWithOrchestrator(context.Background())
	require.ErrorContains(t, err, "no task")
}

// Listen derives the base URL from its address, registers, serves dispatches, and on shutdown
// refuses new dispatches and cancels what outlives ShutdownTimeout, which reports a retryable
// WORKER_SHUTDOWN failure.
func TestListenRegistersServesAndShutsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w, err := worker.New(worker.Config{OrchestratorURL: e.url, ServiceID: "listener", Version: "1", SecretKey: testSecret,
		TempDir: t.TempDir(), ShutdownTimeout: 300 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	require.NoError(t, w.Register("quick", worker.Options{}, func(ctx *worker.Context) (any, error) {
		return "quick", nil
	}))
	require.NoError(t, w.Register("stuck", worker.Options{Retries: new(1), RetryDelay: time.Hour}, func(ctx *worker.Context) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- w.Listen(ctx, "127.0.0.1:0") }()

	var services []struct {
		ID      string `json:"id"`
		BaseURL string `json:"baseUrl"`
	}
	e.waitFor("the registration", func() bool {
		e.do("GET", "/api/services", nil).json(t, &services)
		return len(services) == 1
	})
	require.Equal(t, "listener", services[0].ID)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, services[0].BaseURL)
	e.waitStatus(e.enqueue("quick", nil), protocol.StatusCompleted)

	stuck := e.enqueue("stuck", nil)
	recv(t, started, "the stuck handler")
	cancel()
	require.EqualError(t, recv(t, causes, "the stuck handler's end"), "worker: shutting down")
	require.NoError(t, recv(t, served, "Listen to return"))
	r := e.waitStatus(stuck, protocol.StatusPending)
	require.Len(t, r.PreviousAttempts, 1)
	require.Equal(t, worker.CodeShutdown, r.PreviousAttempts[0].ErrorCode)

	// No longer serving.
	_, err = http.Get(services[0].BaseURL + "/health")
	require.Error(t, err)
}
