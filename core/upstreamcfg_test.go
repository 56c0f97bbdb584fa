package core_test

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// upstreamEnvExample is upstream's packages/orchestrator/.env.example as a .env loader gives it
// to the process (the single quotes around STORAGE_BACKENDS removed), every value as written.
var upstreamEnvExample = map[string]string{
	"DATABASE_URL":               "postgres://user:password@localhost:5432/pipeweave",
	"STORAGE_BACKENDS":           `[{"id":"primary","provider":"local","endpoint":"file://","bucket":"data","credentials":{"basePath":"./storage"},"isDefault":true}]`,
	"DEFAULT_STORAGE_BACKEND_ID": "primary",
	"PIPEWEAVE_SECRET_KEY":       "dev-secret-key-32-bytes-long!!",
	"MODE":                       "standalone",
	"MAX_CONCURRENCY":            "10",
	"POLL_INTERVAL_MS":           "1000",
	"PORT":                       "3000",
	"DLQ_RETENTION_DAYS":         "30",
	"IDEMPOTENCY_TTL_SECONDS":    "86400",
	"MAX_RETRY_DELAY_MS":         "86400000",
	"NODE_ENV":                   "development",
}

// envOf is a getenv over base with changes applied ("" removes a variable).
func envOf(base map[string]string, changes ...string) func(string) string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(changes); i += 2 {
		if changes[i+1] == "" {
			delete(m, changes[i])
		} else {
			m[changes[i]] = changes[i+1]
		}
	}
	return func(k string) string { return m[k] }
}

// configErr requires err to be a *core.ConfigError naming variable.
func configErr(t *testing.T, err error, variable string) *core.ConfigError {
	t.Helper()
	var ce *core.ConfigError
	require.True(t, errors.As(err, &ce), "want a ConfigError naming %s, got %v", variable, err)
	require.Equal(t, variable, ce.Var, ce.Error())
	return ce
}

// Upstream's .env.example is accepted in compat mode as it is: its local backend with endpoint
// file:// and a bucket, and its 30-byte secret. Default mode still refuses that secret.
func TestConfigUpstreamEnvExample(t *testing.T) {
	t.Parallel()
	_, err := core.ConfigFromEnv(envOf(upstreamEnvExample))
	ce := configErr(t, err, "PIPEWEAVE_SECRET_KEY")
	require.Contains(t, ce.Msg, "at least 32 bytes")
	require.Contains(t, ce.Msg, "node-sdk-v1")

	cfg, err := core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_COMPAT", string(core.CompatNodeSDKv1)))
	require.NoError(t, err)
	require.Equal(t, "postgres://user:password@localhost:5432/pipeweave", cfg.DatabaseURL)
	require.Equal(t, "dev-secret-key-32-bytes-long!!", cfg.SecretKey)
	require.Len(t, cfg.StorageBackends, 1)
	b := cfg.StorageBackends[0]
	require.Equal(t, "primary", b.ID)
	require.Equal(t, "local", b.Provider)
	require.Equal(t, "file://", b.Endpoint)
	require.Equal(t, "data", b.Bucket)
	require.Equal(t, "primary", cfg.DefaultStorageBackendID)
	require.Equal(t, core.ModeStandalone, cfg.Mode)
	require.Equal(t, 10, cfg.MaxConcurrency)
	require.Equal(t, time.Second, cfg.PollInterval)
	require.Equal(t, 3000, cfg.Port)
	require.Equal(t, 30*24*time.Hour, cfg.DLQRetention)

	// A secret of any non-empty length in compat mode; an empty one is still missing.
	_, err = core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_COMPAT", string(core.CompatNodeSDKv1), "PIPEWEAVE_SECRET_KEY", "x"))
	require.NoError(t, err)
	_, err = core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_COMPAT", string(core.CompatNodeSDKv1), "PIPEWEAVE_SECRET_KEY", ""))
	configErr(t, err, "PIPEWEAVE_SECRET_KEY")
	// Default mode keeps the rule: 31 bytes refused, 32 accepted.
	_, err = core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_SECRET_KEY", strings.Repeat("s", 31)))
	configErr(t, err, "PIPEWEAVE_SECRET_KEY")
	_, err = core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_SECRET_KEY", strings.Repeat("s", 32)))
	require.NoError(t, err)

	// The local endpoint must be a file:// URL when it is set.
	_, err = core.ConfigFromEnv(envOf(upstreamEnvExample, "PIPEWEAVE_COMPAT", string(core.CompatNodeSDKv1), "STORAGE_BACKENDS",
		`[{"id":"primary","provider":"local","endpoint":"http://example.com","credentials":{"basePath":"./storage"}}]`))
	ce = configErr(t, err, "STORAGE_BACKENDS")
	require.Contains(t, ce.Msg, "file://")
}

// upstreamDB is upstream's "Option 2: individual credentials" of its .env.example.
var upstreamDB = map[string]string{
	"DB_HOST": "localhost", "DB_PORT": "5432", "DB_NAME": "pipeweave", "DB_USER": "pipeweave",
	"DB_PASSWORD": "pipeweave", "DB_SSL": "false", "DB_POOL_MAX": "10",
	"STORAGE_BACKENDS":     `[{"id":"primary","provider":"local","endpoint":"file://","bucket":"data","credentials":{"basePath":"./storage"},"isDefault":true}]`,
	"PIPEWEAVE_SECRET_KEY": testSecret,
}

// Upstream's DB_* variables make the database URL when DATABASE_URL is unset.
func TestConfigUpstreamDatabaseVariables(t *testing.T) {
	t.Parallel()
	cfg, err := core.ConfigFromEnv(envOf(upstreamDB))
	require.NoError(t, err)
	require.Equal(t, "postgres://pipeweave:pipeweave@localhost:5432/pipeweave?sslmode=disable", cfg.DatabaseURL)
	require.Equal(t, 10, cfg.DBMaxConns)

	// Every part is escaped: the driver reads back exactly what was set.
	url, err := core.DatabaseURLFromEnv(envOf(upstreamDB, "DB_USER", "us er@x", "DB_PASSWORD", " p@ss:w/rd?#%&= ",
		"DB_NAME", "my db/x", "DB_HOST", "db.example.com", "DB_PORT", "6543", "DB_SSL", "true"))
	require.NoError(t, err)
	pc, err := pgconn.ParseConfig(url)
	require.NoError(t, err, url)
	require.Equal(t, "db.example.com", pc.Host)
	require.Equal(t, uint16(6543), pc.Port)
	require.Equal(t, "my db/x", pc.Database)
	require.Equal(t, "us er@x", pc.User)
	require.Equal(t, " p@ss:w/rd?#%&= ", pc.Password)
	require.NotNil(t, pc.TLSConfig, "DB_SSL=true is sslmode=require")
	require.Contains(t, url, "sslmode=require")

	// An IPv6 address, a Unix socket directory (Cloud SQL), no password, no DB_SSL.
	url, err = core.DatabaseURLFromEnv(envOf(upstreamDB, "DB_HOST", "::1", "DB_PASSWORD", "", "DB_SSL", ""))
	require.NoError(t, err)
	require.Equal(t, "postgres://pipeweave@[::1]:5432/pipeweave", url)
	url, err = core.DatabaseURLFromEnv(envOf(upstreamDB, "DB_HOST", "/cloudsql/proj:europe-west1:db"))
	require.NoError(t, err)
	pc, err = pgconn.ParseConfig(url)
	require.NoError(t, err, url)
	require.Equal(t, "/cloudsql/proj:europe-west1:db", pc.Host)
	require.Equal(t, "pipeweave", pc.Database)
	// Upstream's aliases.
	url, err = core.DatabaseURLFromEnv(envOf(upstreamDB, "DB_NAME", "", "DB_DATABASE", "alt", "DB_USER", "", "DB_USERNAME", "bob",
		"DB_PASSWORD", "", "DB_PASS", "pw"))
	require.NoError(t, err)
	require.Equal(t, "postgres://bob:pw@localhost:5432/alt?sslmode=disable", url)

	// DATABASE_URL wins over the DB_* variables.
	cfg, err = core.ConfigFromEnv(envOf(upstreamDB, "DATABASE_URL", "postgres://u@h/d"))
	require.NoError(t, err)
	require.Equal(t, "postgres://u@h/d", cfg.DatabaseURL)
	// DB_MAX_CONNS wins over DB_POOL_MAX.
	cfg, err = core.ConfigFromEnv(envOf(upstreamDB, "DB_MAX_CONNS", "3"))
	require.NoError(t, err)
	require.Equal(t, 3, cfg.DBMaxConns)

	// Bad values name their variable.
	for _, c := range []struct {
		changes  []string
		variable string
	}{
		{[]string{"DB_PORT", "54x32"}, "DB_PORT"},
		{[]string{"DB_PORT", "70000"}, "DB_PORT"},
		{[]string{"DB_PORT", "0"}, "DB_PORT"},
		{[]string{"DB_SSL", "maybe"}, "DB_SSL"},
		{[]string{"DB_POOL_MAX", "0"}, "DB_POOL_MAX"},
		{[]string{"DB_POOL_MAX", "many"}, "DB_POOL_MAX"},
		{[]string{"DB_NAME", ""}, "DB_NAME"},
		{[]string{"DB_USER", ""}, "DB_USER"},
		{[]string{"DB_HOST", ""}, "DB_HOST"},
		{[]string{"DATABASE_URL", "mysql://x"}, "DATABASE_URL"},
	} {
		_, err := core.ConfigFromEnv(envOf(upstreamDB, c.changes...))
		ce := configErr(t, err, c.variable)
		if c.variable == "DB_PORT" {
			require.Contains(t, ce.Error(), c.changes[1])
		}
	}
	// Neither DATABASE_URL nor DB_HOST: DATABASE_URL is missing.
	only := map[string]string{"STORAGE_BACKENDS": upstreamDB["STORAGE_BACKENDS"], "PIPEWEAVE_SECRET_KEY": upstreamDB["PIPEWEAVE_SECRET_KEY"]}
	_, err = core.ConfigFromEnv(envOf(only))
	configErr(t, err, "DATABASE_URL")
}

// In compat mode an orchestrator with upstream's 30-byte secret starts with one warning line;
// the short secret works for the registration JWT (HKDF keys) and the Node.js SDK storage
// token alike.
func TestCompatShortSecret(t *testing.T) {
	t.Parallel()
	const short = "dev-secret-key-32-bytes-long!!"
	e := newEnv(t, func(c *core.Config) { c.Compat, c.SecretKey = core.CompatNodeSDKv1, short })
	require.Equal(t, 1, strings.Count(e.logs.String(), "fewer than 32"), e.logs.String())

	// The service key of the short secret (HKDF over its UTF-8 bytes, however few).
	svc, err := hkdf.Key(sha256.New, []byte(short), nil, "pipeweave/v1/service/node", 32)
	require.NoError(t, err)
	keys, err := token.ServiceKeys(svc)
	require.NoError(t, err)
	w := newWorker(t, e.url)
	reg, err := json.Marshal(protocol.RegisterRequest{ServiceID: "node", Version: "1", BaseURL: w.URL(), Tasks: []protocol.TaskDefinition{task("t")}})
	require.NoError(t, err)
	tok, err := keys.SignRegistration("node", reg, time.Now())
	require.NoError(t, err)
	r := e.do("POST", "/api/register", reg, tok)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	bad, err := token.SignServiceRegistration(testSecret, "node", reg, time.Now())
	require.NoError(t, err)
	r = e.do("POST", "/api/register", reg, bad)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))

	e.enqueue(map[string]any{"taskId": "t"})
	w.waitDispatches(1)
	plain, err := token.OpenCompat(short, w.all()[0].StorageToken)
	require.NoError(t, err)
	var backend map[string]any
	require.NoError(t, json.Unmarshal(plain, &backend))
	require.Equal(t, "local", backend["provider"])

	// Default mode refuses the same secret at start-up, whoever builds the orchestrator.
	_, err = core.New(t.Context(), core.Config{SecretKey: short}, core.Options{})
	require.ErrorIs(t, err, token.ErrWeakSecret)
}
