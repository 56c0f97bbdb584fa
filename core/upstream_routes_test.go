package core_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// upstreamRoutes is every route of upstream's packages/orchestrator/src/routes/*.ts
// (SaritraGmbH/pipeweave), method and path written out, with the ids filled in.
var upstreamRoutes = []string{
	// health.ts
	"GET /health",
	"GET /api/info",
	// services.ts
	"POST /api/register",
	"GET /api/services",
	"GET /api/services/svc",
	"GET /api/services/svc/tasks",
	// pipelines.ts
	"GET /api/pipelines",
	"GET /api/pipelines/p",
	"POST /api/pipelines/p/trigger",
	"POST /api/pipelines/p/dry-run",
	// queue.ts
	"POST /api/queue/task",
	"POST /api/queue/batch",
	"GET /api/queue/status",
	"GET /api/queue/items",
	"POST /api/tick",
	// runs.ts
	"GET /api/runs",
	"GET /api/runs/prun_x",
	"GET /api/task-runs/trun_x",
	// tasks.ts
	"POST /api/heartbeat",
	"POST /api/progress",
	"POST /api/callback/trun_x",
	"GET /api/tasks/t/history",
	"GET /api/tasks/t/input-schema",
	"POST /api/tasks/t/validate-input",
	// dlq.ts
	"GET /api/dlq",
	"GET /api/dlq/dlq_x",
	"POST /api/dlq/dlq_x/retry",
	"POST /api/dlq/purge",
	// storage.ts
	"GET /api/storage/backends",
	"GET /api/storage/runs/trun_x/output.json",
	// upload.ts
	"POST /api/upload/temp",
	"GET /api/upload/temp/tmp_x",
	"DELETE /api/upload/temp/tmp_x",
	"GET /api/upload/stats",
}

// newUpstreamEnv starts an orchestrator configured the way upstream's README writes it: the
// local backend with endpoint file:// and a bucket (from STORAGE_BACKENDS text, parsed as
// ConfigFromEnv parses it), an S3 backend with credentials beside it, and an API key.
func newUpstreamEnv(t *testing.T) (*env, *fakes3.Server, string) {
	t.Helper()
	s3 := fakes3.Start(t, fakes3.Options{})
	s3.CreateBucket(t, "archive")
	base := t.TempDir()
	text := fmt.Sprintf(`[
	  {"id":"primary","provider":"local","endpoint":"file://","bucket":"data","credentials":{"basePath":%q},"isDefault":true},
	  {"id":"archive","provider":"aws-s3","endpoint":%q,"bucket":"archive","region":%q,
	   "credentials":{"accessKeyId":%q,"secretAccessKey":%q}}]`, base, s3.URL, s3.Region, s3.AccessKey, s3.SecretKey)
	backends, err := storage.ParseConfigs(text)
	require.NoError(t, err)
	e := newEnv(t, func(c *core.Config) {
		c.StorageBackends = backends
		c.APIKeys = []string{"route-key"}
		c.InlinePayloadMaxBytes = 0 // every input is written to the backend, whose layout is checked
	})
	return e, s3, base
}

// TestUpstreamRoutesServed: every route upstream's orchestrator has is served here: whatever
// it answers, it is not the catch-all's 404 ROUTE_NOT_FOUND nor a 405.
func TestUpstreamRoutesServed(t *testing.T) {
	t.Parallel()
	e, _, _ := newUpstreamEnv(t)
	for _, route := range upstreamRoutes {
		method, path, _ := strings.Cut(route, " ")
		var body any
		if method == "POST" {
			body = `{}`
		}
		r := e.do(method, path, body, "route-key")
		require.NotEqual(t, http.StatusMethodNotAllowed, r.Status, "%s: %s", route, r.Body)
		if r.Status == http.StatusNotFound {
			require.NotEqual(t, "ROUTE_NOT_FOUND", r.errorBody(t).Code, "%s is not served", route)
		}
	}
}

// TestUpstreamRoutes: GET /api/info, POST /api/tick, GET /api/services/{id} and GET
// /api/storage/backends answer what upstream's do, need the API key like their neighbours, and
// the backends never show a credential.
func TestUpstreamRoutes(t *testing.T) {
	t.Parallel()
	e, s3, base := newUpstreamEnv(t)
	const key = "route-key"

	// The API key is required, as for the neighbours.
	for _, route := range []string{"GET /api/info", "POST /api/tick", "GET /api/services/svc", "GET /api/storage/backends"} {
		method, path, _ := strings.Cut(route, " ")
		r := e.do(method, path, nil, "")
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", route, r.Body)
		require.Equal(t, "UNAUTHORIZED", r.errorBody(t).Code)
		r = e.do(method, path, nil, "wrong-key")
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", route, r.Body)
	}

	// /api/info
	r := e.do("GET", "/api/info", nil, key)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var raw map[string]json.RawMessage
	r.json(t, &raw)
	for _, k := range []string{"version", "mode", "maxConcurrency", "pollIntervalMs", "storageBackends", "defaultStorageBackend", "uptime", "timestamp"} {
		require.Contains(t, raw, k)
	}
	var info protocol.Info
	r.json(t, &info)
	require.NotEmpty(t, info.Version)
	require.Equal(t, string(core.ModeServerless), info.Mode)
	require.Equal(t, e.cfg.MaxConcurrency, info.MaxConcurrency)
	require.Equal(t, e.cfg.PollInterval.Milliseconds(), info.PollIntervalMs)
	require.Equal(t, []string{"primary", "archive"}, info.StorageBackends)
	require.Equal(t, "primary", info.DefaultStorageBackend)
	require.GreaterOrEqual(t, info.Uptime, 0.0)
	require.WithinDuration(t, time.Now(), info.Timestamp, time.Hour)

	// /api/storage/backends: ids, providers, endpoints, buckets, regions; never a credential.
	r = e.do("GET", "/api/storage/backends", nil, key)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.JSONEq(t, fmt.Sprintf(`{"backends":[
		{"id":"primary","provider":"local","endpoint":"file://","bucket":"data","isDefault":true},
		{"id":"archive","provider":"aws-s3","endpoint":%q,"bucket":"archive","region":%q,"isDefault":false}],
		"default":"primary"}`, s3.URL, s3.Region), string(r.Body))
	for _, secret := range []string{s3.SecretKey, s3.AccessKey, base, "credentials", "basePath", "secretAccessKey"} {
		require.NotContains(t, string(r.Body), secret)
	}
	// The route is not taken for a storage key: an object named "backends" does not hide it.
	require.NoError(t, os.WriteFile(filepath.Join(base, "backends"), []byte(`{"an":"object"}`), 0o644))
	r = e.do("GET", "/api/storage/backends", nil, key)
	require.Contains(t, string(r.Body), `"default":"primary"`)
	r = e.do("GET", "/api/storage/backends/x.json", nil, key)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "OBJECT_NOT_FOUND", r.errorBody(t).Code)

	// /api/tick is /api/process.
	for _, path := range []string{"/api/tick", "/api/process"} {
		r = e.do("POST", path, nil, key)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var sum map[string]json.RawMessage
		r.json(t, &sum)
		for _, k := range []string{"swept", "claimed", "dispatched", "failed", "durationMs"} {
			require.Contains(t, sum, k, path)
		}
	}

	// /api/services/{id}: 404 unknown; the service with its task definitions.
	r = e.do("GET", "/api/services/nobody", nil, key)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "SERVICE_NOT_FOUND", r.errorBody(t).Code)
	w := newWorker(t, e.url)
	e.register("svc", "1.0.0", w.URL(), task("a", func(td *protocol.TaskDefinition) { td.AllowedNext = []string{"b"} }), task("b"))
	e.register("svc", "1.0.1", w.URL(), task("a"))
	r = e.do("GET", "/api/services/svc", nil, key)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var svc protocol.ServiceDetail
	r.json(t, &svc)
	require.Equal(t, "svc", svc.ID)
	require.Equal(t, "1.0.1", svc.Version)
	require.Equal(t, w.URL(), svc.BaseURL)
	require.Len(t, svc.Tasks, 2)
	require.Equal(t, "a", svc.Tasks[0].ID)
	require.Equal(t, "hash-a", svc.Tasks[0].CodeHash)
	require.Empty(t, svc.Tasks[0].RemovedInVersion)
	require.Equal(t, "b", svc.Tasks[1].ID)
	require.Equal(t, "1.0.1", svc.Tasks[1].RemovedInVersion)

	// The local backend written as upstream writes it keeps objects at basePath/key (its
	// bucket "data" is no directory), as upstream's Node LocalProvider reads them.
	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "a", "input": map[string]string{"doc": "x"}}, key)
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var q protocol.EnqueueResult
	r.json(t, &q)
	require.JSONEq(t, `{"doc":"x"}`, string(readFile(t, filepath.Join(base, q.InputPath))))
	require.NoDirExists(t, filepath.Join(base, "data"))
}
