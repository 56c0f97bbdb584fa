package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// In standalone mode the loop wakes on NOTIFY from another instance: with polling set to an
// hour, a run enqueued through instance A is claimed by instance B's loop.
func TestStandaloneLoopWakesOnNotify(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	b := newEnvOn(t, a.pool, func(c *core.Config) { c.Mode = core.ModeStandalone; c.PollInterval = time.Hour })
	w := newWorker(t, a.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	a.register("svc", "1", w.URL(), task("t"))
	signals := b.orch.LoopSignals()
	b.runLoop()
	// The loop's first pass (nothing to claim yet) and its LISTEN are done: from now on only a
	// NOTIFY wakes it. A's loop does not run.
	signals.Listening(t)
	require.Zero(t, signals.Pass(t))
	ids := a.enqueueMany("t", 30)
	for claimed := 0; claimed < len(ids); {
		claimed += signals.Pass(t)
	}
	for _, id := range ids {
		a.waitStatus(id, protocol.StatusCompleted)
	}
}

// The standalone loop also drains work with polling alone, and honours MAX_CONCURRENCY.
func TestStandaloneLoopDrainsQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone; c.MaxConcurrency = 4; c.ProcessBatchSize = 7 })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) {
		time.Sleep(time.Millisecond)
		w.callback(d, success(d))
	}
	e.register("svc", "1", w.URL(), task("t"))
	e.runLoop()
	ids := e.enqueueMany("t", 200)
	for _, id := range ids {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	var st map[string]any
	e.do("GET", "/api/queue/status", nil, "").json(t, &st)
	require.EqualValues(t, 200, st["completed"])
	require.EqualValues(t, 0, st["pending"])
	require.EqualValues(t, 0, st["running"])
}

// An unreachable database gives 503, and the server recovers when the database returns.
func TestDatabaseOutageGives503AndRecovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Attached: true, Settings: map[string]string{"fsync": "off"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	require.NoError(t, cluster.EnsureDatabase(ctx, "pw"))
	url := cluster.URL("pw")
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 2})
	require.NoError(t, err)
	_, err = migrate.Up(ctx, pool)
	require.NoError(t, err)
	pool.Close()

	cfg := core.DefaultConfig()
	cfg.DatabaseURL, cfg.SecretKey, cfg.Mode = url, testSecret, core.ModeServerless
	cfg.StorageBackends = []storage.Config{{ID: "local", Provider: "local", Credentials: map[string]any{"basePath": t.TempDir()}}}
	cfg.DispatchTimeout, cfg.ProcessBatchSize = time.Second, 10
	cfg.InsecureNoAuth = true
	o, err := core.New(ctx, cfg, core.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(o.Close)
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, url: srv.URL}

	require.Equal(t, http.StatusOK, e.do("GET", "/api/queue/status", nil, "").Status)
	require.NoError(t, cluster.Stop(ctx))

	for _, path := range []string{"/api/queue/status", "/api/services", "/api/dlq"} {
		r := e.do("GET", path, nil, "")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s: %s", path, r.Body)
		require.Equal(t, "DATABASE_UNAVAILABLE", r.errorBody(t).Code)
	}
	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "t"}, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Equal(t, http.StatusServiceUnavailable, e.do("GET", "/health", nil, "").Status)

	cluster, err = pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Attached: true, Settings: map[string]string{"fsync": "off"}})
	require.NoError(t, err)
	e.waitFor("recovery", func() bool { return e.do("GET", "/api/queue/status", nil, "").Status == http.StatusOK })
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
}

func TestQueueItemsAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("a"), task("b"))
	aIDs := e.enqueueManyQuiet("a", 5)
	bIDs := e.enqueueManyQuiet("b", 3)

	var st struct {
		Pending       int        `json:"pending"`
		OldestPending *time.Time `json:"oldestPending"`
	}
	e.do("GET", "/api/queue/status", nil, "").json(t, &st)
	require.Equal(t, 8, st.Pending)
	require.NotNil(t, st.OldestPending)

	type page struct {
		Items      []run  `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	var seen []string
	cursor := ""
	for {
		var p page
		e.do("GET", "/api/queue/items?taskId=a&limit=2&cursor="+cursor, nil, "").json(t, &p)
		for _, r := range p.Items {
			require.Equal(t, "a", r.TaskID)
			seen = append(seen, r.ID)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	// Newest first.
	require.Equal(t, []string{aIDs[4], aIDs[3], aIDs[2], aIDs[1], aIDs[0]}, seen)

	var p page
	e.do("GET", "/api/queue/items?status=pending", nil, "").json(t, &p)
	require.Len(t, p.Items, 8)
	e.do("GET", "/api/queue/items?status=completed", nil, "").json(t, &p)
	require.Empty(t, p.Items)
	_ = bIDs
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := configEnv
	cfg, err := core.ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, core.ModeStandalone, cfg.Mode)
	require.Equal(t, 10, cfg.MaxConcurrency)
	require.Equal(t, time.Second, cfg.PollInterval)
	require.Equal(t, 30*24*time.Hour, cfg.DLQRetention)
	require.Equal(t, 24*time.Hour, cfg.IdempotencyTTL)
	require.Equal(t, 24*time.Hour, cfg.MaxRetryDelay)
	require.Equal(t, 3000, cfg.Port)
	want := core.DefaultConfig()
	want.DatabaseURL, want.StorageBackends, want.SecretKey = cfg.DatabaseURL, cfg.StorageBackends, cfg.SecretKey
	require.Equal(t, want, cfg, "unset variables take DefaultConfig's values")

	cfg, err = core.ConfigFromEnv(env(map[string]string{"MODE": "serverless", "MAX_CONCURRENCY": "50", "PIPEWEAVE_API_KEYS": " a, b ,,", "PIPEWEAVE_COMPAT": "node-sdk-v1"}))
	require.NoError(t, err)
	require.Equal(t, core.ModeServerless, cfg.Mode)
	require.Equal(t, 50, cfg.MaxConcurrency)
	require.Equal(t, []string{"a", "b"}, cfg.APIKeys)

	bad := map[string]map[string]string{
		"DATABASE_URL":               {"DATABASE_URL": ""},
		"STORAGE_BACKENDS":           {"STORAGE_BACKENDS": "[{]"},
		"PIPEWEAVE_SECRET_KEY":       {"PIPEWEAVE_SECRET_KEY": "short"},
		"MODE":                       {"MODE": "cluster"},
		"MAX_CONCURRENCY":            {"MAX_CONCURRENCY": "ten"},
		"POLL_INTERVAL_MS":           {"POLL_INTERVAL_MS": "-1"},
		"PORT":                       {"PORT": "99999"},
		"PIPEWEAVE_COMPAT":           {"PIPEWEAVE_COMPAT": "node-sdk-v9"},
		"DEFAULT_STORAGE_BACKEND_ID": {"DEFAULT_STORAGE_BACKEND_ID": "missing"},
	}
	for name, over := range bad {
		_, err := core.ConfigFromEnv(env(over))
		require.Error(t, err, name)
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, name, ce.Var)
		require.NotContains(t, err.Error(), "\n", "one line")
		require.Contains(t, err.Error(), name)
	}
	// A broken storage backend names the backend and the field.
	_, err = core.ConfigFromEnv(env(map[string]string{"STORAGE_BACKENDS": `[{"id":"disk","provider":"local","credentials":{}}]`}))
	require.ErrorContains(t, err, `"disk"`)
	require.ErrorContains(t, err, "basePath")
}

// In standalone mode a pipeline's next step is claimed and dispatched by the request that made
// it ready (the trigger, the callback of its predecessor), after its answer, instead of waiting
// for the loop: with no loop running at all, a diamond completes.
func TestStandalonePipelineStepsDispatchAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone; c.PollInterval = time.Hour })
	w := newPWorker(t, e)
	diamond(e, w.URL())
	id := e.trigger("dia", map[string]any{"input": map[string]int{"n": 1}})
	r := e.waitRun(id, "completed")
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "completed", "d": "completed"}, r.states())
	require.Len(t, w.all(), 4, "each step dispatched once")
}

// Inline dispatches race the loop and each other: many diamonds triggered at once, with the
// loop running, still dispatch each step of each run exactly once.
func TestStandaloneInlineDispatchRacesLoop(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
		w := newPWorker(t, e)
		diamond(e, w.URL())
		e.runLoop()
		const runs = 20
		ids := make(chan string, runs)
		errs := make(chan error, runs)
		var wg sync.WaitGroup
		for i := range runs {
			wg.Go(func() {
				r, err := e.send("POST", "/api/pipelines/dia/trigger", map[string]any{"input": map[string]int{"n": i}}, "")
				if err == nil && r.Status != http.StatusCreated {
					err = fmt.Errorf("trigger: %d %s", r.Status, r.Body)
				}
				var out struct {
					PipelineRunID string `json:"pipelineRunId"`
				}
				if err == nil {
					err = json.Unmarshal(r.Body, &out)
				}
				errs <- err
				ids <- out.PipelineRunID
			})
		}
		wg.Wait()
		close(ids)
		close(errs)
		for err := range errs {
			require.NoError(t, err, "round %d", round)
		}
		for id := range ids {
			e.waitRun(id, "completed")
		}
		seen := map[string]int{}
		for _, d := range w.all() {
			seen[fmt.Sprintf("%s/%d", d.RunID, d.Attempt)]++
			require.Equal(t, 1, d.Attempt, "no step was retried")
		}
		require.Len(t, seen, 4*runs, "round %d", round)
		for k, n := range seen {
			require.Equal(t, 1, n, "dispatches of %s", k)
		}
	}
}
