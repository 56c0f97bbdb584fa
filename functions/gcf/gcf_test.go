package gcf_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/functions/gcf"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// The entry points have the signature of funcframework.RegisterHTTPFunctionContext.
var _ = []func(http.ResponseWriter, *http.Request){gcf.API, gcf.Process, gcf.HeartbeatSweep, gcf.DLQPurge}

func envOf(t *testing.T, dbURL string, kv ...string) func(string) string {
	backends, err := json.Marshal([]map[string]any{{"id": "l", "provider": "local", "credentials": map[string]string{"basePath": t.TempDir()}}})
	require.NoError(t, err)
	env := map[string]string{
		"DATABASE_URL":         dbURL,
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": testorch.Secret,

		"PIPEWEAVE_INSECURE_NO_AUTH": "1",
		"WORKER_ALLOWED_NETWORKS":    "127.0.0.0/8,::1/128", // the test workers listen on loopback
	}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return func(k string) string { return env[k] }
}

// serve serves a Set the way funcframework serves functions registered by path.
func serve(t *testing.T, s *gcf.Set) string {
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.API)
	for name, h := range map[string]http.HandlerFunc{"process": s.Process, "heartbeat-sweep": s.HeartbeatSweep, "dlq-purge": s.DLQPurge} {
		mux.HandleFunc("/"+name, gcf.Mount("/"+name, h))
		mux.HandleFunc("/"+name+"/", gcf.Mount("/"+name, h))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return srv.URL
}

func call(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	return resp.StatusCode, out
}

func TestSetServesTheFourFunctions(t *testing.T) {
	t.Parallel()
	base := serve(t, gcf.New(envOf(t, testdb.NewURL(t))))

	status, health := call(t, "GET", base+"/health")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "serverless", health["mode"])
	status, qs := call(t, "GET", base+"/api/queue/status")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, qs, "pending")

	for path, keys := range map[string][]string{
		"/process":         {"swept", "claimed", "dispatched", "failed", "webhookDeliveries", "durationMs"},
		"/heartbeat-sweep": {"swept", "durationMs"},
		"/dlq-purge":       {"dlq", "idempotencyKeys", "runs", "pipelineRuns", "tempUploads", "scheduleSlots", "webhookDeliveries", "durationMs"},
	} {
		status, summary := call(t, "POST", base+path)
		require.Equal(t, http.StatusOK, status, "%s: %v", path, summary)
		require.Len(t, summary, len(keys), path)
		for _, k := range keys {
			require.Contains(t, summary, k, path)
		}
		status, health := call(t, "GET", base+path+"/health")
		require.Equal(t, http.StatusOK, status, path)
		require.Equal(t, "ok", health["database"])
		status, _ = call(t, "GET", base+path)
		require.Equal(t, http.StatusMethodNotAllowed, status, path)
	}
}

func TestSetAnswersConfigurationErrors(t *testing.T) {
	t.Parallel()
	base := serve(t, gcf.New(func(string) string { return "" }))
	status, body := call(t, "GET", base+"/health")
	require.Equal(t, http.StatusInternalServerError, status)
	require.Equal(t, "CONFIGURATION", body["code"])
	require.Contains(t, body["error"], "DATABASE_URL")

	base = serve(t, gcf.New(envOf(t, "postgres://pipeweave@127.0.0.1:1/pipeweave", "MODE", "standalone")))
	status, body = call(t, "POST", base+"/process")
	require.Equal(t, http.StatusInternalServerError, status)
	require.Equal(t, "CONFIGURATION", body["code"])
	require.Contains(t, body["error"], "MODE")

	base = serve(t, gcf.New(envOf(t, "postgres://pipeweave@127.0.0.1:1/pipeweave", "PURGE_TIME_BUDGET_MS", "soon")))
	status, body = call(t, "POST", base+"/dlq-purge")
	require.Equal(t, http.StatusInternalServerError, status)
	require.Contains(t, body["error"], "PURGE_TIME_BUDGET_MS")
	status, _ = call(t, "GET", base+"/health")
	require.Equal(t, http.StatusServiceUnavailable, status, "the other functions of the Set still open")
}

func TestSetWhileTheDatabaseRefusesConnections(t *testing.T) {
	t.Parallel()
	base := serve(t, gcf.New(envOf(t, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?connect_timeout=5", testutil.FreePort(t)))))
	status, body := call(t, "POST", base+"/process")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "DATABASE_UNAVAILABLE", body["code"])
	status, body = call(t, "POST", base+"/api/queue/task")
	require.Equal(t, http.StatusUnsupportedMediaType, status, "a client mistake is still a 4xx: %v", body)
}

func TestPackageEntryPointsReadTheEnvironment(t *testing.T) {
	t.Parallel()
	if os.Getenv("DATABASE_URL") != "" {
		t.Skip("DATABASE_URL is set in the environment")
	}
	rec := httptest.NewRecorder()
	gcf.Process(rec, httptest.NewRequest("POST", "/", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	var b protocol.ErrorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &b))
	require.Equal(t, "CONFIGURATION", b.Code)
	require.Contains(t, b.Error, "DATABASE_URL")
}
