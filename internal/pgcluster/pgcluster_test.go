package pgcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/internal/testutil"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// reachableDir returns a cluster directory that the nobody user can reach: t.TempDir's
// parent is created with mode 0700, which would send the cluster to the fallback location.
func reachableDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(d), 0o755))
	require.NoError(t, os.Chmod(d, 0o755))
	return filepath.Join(d, "pg")
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// stopOnCleanup makes sure no server outlives the test, whatever it asserted.
func stopOnCleanup(t *testing.T, c *Cluster) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
}

func queryInt(t *testing.T, ctx context.Context, url, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(ctx, sql).Scan(&n))
	return n
}

func exec1(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	require.NoError(t, err)
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	dir, err := FindBinaries()
	require.NoError(t, err)
	for _, name := range serverBinaries {
		require.FileExists(t, filepath.Join(dir, name))
	}
}

func writeExe(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o755))
}

func TestFindBinariesLayouts(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	lib := filepath.Join(root, "lib")
	for _, v := range []string{"9.6", "13", "15"} {
		for _, name := range serverBinaries {
			writeExe(t, filepath.Join(lib, v, "bin", name), "\x7fELF")
		}
	}
	// 16 lacks postgres: not a usable installation.
	writeExe(t, filepath.Join(lib, "16", "bin", "initdb"), "\x7fELF")
	writeExe(t, filepath.Join(lib, "16", "bin", "pg_ctl"), "\x7fELF")

	// A wrapper script on PATH gives way to the highest real installation.
	wrappers := filepath.Join(root, "wrappers")
	for _, name := range serverBinaries {
		writeExe(t, filepath.Join(wrappers, name), "#!/bin/sh\nexec real \"$@\"\n")
	}
	dir, err := findBinaries(wrappers, lib)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(lib, "15", "bin"), dir)

	// ... but is used when there is nothing else.
	dir, err = findBinaries(wrappers, filepath.Join(root, "none"))
	require.NoError(t, err)
	require.Equal(t, wrappers, dir)

	// A symbolic link on PATH resolves to the directory it points into.
	links := filepath.Join(root, "links")
	require.NoError(t, os.MkdirAll(links, 0o755))
	require.NoError(t, os.Symlink(filepath.Join(lib, "13", "bin", "initdb"), filepath.Join(links, "initdb")))
	dir, err = findBinaries(links+string(os.PathListSeparator)+wrappers, lib)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(lib, "13", "bin"), dir)

	// Nothing on PATH: the highest installation.
	dir, err = findBinaries(filepath.Join(root, "empty"), lib)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(lib, "15", "bin"), dir)

	// Nothing at all: the error says what to install.
	_, err = findBinaries(filepath.Join(root, "empty"), filepath.Join(root, "none"))
	require.ErrorIs(t, err, ErrNoBinaries)
	require.Contains(t, err.Error(), "apt-get install postgresql")
}

func TestVersionLess(t *testing.T) {
	t.Parallel()
	require.True(t, versionLess("9.6", "15"))
	require.True(t, versionLess("15", "16"))
	require.False(t, versionLess("16", "15"))
	require.True(t, versionLess("devel", "9"))
}

func TestSettingsConf(t *testing.T) {
	t.Parallel()
	conf, err := settingsConf(map[string]string{"fsync": "off", "search_path": `it's\here`})
	require.NoError(t, err)
	require.Equal(t, "fsync = 'off'\nsearch_path = 'it''s\\\\here'\n", conf)
	_, err = settingsConf(map[string]string{"port": "5"})
	require.Error(t, err)
	_, err = settingsConf(map[string]string{"a b": "5"})
	require.Error(t, err)
}

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := reachableDir(t)
	var log testutil.SyncBuffer

	c, err := Start(ctx, Options{Dir: dir, Log: &log, Settings: map[string]string{"max_connections": "42"}})
	require.NoError(t, err)
	stopOnCleanup(t, c)
	require.Equal(t, dir, c.DataDir())
	require.FileExists(t, filepath.Join(dir, "PG_VERSION"))
	require.NotZero(t, c.Port())
	require.Equal(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(c.Port())+"/app?sslmode=disable", c.URL("app"))
	require.Equal(t, 42, queryInt(t, ctx, c.URL("postgres"), "SELECT current_setting('max_connections')::int"))

	require.NoError(t, c.EnsureDatabase(ctx, "app"))
	require.NoError(t, c.EnsureDatabase(ctx, "app"), "a second call finds the database")
	exec1(t, ctx, c.URL("app"), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")

	found, err := Lookup(dir)
	require.NoError(t, err)
	require.Equal(t, c.URL("app"), found.URL("app"))

	port := c.Port()
	require.NoError(t, c.Stop(ctx))
	require.NoFileExists(t, filepath.Join(dir, "postmaster.pid"))
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "received fast shutdown request") },
		5*time.Second, 50*time.Millisecond, "the server log reaches Options.Log: %s", log.String())
	require.NoError(t, c.Stop(ctx), "stopping a stopped cluster is fine")

	again, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, again)
	require.Equal(t, port, again.Port(), "the port is remembered")
	require.Equal(t, 7, queryInt(t, ctx, again.URL("app"), "SELECT x FROM kept"), "the data is kept")
	require.NoError(t, again.Stop(ctx))
}

func TestStartFallbackLocation(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the fallback location is for a root process whose directory nobody cannot reach")
	}
	ctx := testContext(t)
	private := filepath.Join(t.TempDir(), "private")
	require.NoError(t, os.Mkdir(private, 0o700))
	dir := filepath.Join(private, "pg")

	c, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(c.DataDir()) })
	stopOnCleanup(t, c)
	require.True(t, strings.HasPrefix(c.DataDir(), filepath.Join(os.TempDir(), "pipeweave-pg-")), c.DataDir())
	require.FileExists(t, filepath.Join(c.DataDir(), "PG_VERSION"))
	recorded, err := os.ReadFile(filepath.Join(dir, locationFileName))
	require.NoError(t, err)
	require.Equal(t, c.DataDir(), strings.TrimSpace(string(recorded)))
	require.NoError(t, c.EnsureDatabase(ctx, "fallback"))

	port, dataDir := c.Port(), c.DataDir()
	require.NoError(t, c.Stop(ctx))

	again, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, again)
	require.Equal(t, dataDir, again.DataDir())
	require.Equal(t, port, again.Port())
	require.Equal(t, 1, queryInt(t, ctx, again.URL("fallback"), "SELECT 1"))
	require.NoError(t, again.Stop(ctx))
}

func TestStartReusesRunningAndSurvivesKill(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := reachableDir(t)

	c, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, c)
	require.False(t, c.Reused(), "this start started the server")
	running, err := c.Running(ctx)
	require.NoError(t, err)
	require.True(t, running)

	// Already running from this data directory: reused.
	same, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	require.Equal(t, c.Port(), same.Port())
	require.True(t, same.Reused(), "the second start found the server running")

	// Killed: postmaster.pid stays behind, and the next start recovers.
	pid, _, err := readPidFile(c.DataDir())
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 10*time.Second, 20*time.Millisecond)
	require.FileExists(t, filepath.Join(dir, "postmaster.pid"))

	restarted, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, restarted)
	require.Equal(t, c.Port(), restarted.Port())
	require.False(t, restarted.Reused(), "a killed server's postmaster.pid is not a running server")
	require.Equal(t, 1, queryInt(t, ctx, restarted.URL("postgres"), "SELECT 1"))
	require.NoError(t, restarted.Stop(ctx))
	running, err = restarted.Running(ctx)
	require.NoError(t, err)
	require.False(t, running)
}

func TestStartIgnoresReusedPid(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a stand-in process as the cluster's account")
	}
	ctx := testContext(t)
	dir := reachableDir(t)
	c, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, c)
	pidFile, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	require.NoError(t, err)
	require.NoError(t, c.Stop(ctx))

	// A live process of the same account now holds the pid that postmaster.pid names, as
	// after a crash and a reboot.
	sleeper := exec.Command("sleep", "60")
	sleeper.SysProcAttr = c.sysProcAttr()
	require.NoError(t, sleeper.Start())
	t.Cleanup(func() {
		_ = sleeper.Process.Kill()
		_ = sleeper.Wait()
	})
	lines := strings.SplitN(string(pidFile), "\n", 2)
	stale := strconv.Itoa(sleeper.Process.Pid) + "\n" + lines[1]
	require.NoError(t, c.writeOwned(filepath.Join(dir, "postmaster.pid"), []byte(stale), 0o600))

	again, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	stopOnCleanup(t, again)
	require.Equal(t, 1, queryInt(t, ctx, again.URL("postgres"), "SELECT 1"))
	require.NoError(t, again.Stop(ctx))
}

func TestStartAttached(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := reachableDir(t)
	c, err := Start(ctx, Options{Dir: dir, Attached: true})
	require.NoError(t, err)
	stopOnCleanup(t, c)
	require.NotNil(t, c.exited)
	require.Equal(t, 1, queryInt(t, ctx, c.URL("postgres"), "SELECT 1"))
	require.NoError(t, c.Stop(ctx))
	select {
	case <-c.exited:
	default:
		t.Fatal("postgres still running after Stop")
	}
}

func TestLookupNotInitialized(t *testing.T) {
	t.Parallel()
	_, err := Lookup(t.TempDir())
	require.ErrorIs(t, err, ErrNotInitialized)
}
