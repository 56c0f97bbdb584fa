package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

// The start-up checks and the process life cycle, run on the built binary: the exit status,
// what reaches stderr and the signals are the real ones.

// proc is the built binary running in the background.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *testutil.SyncBuffer
	done           chan struct{}
	err            error // cmd.Wait's, once done is closed
}

// buildBinary builds this command into a new directory and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pipeweave")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	return bin
}

// binEnv is a process environment of only PATH and HOME (to find PostgreSQL and go) and
// vars: nothing of the test process's own configuration leaks in.
func binEnv(vars map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runBin runs the binary to completion and returns its exit status and output.
func runBin(t *testing.T, bin string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startBin(t, bin, env, args...)
	<-p.done
	return processExitStatus(t, p.err), p.stdout.String(), p.stderr.String()
}

// processExitStatus is the exit status of a process that ended with err (from Wait).
func processExitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, err)
	return 0
}

// startBin starts the binary in the background; it is killed at the end of the test if it
// still runs.
func startBin(t *testing.T, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = binEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitHealthy polls GET /health on port until it answers 200; the process must not end
// meanwhile.
func (p *proc) waitHealthy(t *testing.T, port int) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-p.done:
			t.Fatalf("%v ended before serving: %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args, p.err, p.stdout.String(), p.stderr.String())
		default:
		}
		if healthStatus(url) == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no 200 after 3 minutes\nstderr:\n%s", url, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthStatus is the status of GET url, 0 when it cannot be reached.
func healthStatus(url string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// terminate sends SIGTERM to the process and waits for it to end; it returns the exit status.
func (p *proc) terminate(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%v still runs 2 minutes after SIGTERM\nstderr:\n%s", p.cmd.Args, p.stderr.String())
	}
	return processExitStatus(t, p.err)
}

// requireOneLine checks that stderr is exactly one line, starting with "pipeweave: ".
func requireOneLine(t *testing.T, stderr string) string {
	t.Helper()
	require.True(t, strings.HasPrefix(stderr, "pipeweave: "), "stderr: %q", stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line on stderr: %q", stderr)
	require.True(t, strings.HasSuffix(stderr, "\n"), "stderr: %q", stderr)
	return strings.TrimSuffix(stderr, "\n")
}

// emptyDatabaseURL returns the URL of a new database without the PipeWeave schema.
func emptyDatabaseURL(t *testing.T) string {
	t.Helper()
	url := testdb.NewURL(t)
	execSQL(t, url, "DROP SCHEMA "+migrate.Schema+" CASCADE")
	return url
}

// execSQL runs sql on the database at url.
func execSQL(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// schemaState inspects the schema of the database at url.
func schemaState(t *testing.T, url string) migrate.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	st, err := migrate.Inspect(ctx, conn)
	require.NoError(t, err)
	return st
}

// serveFailure runs serve to its failure and returns the one line it printed. The storage
// directory of env must not have been created.
func serveFailure(t *testing.T, bin string, env map[string]string, args ...string) string {
	t.Helper()
	code, stdout, stderr := runBin(t, bin, env, append([]string{"serve"}, args...)...)
	require.Equal(t, 1, code, "stderr:\n%s", stderr)
	require.Empty(t, stdout)
	line := requireOneLine(t, stderr)
	require.NotContains(t, stderr, "orchestrator listening")
	return line
}

// serveEnvUnder is serveEnv with its storage in a directory that does not exist yet, so that
// a test sees whether anything created it.
func serveEnvUnder(t *testing.T, databaseURL string, port int) (env map[string]string, storage string) {
	t.Helper()
	env = serveEnv(t, databaseURL, port)
	storage = filepath.Join(t.TempDir(), "storage")
	env["STORAGE_BACKENDS"] = `[{"id":"local","provider":"local","credentials":{"basePath":"` + storage + `"}}]`
	return env, storage
}

func TestStartupAndLifecycle(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)

	t.Run("serve on a busy port", func(t *testing.T) {
		t.Parallel()
		held, err := net.Listen("tcp", ":0")
		require.NoError(t, err)
		defer held.Close()
		port := held.Addr().(*net.TCPAddr).Port
		url := emptyDatabaseURL(t)
		env, storage := serveEnvUnder(t, url, port)
		// Even with --migrate: the port is checked before the database is touched.
		line := serveFailure(t, bin, env, "--migrate")
		require.Equal(t, fmt.Sprintf("pipeweave: port %d is already in use (listen on :%d): stop the process that holds it or set PORT", port, port), line)
		require.False(t, schemaState(t, url).Exists, "nothing was created in the database")
		require.NoDirExists(t, storage)
	})

	t.Run("serve with an unreachable database", func(t *testing.T) {
		t.Parallel()
		dbPort := testutil.FreePort(t) // nothing listens there
		env, storage := serveEnvUnder(t, fmt.Sprintf("postgres://app:hunter2@127.0.0.1:%d/orders?sslmode=disable", dbPort), testutil.FreePort(t))
		line := serveFailure(t, bin, env, "--db-wait", "300ms")
		require.Contains(t, line, fmt.Sprintf("pipeweave: the database at 127.0.0.1:%d/orders is not reachable (waited 300ms, --db-wait): ", dbPort))
		require.Contains(t, line, "connection refused")
		require.NotContains(t, line, "hunter2", "the password is never printed")
		require.NoDirExists(t, storage)
	})

	t.Run("serve on a database without the schema", func(t *testing.T) {
		t.Parallel()
		url := emptyDatabaseURL(t)
		env, storage := serveEnvUnder(t, url, testutil.FreePort(t))
		line := serveFailure(t, bin, env)
		require.Regexp(t, `^pipeweave: the database at 127\.0\.0\.1:\d+/\w+ has no PipeWeave schema: run `+
			"`pipeweave db migrate` \\(it reads DATABASE_URL\\) or start with `pipeweave serve --migrate`$", line)
		require.False(t, schemaState(t, url).Exists, "nothing was created in the database")
		require.NoDirExists(t, storage)
	})

	t.Run("serve on an older schema", func(t *testing.T) {
		t.Parallel()
		url := testdb.NewURL(t)
		st := schemaState(t, url)
		require.True(t, st.Current())
		execSQL(t, url, "DELETE FROM "+migrate.Schema+".schema_migrations WHERE version = $1", st.Latest)
		env, storage := serveEnvUnder(t, url, testutil.FreePort(t))
		line := serveFailure(t, bin, env)
		require.Contains(t, line, fmt.Sprintf("this binary needs %d (1 migration(s) pending): run `pipeweave db migrate`", st.Latest))
		require.Contains(t, line, "`pipeweave serve --migrate`")
		require.NoDirExists(t, storage)
	})

	t.Run("serve on a newer schema", func(t *testing.T) {
		t.Parallel()
		url := testdb.NewURL(t)
		latest := schemaState(t, url).Latest
		execSQL(t, url, "INSERT INTO "+migrate.Schema+".schema_migrations (version, name) VALUES ($1, 'from_the_future')", latest+1)
		env, storage := serveEnvUnder(t, url, testutil.FreePort(t))
		line := serveFailure(t, bin, env, "--migrate") // --migrate does not make it acceptable
		require.Contains(t, line, fmt.Sprintf("has schema version %d, newer than this binary's %d: refusing to serve it", latest+1, latest))
		require.NoDirExists(t, storage)
	})

	t.Run("serve --migrate on an empty database serves and stops on SIGTERM", func(t *testing.T) {
		t.Parallel()
		url := emptyDatabaseURL(t)
		port := testutil.FreePort(t)
		p := startBin(t, bin, serveEnv(t, url, port), "serve", "--migrate")
		p.waitHealthy(t, port)
		require.True(t, schemaState(t, url).Current())
		require.Contains(t, p.stderr.String(), `"msg":"orchestrator listening"`)
		require.Equal(t, 0, p.terminate(t), "stderr:\n%s", p.stderr.String())
		require.Contains(t, p.stderr.String(), `"msg":"orchestrator stopped"`)
	})

	t.Run("a second dev on the same folder refuses and the first keeps serving", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		env := map[string]string{"DATABASE_URL": testdb.NewURL(t)}
		port := testutil.FreePort(t)
		first := startBin(t, bin, env, "dev", "--dir", dir, "--port", strconv.Itoa(port))
		first.waitHealthy(t, port)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		info, err := readDevLock(dir)
		require.NoError(t, err)
		require.Equal(t, devLockInfo{PID: first.cmd.Process.Pid, URL: base, KeyFile: filepath.Join(dir, devKeyFile)}, info)

		otherPort := testutil.FreePort(t)
		code, stdout, stderr := runBin(t, bin, env, "dev", "--dir", dir, "--port", strconv.Itoa(otherPort))
		require.Equal(t, 1, code)
		require.Empty(t, stdout, "no banner")
		line := requireOneLine(t, stderr)
		require.Equal(t, fmt.Sprintf("pipeweave: another `pipeweave dev` is running (pid %d) from %s: reach it at %s (API key in %s); stop it first, or pass --dir for another state directory",
			first.cmd.Process.Pid, dir, base, filepath.Join(dir, devKeyFile)), line)
		require.Equal(t, 0, healthStatus(fmt.Sprintf("http://127.0.0.1:%d/health", otherPort)), "the second dev never listened")

		require.Equal(t, http.StatusOK, healthStatus(base+"/health"), "the first dev keeps serving")
		require.Equal(t, 0, first.terminate(t), "stderr:\n%s", first.stderr.String())
		require.Contains(t, first.stdout.String(), "pipeweave dev: stopped serving on "+base)

		// The lock went with the process: the next dev starts.
		again := startBin(t, bin, env, "dev", "--dir", dir, "--port", strconv.Itoa(port))
		again.waitHealthy(t, port)
		require.Equal(t, 0, again.terminate(t))
	})

	t.Run("dev on a busy port creates nothing", func(t *testing.T) {
		t.Parallel()
		held, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer held.Close()
		port := held.Addr().(*net.TCPAddr).Port
		dir := filepath.Join(t.TempDir(), "state")
		code, stdout, stderr := runBin(t, bin, nil, "dev", "--dir", dir, "--port", strconv.Itoa(port))
		require.Equal(t, 1, code)
		require.Empty(t, stdout, "no banner")
		require.Equal(t, fmt.Sprintf("pipeweave: port %d is already in use (listen on 127.0.0.1:%d): pass --port N for another one", port, port), requireOneLine(t, stderr))
		require.NoDirExists(t, dir, "no state directory, no cluster")
	})

	t.Run("bench --worker-process runs its worker as a process it stops", func(t *testing.T) {
		t.Parallel()
		args := append(append([]string(nil), smallBench...), "--database-url", testdb.NewURL(t), "--dir", t.TempDir(), "--worker-process")
		code, out, stderr := runBin(t, bin, nil, args...)
		require.Equal(t, 0, code, "stderr:\n%s", stderr)
		require.Contains(t, out, "worker in its own process")
		checkBenchSummary(t, out, stderr)
		requireWorkerProcessGone(t, stderr)
	})

	t.Run("bench stops on SIGTERM the worker process it started", func(t *testing.T) {
		t.Parallel()
		p := startBin(t, bin, nil, "bench", "--database-url", testdb.NewURL(t), "--dir", t.TempDir(), "--worker-process",
			"--tasks", "1000000", "--warmup", "1000000")
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(p.stdout.String(), "pipeweave bench: standalone mode") {
			select {
			case <-p.done:
				t.Fatalf("bench ended before measuring: %v\nstderr:\n%s", p.err, p.stderr.String())
			default:
			}
			require.True(t, time.Now().Before(deadline), "bench did not start in 3 minutes; stderr:\n%s", p.stderr.String())
			time.Sleep(50 * time.Millisecond)
		}
		require.Equal(t, 1, p.terminate(t), "an interrupted bench reports no figures; stderr:\n%s", p.stderr.String())
		requireWorkerProcessGone(t, p.stderr.String())
		require.True(t, strings.HasSuffix(p.stderr.String(), "pipeweave: bench interrupted: no figures\n"), "stderr:\n%s", p.stderr.String())
	})

	t.Run("bench stops on SIGTERM the cluster it started", func(t *testing.T) {
		t.Parallel()
		dir := reachableDir(t)
		pgDir := filepath.Join(dir, "pg")
		stopClusterOnCleanup(t, pgDir)
		p := startBin(t, bin, nil, "bench", "--dir", dir, "--tasks", "1000000", "--warmup", "1000000")
		// The cluster is up once bench prints its set-up line (after the migration).
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(p.stdout.String(), "pipeweave bench: standalone mode") {
			select {
			case <-p.done:
				t.Fatalf("bench ended before measuring: %v\nstderr:\n%s", p.err, p.stderr.String())
			default:
			}
			require.True(t, time.Now().Before(deadline), "bench did not start in 3 minutes; stderr:\n%s", p.stderr.String())
			time.Sleep(50 * time.Millisecond)
		}
		require.Equal(t, 1, p.terminate(t), "an interrupted bench reports no figures; stderr:\n%s", p.stderr.String())
		require.Contains(t, p.stderr.String(), "pipeweave bench: stopped the PostgreSQL cluster it started ("+pgDir+")")
		require.True(t, strings.HasSuffix(p.stderr.String(), "pipeweave: bench interrupted: no figures\n"), "stderr:\n%s", p.stderr.String())
		c, err := pgcluster.Lookup(pgDir)
		require.NoError(t, err)
		up, err := c.Running(t.Context())
		require.NoError(t, err)
		require.False(t, up, "no cluster left running")
	})

	t.Run("dev stops on SIGTERM the cluster it started and only that one", func(t *testing.T) {
		t.Parallel()
		dir := reachableDir(t)
		pgDir := filepath.Join(dir, "pg")
		stopClusterOnCleanup(t, pgDir)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		running := func() bool {
			c, err := pgcluster.Lookup(pgDir)
			require.NoError(t, err)
			up, err := c.Running(ctx)
			require.NoError(t, err)
			return up
		}

		// No DATABASE_URL: dev starts its own cluster, and stops it.
		port := testutil.FreePort(t)
		p := startBin(t, bin, nil, "dev", "--dir", dir, "--port", strconv.Itoa(port))
		p.waitHealthy(t, port)
		require.True(t, running())
		require.Contains(t, p.stdout.String(), fmt.Sprintf("(pid %d)", p.cmd.Process.Pid), "the banner names the PID to signal")
		require.Equal(t, 0, p.terminate(t), "stderr:\n%s", p.stderr.String())
		require.Contains(t, p.stdout.String(), "pipeweave dev: stopped the PostgreSQL cluster it started ("+pgDir+")")
		require.False(t, running(), "no cluster left running")
		require.ErrorIs(t, syscall.Kill(p.cmd.Process.Pid, 0), syscall.ESRCH, "no process left")

		// A cluster that was running already is reused and left running.
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: pgDir})
		require.NoError(t, err)
		p = startBin(t, bin, nil, "dev", "--dir", dir, "--port", strconv.Itoa(port))
		p.waitHealthy(t, port)
		require.Equal(t, 0, p.terminate(t), "stderr:\n%s", p.stderr.String())
		require.Contains(t, p.stdout.String(), "pipeweave dev: left the running PostgreSQL cluster running ("+pgDir+";")
		require.True(t, running(), "the cluster dev did not start is still running")
		require.NoError(t, c.Stop(ctx))
	})
}

// requireWorkerProcessGone checks that bench said it stopped its worker process (on stderr) and
// that no such process is left.
func requireWorkerProcessGone(t *testing.T, stderr string) {
	t.Helper()
	m := regexp.MustCompile(`pipeweave bench: stopped the worker process \(pid (\d+)\)`).FindStringSubmatch(stderr)
	require.NotNil(t, m, "stderr:\n%s", stderr)
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "no worker process left once bench returned")
}
