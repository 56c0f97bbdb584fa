package core_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

// guardRequest is one request with exactly the headers given: host ("" for the URL's),
// Content-Type ("" for none) and bearer ("" for none).
type guardRequest struct {
	method, path, host, contentType, bearer, body string
}

func (e *env) guarded(q guardRequest) response {
	e.t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	req, err := http.NewRequest(q.method, e.url+q.path, body)
	require.NoError(e.t, err)
	if q.host != "" {
		req.Host = q.host
	}
	if q.contentType != "" {
		req.Header.Set("Content-Type", q.contentType)
	}
	if q.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+q.bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{Status: resp.StatusCode, Body: raw}
}

// Without API keys the orchestrator does not start, unless the operator says
// PIPEWEAVE_INSECURE_NO_AUTH; the error names both variables.
func TestNoAPIKeysRefusesToStart(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	cfg := core.DefaultConfig()
	cfg.DatabaseURL, cfg.SecretKey, cfg.Mode = pool.Config().ConnString(), testSecret, core.ModeServerless
	cfg.StorageBackends = []storage.Config{{ID: "local", Provider: storage.ProviderLocal, Credentials: map[string]any{"basePath": t.TempDir()}}}

	_, err := core.New(t.Context(), cfg, core.Options{Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	require.Error(t, err)
	var cfgErr *core.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "PIPEWEAVE_API_KEYS", cfgErr.Var)
	require.Contains(t, err.Error(), "PIPEWEAVE_INSECURE_NO_AUTH=1")

	// With a key it starts.
	withKey := cfg
	withKey.APIKeys = []string{"k"}
	o, err := core.New(t.Context(), withKey, core.Options{Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	o.Close()

	// A scheduled function (NoAPI) starts without keys and serves nothing but /health.
	o, err = core.New(t.Context(), cfg, core.Options{Pool: pool, Logger: slog.New(slog.DiscardHandler), NoAPI: true})
	require.NoError(t, err)
	t.Cleanup(o.Close)
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, url: srv.URL}
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
	for _, path := range []string{"/api/queue/status", "/api/dlq", "/ui/", "/metrics"} {
		r := e.do("GET", path, nil, "")
		require.Equal(t, http.StatusNotFound, r.Status, "%s: %s", path, r.Body)
		require.Equal(t, "ROUTE_NOT_FOUND", r.errorBody(t).Code)
	}
}

// PIPEWEAVE_INSECURE_NO_AUTH serves without keys, says so loudly in the log and in /health.
func TestInsecureNoAuthIsVisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // the test harness runs with InsecureNoAuth
	require.True(t, e.cfg.InsecureNoAuth)
	var health map[string]any
	e.do("GET", "/health", nil, "").json(t, &health)
	require.Equal(t, "none", health["auth"])
	require.Contains(t, e.logs.String(), `"level":"WARN"`)
	require.Contains(t, e.logs.String(), "NO AUTHENTICATION")
	require.Equal(t, http.StatusOK, e.do("GET", "/api/queue/status", nil, "").Status)

	// With keys, InsecureNoAuth changes nothing: keys are required and /health says so.
	k := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"key"} })
	k.do("GET", "/health", nil, "").json(t, &health)
	require.Equal(t, "apiKey", health["auth"])
	require.NotContains(t, k.logs.String(), "NO AUTHENTICATION")
	require.Equal(t, http.StatusUnauthorized, k.do("GET", "/api/queue/status", nil, "").Status)
}

func TestConfigFromEnvAuth(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		over := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			over[kv[i]] = kv[i+1]
		}
		return configEnv(over)
	}
	cfg, err := core.ConfigFromEnv(env())
	require.NoError(t, err)
	require.False(t, cfg.InsecureNoAuth)
	require.Nil(t, cfg.AllowedHosts)
	for _, v := range []string{"1", "true", "TRUE", " True "} {
		cfg, err = core.ConfigFromEnv(env("PIPEWEAVE_INSECURE_NO_AUTH", v))
		require.NoError(t, err, v)
		require.True(t, cfg.InsecureNoAuth, v)
	}
	for _, v := range []string{"0", "false"} {
		cfg, err = core.ConfigFromEnv(env("PIPEWEAVE_INSECURE_NO_AUTH", v))
		require.NoError(t, err, v)
		require.False(t, cfg.InsecureNoAuth, v)
	}
	_, err = core.ConfigFromEnv(env("PIPEWEAVE_INSECURE_NO_AUTH", "yes please"))
	var cfgErr *core.ConfigError
	require.ErrorAs(t, err, &cfgErr)
	require.Equal(t, "PIPEWEAVE_INSECURE_NO_AUTH", cfgErr.Var)

	cfg, err = core.ConfigFromEnv(env("PIPEWEAVE_ALLOWED_HOSTS", " PipeWeave.Example.com, [::1] ,10.0.0.5,"))
	require.NoError(t, err)
	require.Equal(t, []string{"pipeweave.example.com", "::1", "10.0.0.5"}, cfg.AllowedHosts)
	cfg, err = core.ConfigFromEnv(env("PIPEWEAVE_ALLOWED_HOSTS", "*"))
	require.NoError(t, err)
	require.Equal(t, []string{"*"}, cfg.AllowedHosts)
	for _, bad := range []string{"example.com:3000", "http://example.com", ",", "a b"} {
		_, err = core.ConfigFromEnv(env("PIPEWEAVE_ALLOWED_HOSTS", bad))
		require.ErrorAs(t, err, &cfgErr, bad)
		require.Equal(t, "PIPEWEAVE_ALLOWED_HOSTS", cfgErr.Var, bad)
	}
}

// dlqEntry makes one open DLQ entry (a task that fails for good) and returns its id.
func dlqEntry(t *testing.T, e *env) string {
	t.Helper()
	w := newPWorker(t, e)
	w.on("fragile", failWith("down", false))
	e.register("svc", "1", w.URL(), task("fragile"))
	e.waitStatus(e.enqueue(map[string]any{"taskId": "fragile"}).RunID, protocol.StatusFailed)
	items := e.dlq("").Items
	require.Len(t, items, 1)
	return items[0].ID
}

// The cross-site simple request of the security review: a page's no-cors POST with a
// text/plain body and no Authorization. It is refused before the body is read, with or without
// API keys, and purges nothing; the same purge as JSON does.
func TestCrossSiteSimpleRequestRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keys []string
	}{{"insecure no auth", nil}, {"api keys", []string{"the-key"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The entry is made through an orchestrator without keys (the harness's helpers send
			// none); the one under test shares its database.
			setup := newEnv(t)
			dlqEntry(t, setup)
			e := newEnvOn(t, setup.pool, func(c *core.Config) { c.APIKeys = tc.keys })
			key := ""
			if tc.keys != nil {
				key = tc.keys[0]
			}
			_, err := e.pool.Exec(t.Context(), "UPDATE dlq SET failed_at = now() - interval '1 hour'")
			require.NoError(t, err)
			for _, ct := range []string{"text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
				r := e.guarded(guardRequest{method: "POST", path: "/api/dlq/purge", contentType: ct, body: `{"olderThan":"1ms"}`})
				if tc.keys == nil {
					require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "%s: %s", ct, r.Body)
					require.Equal(t, "UNSUPPORTED_MEDIA_TYPE", r.errorBody(t).Code)
				} else {
					require.Contains(t, []int{http.StatusUnsupportedMediaType, http.StatusUnauthorized}, r.Status, "%s: %s", ct, r.Body)
				}
				// Even with the key, the type is required.
				r = e.guarded(guardRequest{method: "POST", path: "/api/dlq/purge", contentType: ct, bearer: key, body: `{"olderThan":"1ms"}`})
				require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "%s: %s", ct, r.Body)
			}
			require.Equal(t, 1, e.count("SELECT count(*) FROM dlq"), "nothing was purged")

			var purged struct {
				Deleted int `json:"deleted"`
			}
			r := e.guarded(guardRequest{method: "POST", path: "/api/dlq/purge", contentType: "application/json; charset=utf-8", bearer: key, body: `{"olderThan":"1ms"}`})
			require.Equal(t, http.StatusOK, r.Status, string(r.Body))
			r.json(t, &purged)
			require.Equal(t, 1, purged.Deleted)
		})
	}
}

// Every mutating route under /api/ wants JSON (multipart for the upload); a request without a
// body may omit the type only with a valid API key, never without keys.
func TestUnsupportedMediaType(t *testing.T) {
	t.Parallel()
	const key = "media-key"
	keyed := newEnv(t, func(c *core.Config) { c.APIKeys = []string{key} })
	open := newEnv(t)

	// Refused with every key there is, on every kind of mutating route.
	for _, e := range []*env{keyed, open} {
		for _, q := range []guardRequest{
			{method: "POST", path: "/api/queue/task", contentType: "text/plain", body: `{"taskId":"t"}`},
			{method: "POST", path: "/api/queue/task", contentType: "application/jsonx", body: `{"taskId":"t"}`},
			{method: "POST", path: "/api/queue/task", body: `{"taskId":"t"}`},
			{method: "PUT", path: "/api/pipelines/p", contentType: "text/plain", body: `{}`},
			{method: "DELETE", path: "/api/upload/temp/tmp_x", contentType: "text/plain", body: "x"},
			{method: "POST", path: "/api/upload/temp", contentType: "application/json", body: `{}`},
			{method: "POST", path: "/api/upload/temp", contentType: "text/plain", body: "x"},
			{method: "POST", path: "/api/register", contentType: "text/plain", body: `{}`},
			{method: "POST", path: "/api/callback/trun_x", contentType: "text/plain", body: `{}`},
			{method: "POST", path: "/api/heartbeat", contentType: "text/plain", body: `{}`},
			{method: "POST", path: "/api/maintenance/enter", contentType: "text/plain"},
		} {
			q.bearer = key
			r := e.guarded(q)
			require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "%s %s %q: %s", q.method, q.path, q.contentType, r.Body)
			b := r.errorBody(t)
			require.Equal(t, "UNSUPPORTED_MEDIA_TYPE", b.Code)
			require.Contains(t, b.Error, "Content-Type")
		}
	}
	require.Zero(t, keyed.count("SELECT count(*) FROM task_runs")+open.count("SELECT count(*) FROM task_runs"))

	// No body, no type: allowed with a valid key only.
	r := keyed.guarded(guardRequest{method: "POST", path: "/api/maintenance/enter", bearer: key})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	// A scheduler's or curl's bodiless POST /api/process with the key (deploy/*/README.md).
	r = keyed.guarded(guardRequest{method: "POST", path: "/api/process", bearer: key})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = keyed.guarded(guardRequest{method: "POST", path: "/api/maintenance/exit", bearer: "wrong"})
	require.Equal(t, http.StatusUnsupportedMediaType, r.Status, string(r.Body))
	r = open.guarded(guardRequest{method: "POST", path: "/api/maintenance/enter"})
	require.Equal(t, http.StatusUnsupportedMediaType, r.Status, string(r.Body))
	var m struct {
		Mode string `json:"mode"`
	}
	open.do("GET", "/api/maintenance", nil, "").json(t, &m)
	require.Equal(t, "running", m.Mode, "the refused request changed nothing")

	// JSON with parameters, and an empty JSON request, are fine.
	r = open.guarded(guardRequest{method: "POST", path: "/api/maintenance/enter", contentType: "Application/JSON; charset=utf-8"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = open.guarded(guardRequest{method: "POST", path: "/api/process", contentType: "application/json"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	// Reads need no type.
	r = open.guarded(guardRequest{method: "GET", path: "/api/queue/status", contentType: "text/plain"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

// Without PIPEWEAVE_ALLOWED_HOSTS an orchestrator without keys answers only local names (DNS
// rebinding); with keys it answers any; with a list only the names listed (any port); /health
// answers whatever the host.
func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	check := func(e *env, host string, want int) {
		t.Helper()
		r := e.guarded(guardRequest{method: "GET", path: "/api/queue/status", host: host, bearer: "k"})
		require.Equal(t, want, r.Status, "%s: %s", host, r.Body)
		if want == http.StatusMisdirectedRequest {
			require.Equal(t, "MISDIRECTED_REQUEST", r.errorBody(t).Code)
			h := e.guarded(guardRequest{method: "GET", path: "/health", host: host})
			require.Equal(t, http.StatusOK, h.Status, "/health with host %s: %s", host, h.Body)
		}
	}
	open := newEnv(t)
	for _, h := range []string{"localhost", "localhost:3000", "127.0.0.1:8080", "[::1]:3000", "LOCALHOST.", "127.0.0.1"} {
		check(open, h, http.StatusOK)
	}
	for _, h := range []string{"attacker.example", "attacker.example:3000", "127.0.0.2", "localhost.attacker.example", "10.0.0.5:3000"} {
		check(open, h, http.StatusMisdirectedRequest)
	}
	// The rebinding page's POST is refused before anything runs, and so is the dashboard.
	r := open.guarded(guardRequest{method: "POST", path: "/api/maintenance/enter", host: "attacker.example:3000", contentType: "application/json"})
	require.Equal(t, http.StatusMisdirectedRequest, r.Status, string(r.Body))
	require.Equal(t, http.StatusMisdirectedRequest, open.guarded(guardRequest{method: "GET", path: "/ui/", host: "attacker.example"}).Status)

	keyed := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"k"} })
	check(keyed, "anything.example:3000", http.StatusOK)
	check(keyed, "10.0.0.5", http.StatusOK)

	listed := newEnv(t, func(c *core.Config) {
		c.APIKeys = []string{"k"}
		c.AllowedHosts = []string{"pipeweave.example.com", "::1"}
	})
	check(listed, "pipeweave.example.com", http.StatusOK)
	check(listed, "PipeWeave.Example.com:8443", http.StatusOK)
	check(listed, "[::1]:3000", http.StatusOK)
	check(listed, "localhost", http.StatusMisdirectedRequest)
	check(listed, "other.example.com", http.StatusMisdirectedRequest)

	star := newEnv(t, func(c *core.Config) { c.AllowedHosts = []string{"*"} })
	check(star, "anything.example", http.StatusOK)
}
