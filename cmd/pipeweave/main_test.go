package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/internal/testutil"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) {
	runMainIfAsked() // help_test.go
	testdb.Main(m)
}

// envOf is a getenv over a fixed set of variables: the process environment is never read.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// runCmd runs the command line to completion and returns its output.
func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut testutil.SyncBuffer
	err = run(ctx, args, &out, &errOut, envOf(env))
	return out.String(), errOut.String(), err
}

// running is a command started in the background by startCmd.
type running struct {
	stdout, stderr *testutil.SyncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startCmd runs the command line in the background until stop (or the end of the test).
func startCmd(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, args, r.stdout, r.stderr, envOf(env)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Errorf("%v did not return within a minute of its context ending", args)
		}
	})
	return r
}

// stop cancels the command's context and returns what run returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup of startCmd
		return err
	case <-time.After(time.Minute):
		t.Fatalf("run did not return within a minute of its context ending\nstderr:\n%s", r.stderr.String())
		return nil
	}
}

// waitHealthy polls GET /health on port until it answers 200.
func (r *running) waitHealthy(t *testing.T, port int) {
	t.Helper()
	if err := r.untilHealthy(port); err != nil {
		t.Fatal(err)
	}
}

// untilHealthy polls GET /health on port until it answers 200, or says why it did not.
func (r *running) untilHealthy(port int) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("run returned before serving: %w\nstdout:\n%s\nstderr:\n%s", err, r.stdout.String(), r.stderr.String())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: no 200 after 3 minutes (last error %v)\nstderr:\n%s", url, err, r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startServing starts the command args with --port of a free port once it serves, and tries
// another port when the one chosen was taken meanwhile (testutil.FreePort can only say that
// it was free a moment ago; parallel tests and the clusters they start listen too).
func startServing(t *testing.T, env map[string]string, args ...string) (*running, int) {
	t.Helper()
	for try := 1; ; try++ {
		port := testutil.FreePort(t)
		r := startCmd(t, env, append(args, "--port", strconv.Itoa(port))...)
		err := r.untilHealthy(port)
		if err == nil {
			return r, port
		}
		if try == 5 || !strings.Contains(err.Error(), "already in use") {
			t.Fatal(err)
		}
	}
}

// reachableDir returns a new directory that the unprivileged account running PostgreSQL
// (nobody, when the tests run as root) can reach: t.TempDir's parent is mode 0700, which
// would send a private cluster to pgcluster's fallback location.
func reachableDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(d), 0o755))
	require.NoError(t, os.Chmod(d, 0o755))
	return d
}

// randomSecret returns 32 random bytes in hex.
func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// serveEnv is a complete, valid environment for `serve` on databaseURL and port.
func serveEnv(t *testing.T, databaseURL string, port int) map[string]string {
	t.Helper()
	backends, err := json.Marshal([]map[string]any{{
		"id": "local", "provider": "local",
		"credentials": map[string]string{"basePath": t.TempDir()},
	}})
	require.NoError(t, err)
	return map[string]string{
		"DATABASE_URL":         databaseURL,
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": randomSecret(t),
		"PORT":                 strconv.Itoa(port),

		"PIPEWEAVE_INSECURE_NO_AUTH": "1",
		"WORKER_ALLOWED_NETWORKS":    "127.0.0.0/8,::1/128", // the test workers listen on loopback
	}
}

func countServices(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) int {
	t.Helper()
	var n int
	require.NoError(t, q.QueryRow(ctx, "SELECT count(*) FROM pipeweave.services").Scan(&n))
	return n
}

// appliedLine matches the `db status` line of migration 001 once applied.
var appliedLine = regexp.MustCompile(`(?m)^001 .* applied \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)

func TestDB(t *testing.T) {
	t.Parallel()

	t.Run("status lists 001 as applied", func(t *testing.T) {
		t.Parallel()
		url := testdb.NewURL(t)
		out, _, err := runCmd(t, nil, "db", "status", "--url", url)
		require.NoError(t, err)
		require.Regexp(t, appliedLine, out)
	})

	t.Run("migrate on a migrated database is up to date", func(t *testing.T) {
		t.Parallel()
		url := testdb.NewURL(t)
		// The URL comes from DATABASE_URL, the default of --url.
		out, _, err := runCmd(t, map[string]string{"DATABASE_URL": url}, "db", "migrate")
		require.NoError(t, err)
		require.Equal(t, "schema is up to date\n", out)
	})

	t.Run("init on a database without the schema applies 001", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		pool := testdb.New(t)
		url := pool.Config().ConnString()
		_, err := pool.Exec(ctx, "DROP SCHEMA pipeweave CASCADE")
		require.NoError(t, err)

		out, _, err := runCmd(t, nil, "db", "status", "--url", url)
		require.NoError(t, err)
		require.Regexp(t, `(?m)^001 .* pending$`, out)

		out, _, err = runCmd(t, nil, "db", "init", "--url", url)
		require.NoError(t, err)
		require.Contains(t, out, "applied migration 001\n")

		out, _, err = runCmd(t, nil, "db", "status", "--url", url)
		require.NoError(t, err)
		require.Regexp(t, appliedLine, out)
		require.Zero(t, countServices(t, ctx, pool))
	})

	t.Run("reset without --yes keeps the data", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		pool := testdb.New(t)
		_, err := pool.Exec(ctx, `INSERT INTO pipeweave.services (id, version, base_url) VALUES ('svc', '1', 'http://127.0.0.1:1')`)
		require.NoError(t, err)

		out, _, err := runCmd(t, nil, "db", "reset", "--url", pool.Config().ConnString())
		require.Error(t, err)
		require.Contains(t, err.Error(), "--yes")
		require.Empty(t, out)
		require.Equal(t, 1, countServices(t, ctx, pool))
	})

	t.Run("reset --yes empties the database", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		pool := testdb.New(t)
		url := pool.Config().ConnString()
		_, err := pool.Exec(ctx, `INSERT INTO pipeweave.services (id, version, base_url) VALUES ('svc', '1', 'http://127.0.0.1:1')`)
		require.NoError(t, err)

		out, _, err := runCmd(t, nil, "db", "reset", "--yes", "--url", url)
		require.NoError(t, err)
		require.Equal(t, "schema dropped and re-created\n", out)
		require.Zero(t, countServices(t, ctx, pool))

		out, _, err = runCmd(t, nil, "db", "status", "--url", url)
		require.NoError(t, err)
		require.Regexp(t, appliedLine, out)
	})

	t.Run("no --url and no DATABASE_URL", func(t *testing.T) {
		t.Parallel()
		_, _, err := runCmd(t, map[string]string{"DATABASE_URL": ""}, "db", "status")
		require.Error(t, err)
		require.Contains(t, err.Error(), "--url")
	})

	t.Run("unknown subcommand", func(t *testing.T) {
		t.Parallel()
		// Nothing connects before the subcommand is rejected: the server need not exist.
		_, _, err := runCmd(t, nil, "db", "frobnicate", "--url", "postgres://127.0.0.1:1/none")
		require.Error(t, err)
		require.Contains(t, err.Error(), `unknown db command "frobnicate"`)
	})

	t.Run("no subcommand", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := runCmd(t, nil, "db")
		require.Equal(t, 2, exitCode(err))
		require.Contains(t, stderr, "Usage:\n  pipeweave db")
	})
}

func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	valid := func(t *testing.T) map[string]string {
		// Configuration is checked before anything connects: no server at this URL.
		return serveEnv(t, "postgres://127.0.0.1:1/none", 3000)
	}
	for _, tc := range []struct {
		name     string
		variable string
		edit     func(env map[string]string)
	}{
		{"DATABASE_URL unset", "DATABASE_URL", func(env map[string]string) { delete(env, "DATABASE_URL") }},
		{"MAX_CONCURRENCY not a number", "MAX_CONCURRENCY", func(env map[string]string) { env["MAX_CONCURRENCY"] = "abc" }},
		{"PIPEWEAVE_SECRET_KEY too short", "PIPEWEAVE_SECRET_KEY", func(env map[string]string) { env["PIPEWEAVE_SECRET_KEY"] = "too-short" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := valid(t)
			tc.edit(env)
			_, _, err := runCmd(t, env, "serve")
			require.Error(t, err)
			msg := err.Error()
			require.NotContains(t, msg, "\n", "the error is one line")
			require.Contains(t, msg, tc.variable)
			var cfgErr *core.ConfigError
			require.ErrorAs(t, err, &cfgErr)
			require.Equal(t, tc.variable, cfgErr.Var)
		})
	}
}

func TestServeStandalone(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	r := startCmd(t, serveEnv(t, testdb.NewURL(t), port), "serve")
	r.waitHealthy(t, port)
	require.NoError(t, r.stop(t), "graceful shutdown")
}

func TestServeServerless(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	env := serveEnv(t, testdb.NewURL(t), port)
	env["MODE"] = string(core.ModeServerless)
	r := startCmd(t, env, "serve")
	r.waitHealthy(t, port)

	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/api/process", port), "application/json", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var sum map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sum))
	for _, key := range []string{"swept", "claimed", "dispatched", "failed", "durationMs"} {
		require.Contains(t, sum, key)
	}

	require.NoError(t, r.stop(t), "graceful shutdown")
}

func TestDev(t *testing.T) {
	t.Parallel()
	dir := reachableDir(t)
	pgDir := filepath.Join(dir, "pg")
	// Whatever happens, no server outlives the test: dev daemonizes it.
	stopClusterOnCleanup(t, pgDir)
	// No variable at all: no DATABASE_URL, so dev runs its own cluster.
	env := map[string]string{}

	var secret, apiKey string
	for i := range 2 {
		r, port := startServing(t, env, "dev", "--dir", dir)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		require.Contains(t, r.stdout.String(), base)

		// The generated API key: kept 0600, reused, printed with a URL that logs in.
		keyFile := filepath.Join(dir, "api-key")
		raw, err := os.ReadFile(keyFile)
		require.NoError(t, err)
		key := strings.TrimSpace(string(raw))
		require.Regexp(t, `^[0-9a-f]{64}$`, key)
		info, err := os.Stat(keyFile)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
		if i == 0 {
			apiKey = key
		} else {
			require.Equal(t, apiKey, key, "the second start keeps the API key")
		}
		require.Contains(t, r.stdout.String(), base+"/ui/#key="+key)
		require.Equal(t, http.StatusUnauthorized, devGet(t, base+"/api/queue/status", "", ""), "the API needs the key")
		require.Equal(t, http.StatusOK, devGet(t, base+"/api/queue/status", "", key))
		require.Equal(t, http.StatusMisdirectedRequest, devGet(t, base+"/api/queue/status", "rebound.attacker.example", key),
			"dev answers only to local host names")
		// The CLI finds the key by itself (PIPEWEAVE_DEV_DIR here; .pipeweave by default).
		out, stderr, err := runCmd(t, map[string]string{"PIPEWEAVE_DEV_DIR": dir}, "queue", "status", "--url", base)
		require.NoError(t, err, "stderr:\n%s", stderr)
		require.Contains(t, out, "pending")
		_, _, err = runCmd(t, map[string]string{"PIPEWEAVE_DEV_DIR": t.TempDir()}, "queue", "status", "--url", base)
		require.ErrorContains(t, err, "401")

		raw, err = os.ReadFile(filepath.Join(dir, "secret"))
		require.NoError(t, err)
		got := strings.TrimSpace(string(raw))
		require.Regexp(t, `^[0-9a-f]{64}$`, got)
		info, err = os.Stat(filepath.Join(dir, "secret"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
		if i == 0 {
			secret = got
		} else {
			require.Equal(t, secret, got, "the second start keeps the secret")
		}

		c, err := pgcluster.Lookup(pgDir)
		require.NoError(t, err)
		require.NotZero(t, c.Port())
		pgAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port()))
		conn, err := net.DialTimeout("tcp", pgAddr, 5*time.Second)
		require.NoError(t, err, "the private cluster accepts connections while dev runs")
		require.NoError(t, conn.Close())

		require.NoError(t, r.stop(t), "graceful shutdown\nstderr:\n%s", r.stderr.String())
		_, err = net.DialTimeout("tcp", pgAddr, 5*time.Second)
		require.Error(t, err, "the private cluster is stopped with dev")
	}
}

// devGet sends GET url with an optional Host and bearer key and returns the status.
func devGet(t *testing.T, url, host, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestTokenRegister(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	ring, err := token.NewKeyring(secret, "")
	require.NoError(t, err)
	body := []byte(`{"serviceId":"svc","version":"1","baseUrl":"http://127.0.0.1:9","tasks":[]}`)
	bodyFile := filepath.Join(t.TempDir(), "register.json")
	require.NoError(t, os.WriteFile(bodyFile, body, 0o600))
	svcKey, err := token.ServiceKey(secret, "svc")
	require.NoError(t, err)
	// verified checks a printed token as the orchestrator does: the service's key, the body.
	verified := func(t *testing.T, out string) {
		t.Helper()
		c, err := ring.VerifyRegistration(strings.TrimSpace(out), time.Now())
		require.NoError(t, err)
		require.Equal(t, "svc", c.ServiceID)
		require.NoError(t, c.CheckBody(body))
		require.ErrorIs(t, c.CheckBody([]byte(`{"serviceId":"svc","baseUrl":"http://elsewhere"}`)), token.ErrBodyMismatch)
	}

	t.Run("--secret", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, nil, "token", "register", "--service", "svc", "--secret", secret, "--body", bodyFile)
		require.NoError(t, err)
		verified(t, out)
	})

	t.Run("PIPEWEAVE_SECRET_KEY", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, map[string]string{"PIPEWEAVE_SECRET_KEY": secret}, "token", "register", "--service", "svc", "--body", bodyFile)
		require.NoError(t, err)
		verified(t, out)
	})

	t.Run("--service-key and PIPEWEAVE_SERVICE_KEY", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, nil, "token", "register", "--service", "svc", "--service-key", hex.EncodeToString(svcKey), "--body", bodyFile)
		require.NoError(t, err)
		verified(t, out)
		out, _, err = runCmd(t, map[string]string{"PIPEWEAVE_SERVICE_KEY": hex.EncodeToString(svcKey), "PIPEWEAVE_SECRET_KEY": "ignored when the service key is set"},
			"token", "register", "--service", "svc", "--body", bodyFile)
		require.NoError(t, err)
		verified(t, out)
	})

	t.Run("token service", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, nil, "token", "service", "--service", "svc", "--secret", secret)
		require.NoError(t, err)
		require.Equal(t, hex.EncodeToString(svcKey)+"\n", out)
		out, _, err = runCmd(t, map[string]string{"PIPEWEAVE_SECRET_KEY": secret}, "token", "service", "--service", "svc")
		require.NoError(t, err)
		require.Equal(t, hex.EncodeToString(svcKey)+"\n", out)
		// The known-answer vector of docs/protocol.md.
		out, _, err = runCmd(t, nil, "token", "service", "--service", "pdf-processor", "--secret", "correct-horse-battery-staple-pipeweave")
		require.NoError(t, err)
		require.Equal(t, "ac6141ca892a3fdcf33ff046db7efe90e2c3007b94990c1049c6468ba7486803\n", out)
	})

	for name, args := range map[string][]string{
		"missing --service":         {"token", "register", "--secret", secret, "--body", bodyFile},
		"missing --body":            {"token", "register", "--service", "svc", "--secret", secret},
		"unreadable --body":         {"token", "register", "--service", "svc", "--secret", secret, "--body", filepath.Join(t.TempDir(), "nope.json")},
		"both keys":                 {"token", "register", "--service", "svc", "--secret", secret, "--service-key", hex.EncodeToString(svcKey), "--body", bodyFile},
		"bad service key":           {"token", "register", "--service", "svc", "--service-key", "abc", "--body", bodyFile},
		"short secret":              {"token", "register", "--service", "svc", "--secret", "short", "--body", bodyFile},
		"service without --service": {"token", "service", "--secret", secret},
		"service with short secret": {"token", "service", "--service", "svc", "--secret", "short"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, _, err := runCmd(t, nil, args...)
			require.Error(t, err)
			require.Empty(t, out)
		})
	}
}

func TestBench(t *testing.T) {
	t.Parallel()
	out, stderr, err := runCmd(t, nil, "bench", "--tasks", "200", "--warmup", "0", "--dir", reachableDir(t))
	require.NoError(t, err, "stderr:\n%s", stderr)
	require.Regexp(t, `(?m)^completed 200 tasks in .*tasks/s end to end$`, out)
	require.Regexp(t, `(?m)^.*latency: p50 \S+ .*p99 \S+`, out)
}

// benchSummary matches bench's summary line of standalone tasks.
var benchSummary = regexp.MustCompile(`(?m)^summary: tasks/s=(\d+) enqueue/s=(\d+) p50=\S+ p99=\S+ xacts/task=([\d.]+) puts/task=([\d.]+) duplicates=(\d+)$`)

// checkBenchSummary checks that out has a summary line with no duplicate dispatch and some
// transactions counted.
func checkBenchSummary(t *testing.T, out, stderr string) {
	t.Helper()
	m := benchSummary.FindStringSubmatch(out)
	require.NotNil(t, m, "stdout:\n%s\nstderr:\n%s", out, stderr)
	require.Equal(t, "0", m[5], "no (run, attempt) is dispatched twice")
	xacts, err := strconv.ParseFloat(m[3], 64)
	require.NoError(t, err)
	require.Positive(t, xacts, "every task costs transactions")
	puts, err := strconv.ParseFloat(m[4], 64)
	require.NoError(t, err)
	require.Zero(t, puts, "the bench's small inputs and outputs stay in PostgreSQL (INLINE_PAYLOAD_MAX_BYTES at its default)")
	require.NotContains(t, stderr, "did not end within", "the transaction count waited for every session")
}

// bench --map runs a map node's pipeline and reports its fan-out and items/s; --map with a
// mode it cannot combine with is refused.
func TestBenchMap(t *testing.T) {
	t.Parallel()
	out, stderr, err := runCmd(t, nil, "bench", "--map", "150", "--maps", "2", "--warmup", "10",
		"--database-url", testdb.NewURL(t), "--dir", t.TempDir())
	require.NoError(t, err, "stderr:\n%s", stderr)
	require.Contains(t, out, "2 map run(s) of 150 items (after a warm-up map of 10)")
	require.Regexp(t, `(?m)^map 2: 150 items: split's callback → first item dispatched \S+, → every item dispatched \S+ \(fan-out\), → join dispatched \S+: \d+ items/s end to end$`, out)
	require.Regexp(t, `(?m)^summary: items=150 maps=2 first-item=\S+ fan-out=\S+ end-to-end=\S+ items/s=\d+ duplicates=0 \(medians\)$`, out)
	for _, bad := range [][]string{{"--map", "-1"}, {"--map", "10", "--maps", "0"}, {"--map", "10", "--pipeline"}, {"--map", "10", "--replicas", "2"}} {
		_, _, err := runCmd(t, nil, append([]string{"bench", "--dir", t.TempDir()}, bad...)...)
		require.ErrorContains(t, err, "--map", "%v", bad)
	}
}

// smallBench is a bench command line of a few tasks.
var smallBench = []string{"bench", "--tasks", "100", "--warmup", "20", "--batch", "50"}

// TestBenchFlags runs bench in this process; --worker-process needs the built binary
// (TestStartupAndLifecycle).
func TestBenchFlags(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		flags  []string
		header string // what the set-up line says of the flag
	}{
		"replicas": {[]string{"--replicas", "2"}, " 2 replica(s),"},
		"pending":  {[]string{"--pending", "100"}, " 100 runs pending,"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string(nil), smallBench...), "--database-url", testdb.NewURL(t), "--dir", t.TempDir())
			out, stderr, err := runCmd(t, nil, append(args, c.flags...)...)
			require.NoError(t, err, "stderr:\n%s", stderr)
			require.Contains(t, out, c.header)
			checkBenchSummary(t, out, stderr)
		})
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	t.Parallel()

	t.Run("help", func(t *testing.T) {
		t.Parallel()
		out, _, err := runCmd(t, nil, "help")
		require.NoError(t, err)
		require.Equal(t, usage, out)
	})

	t.Run("no command", func(t *testing.T) {
		t.Parallel()
		out, stderr, err := runCmd(t, nil)
		require.Equal(t, 2, exitCode(err))
		require.Empty(t, out)
		require.Equal(t, usage, stderr)
	})

	t.Run("unknown command", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := runCmd(t, nil, "frobnicate")
		require.Error(t, err)
		require.Contains(t, err.Error(), `unknown command "frobnicate"`)
		require.Equal(t, 2, exitCode(err))
		require.Equal(t, usage, stderr)
	})
}

// dev --demo runs the example PDF worker and its pipeline end to end.
func TestDevDemo(t *testing.T) {
	t.Parallel()
	port := testutil.FreePort(t)
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": testdb.NewURL(t)}
	r := startCmd(t, env, "dev", "--demo", "--dir", dir, "--port", strconv.Itoa(port))
	r.waitHealthy(t, port)
	require.Eventually(t, func() bool { return strings.Contains(r.stdout.String(), "Press Ctrl+C") }, time.Minute, 20*time.Millisecond,
		"stdout:\n%s\nstderr:\n%s", r.stdout.String(), r.stderr.String())
	out := r.stdout.String()
	require.Regexp(t, `demo: run prun_\w+ completed`, out)
	require.Contains(t, out, "demo: summary: ")
	for _, task := range []string{"download", "split", "merge", "extract-tables", "summarize"} {
		require.Regexp(t, `demo:\s+`+task+`\s+completed`, out)
	}
	// The page fan-out: ocr-page is a map node whose items all completed, and merge got every
	// page (the summary counts the pages merge joined).
	pages := regexp.MustCompile(`demo:\s+ocr-page\s+completed · map (\d+) items: (\d+) completed\n`).FindStringSubmatch(out)
	require.NotNil(t, pages, "stdout:\n%s", out)
	require.Equal(t, pages[1], pages[2], "every item completed")
	require.Regexp(t, `demo: summary: `+pages[1]+` pages, \d+ words`, out)
	// The worker is a process of its own, and dev ends only after it.
	m := regexp.MustCompile(`demo: example PDF worker running as pid (\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "stdout:\n%s", out)
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, 0), "the demo worker runs")
	require.NoError(t, r.stop(t))
	require.Contains(t, r.stdout.String(), "pipeweave dev: stopped the demo worker")
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "no demo worker left once dev returned")
}

// stopClusterOnCleanup stops the PostgreSQL cluster in pgDir, if one runs there, when the test
// ends: whatever happens, no server a dev started outlives the test.
func stopClusterOnCleanup(t *testing.T, pgDir string) {
	t.Helper()
	t.Cleanup(func() {
		c, err := pgcluster.Lookup(pgDir)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop the dev cluster: %v", err)
		}
	})
}
