package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/local" // the tests' storage backend
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const testSecret = testorch.Secret

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func baseEnv(t *testing.T, dbURL string) map[string]string {
	backends, err := json.Marshal([]map[string]any{{"id": "l", "provider": "local", "credentials": map[string]string{"basePath": t.TempDir()}}})
	require.NoError(t, err)
	return map[string]string{
		"DATABASE_URL":         dbURL,
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": testSecret,

		"WORKER_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128", // the test workers listen on loopback
	}
}

// serve runs Run in the background on a free port until the test ends; it returns the base URL.
func serve(t *testing.T, env map[string]string, build Builder) string {
	t.Helper()
	port := testutil.FreePort(t)
	env["PORT"] = strconv.Itoa(port)
	env["PIPEWEAVE_INSECURE_NO_AUTH"] = "1" // "test" is not a scheduled function: it needs keys or this
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &testutil.SyncBuffer{}
	go func() { done <- Run(ctx, "test", envOf(env), slog.New(slog.NewJSONHandler(logs, nil)), build) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, "graceful shutdown; logs:\n%s", logs)
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of its context ending")
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond, "logs:\n%s", logs)
	return base
}

func get(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json") // else a POST under /api/ is 415
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	return resp.StatusCode, out
}

func TestAPIServesHTTPInServerlessMode(t *testing.T) {
	t.Parallel()
	base := serve(t, baseEnv(t, testdb.NewURL(t)), API)
	status, health := get(t, "GET", base+"/health")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "serverless", health["mode"], "MODE defaults to serverless")
	status, summary := get(t, "POST", base+"/api/process")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, summary, "claimed")
}

func TestScheduledFunctionsServeHTTP(t *testing.T) {
	t.Parallel()
	dbURL := testdb.NewURL(t)
	for name, c := range map[string]struct {
		build Builder
		keys  []string
	}{
		"process":         {Process, []string{"swept", "claimed", "dispatched", "failed", "webhookDeliveries", "durationMs"}},
		"heartbeat-sweep": {HeartbeatSweep, []string{"swept", "durationMs"}},
		"dlq-purge":       {DLQPurge, []string{"dlq", "idempotencyKeys", "runs", "pipelineRuns", "tempUploads", "scheduleSlots", "webhookDeliveries", "durationMs"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base := serve(t, baseEnv(t, dbURL), c.build)
			status, summary := get(t, "POST", base+"/")
			require.Equal(t, http.StatusOK, status, "%v", summary)
			for _, k := range c.keys {
				require.Contains(t, summary, k)
			}
			require.Len(t, summary, len(c.keys))
			status, health := get(t, "GET", base+"/health")
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, "ok", health["database"])
			status, _ = get(t, "GET", base+"/")
			require.Equal(t, http.StatusMethodNotAllowed, status)
		})
	}
}

func TestConfiguration(t *testing.T) {
	t.Parallel()
	env := baseEnv(t, "postgres://pipeweave@127.0.0.1:1/pipeweave")
	cfg, err := Config(envOf(env))
	require.NoError(t, err)
	require.Equal(t, core.ModeServerless, cfg.Mode)

	env["MODE"] = string(core.ModeStandalone)
	cfg, err = Config(envOf(env))
	require.NoError(t, err)
	require.Equal(t, core.ModeStandalone, cfg.Mode, "outside Lambda standalone is allowed")
	env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9001"
	_, err = Config(envOf(env))
	var ce *core.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "MODE", ce.Var)

	err = Run(context.Background(), "api", envOf(map[string]string{}), slog.Default(), API)
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "DATABASE_URL", ce.Var)

	for _, bad := range []string{"soon", "99", "-5"} {
		_, err := DLQPurge(Env{Getenv: envOf(map[string]string{"PURGE_TIME_BUDGET_MS": bad})})
		require.ErrorAs(t, err, &ce, bad)
		require.Equal(t, "PURGE_TIME_BUDGET_MS", ce.Var)
	}
}

func TestRunFailsWhenThePortIsTaken(t *testing.T) {
	t.Parallel()
	base := serve(t, baseEnv(t, testdb.NewURL(t)), HeartbeatSweep)
	env := baseEnv(t, testdb.NewURL(t))
	u, err := url.Parse(base)
	require.NoError(t, err)
	port := u.Port()
	env["PORT"] = port
	err = Run(context.Background(), "heartbeat-sweep", envOf(env), slog.Default(), HeartbeatSweep)
	require.ErrorContains(t, err, "listen on port "+port)
}

// The api function needs PIPEWEAVE_API_KEYS (or PIPEWEAVE_INSECURE_NO_AUTH); the scheduled
// functions, which serve only /health and their platform-authenticated trigger, do not, and
// serve nothing of the API.
func TestAPIKeysRequiredByTheAPIFunctionOnly(t *testing.T) {
	t.Parallel()
	env := baseEnv(t, testdb.NewURL(t))
	log := slog.New(slog.DiscardHandler)
	_, _, err := Open(t.Context(), "api", envOf(env), log, API)
	var cfgErr *core.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "PIPEWEAVE_API_KEYS", cfgErr.Var)

	for name, build := range map[string]Builder{"process": Process, "heartbeat-sweep": HeartbeatSweep, "dlq-purge": DLQPurge} {
		f, release, err := Open(t.Context(), name, envOf(env), log, build)
		require.NoError(t, err, name)
		t.Cleanup(release)
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		require.Equal(t, http.StatusOK, rec.Code, "%s: %s", name, rec.Body)
	}

	env["PIPEWEAVE_API_KEYS"] = "k"
	_, release, err := Open(t.Context(), "api", envOf(env), log, API)
	require.NoError(t, err)
	release()
}

// heartbeat-sweep opens no storage backend, so its binary needs no driver: with a provider
// this test binary does not link (it links only local), heartbeat-sweep starts and sweeps
// while process refuses to start, naming the driver package to import.
func TestHeartbeatSweepNeedsNoStorageDriver(t *testing.T) {
	t.Parallel()
	env := baseEnv(t, testdb.NewURL(t))
	backends, err := json.Marshal([]map[string]any{{"id": "g", "provider": "gcs", "bucket": "b",
		"credentials": map[string]string{"projectId": "p", "clientEmail": "sa@p.iam.gserviceaccount.com", "privateKey": "unused"}}})
	require.NoError(t, err)
	env["STORAGE_BACKENDS"] = string(backends)
	log := slog.New(slog.DiscardHandler)

	f, release, err := Open(t.Context(), "heartbeat-sweep", envOf(env), log, HeartbeatSweep)
	require.NoError(t, err)
	t.Cleanup(release)
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `"swept":0`)

	_, _, err = Open(t.Context(), "process", envOf(env), log, Process)
	require.ErrorIs(t, err, storage.ErrUnsupportedProvider)
	require.ErrorContains(t, err, "github.com/pipeweave/pipeweave/core/storage/gcs")
}
