// Package pgcluster runs a private PostgreSQL cluster in a directory of its own, for
// `pipeweave dev`, the test suite and the benchmark.
//
// The cluster listens on 127.0.0.1 only, trusts every local connection and is reached as
// the postgres superuser. PostgreSQL refuses to run as root, so when this process is root
// the server runs as an unprivileged account: the owner of an existing data directory when
// that is not root, otherwise the "nobody" user. When that account cannot reach the
// directory asked for (a parent without search permission for it, such as /root), the data
// directory goes under os.TempDir() instead and its location is recorded in the directory
// asked for, so that the next start finds it again.
package pgcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pipeweave/pipeweave/internal/freeport"
)

// Files that PipeWeave keeps next to PostgreSQL's own.
const (
	// portFileName, in Options.Dir, remembers the port chosen at the first start.
	portFileName = "pipeweave-port"
	// locationFileName, in Options.Dir, names the data directory when it had to be put
	// elsewhere.
	locationFileName = "pipeweave-datadir"
	// confFileName, in the data directory, holds the settings of the current start; it is
	// rewritten at every start and included from postgresql.conf.
	confFileName = "pipeweave.conf"
	// logFileName, in the data directory, receives the server log.
	logFileName = "pipeweave-server.log"
)

// includeLine is appended once to postgresql.conf.
const includeLine = "include_if_exists = '" + confFileName + "'"

// readyTimeout bounds the wait for a server to accept connections when ctx has no deadline.
const readyTimeout = 2 * time.Minute

// ErrNotInitialized is returned by Lookup when the directory holds no cluster.
var ErrNotInitialized = errors.New("no PostgreSQL cluster initialized there")

// Options configure Start.
type Options struct {
	// Dir holds the cluster. It is the data directory itself, unless the account that runs
	// postgres cannot reach it (see the package documentation). Required.
	Dir string
	// Port is the TCP port on 127.0.0.1. 0 picks a free one at the first start and
	// remembers it in Dir for the next starts (a remembered port that another program took
	// meanwhile is replaced by a new free one). A server already running from the data
	// directory is reused on the port it has.
	Port int
	// Settings are extra server settings (name to value), such as fsync=off. They apply
	// from this start on; "port" is not allowed here, use Port.
	Settings map[string]string
	// Log, when set, receives a copy of the server log from this start until Stop. It is
	// written from another goroutine.
	Log io.Writer
	// Attached runs postgres as a child of this process instead of daemonizing it with
	// pg_ctl. On Linux the kernel then shuts it down (fast) when this process exits, even
	// by a crash, so nothing is left running; the test suite uses it. Stop still stops it.
	Attached bool
}

// Cluster is a PostgreSQL cluster started by Start or found by Lookup.
type Cluster struct {
	bin     string
	dir     string
	dataDir string
	logPath string
	acct    *account
	port    int
	// reused is set by Start when the server was already running from the data directory.
	reused bool

	mu      sync.Mutex
	tail    *tailer
	proc    *os.Process
	exited  chan struct{}
	exitErr error
}

// account is the unprivileged user that runs PostgreSQL when this process is root.
type account struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// Start initializes the cluster in opts.Dir when it has no data yet, starts the server
// (or reuses the one already running from that data directory) and waits until it
// accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("start PostgreSQL: Options.Dir is empty")
	}
	conf, err := settingsConf(opts.Settings)
	if err != nil {
		return nil, err
	}
	c, err := locate(opts.Dir, true)
	if err != nil {
		return nil, err
	}
	if err := c.prepareDataDir(); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.ensureInclude(); err != nil {
		return nil, err
	}

	logOffset := fileSize(c.logPath)
	if opts.Log != nil {
		c.tail = startTail(c.logPath, logOffset, opts.Log)
	}
	if err := c.start(ctx, opts, conf); err != nil {
		c.stopTail()
		return nil, err
	}
	if err := c.rememberPort(); err != nil {
		return nil, err
	}
	return c, nil
}

// rememberPort writes the port to Options.Dir for the next start.
func (c *Cluster) rememberPort() error {
	p := filepath.Join(c.dir, portFileName)
	data := []byte(strconv.Itoa(c.port) + "\n")
	if c.dir == c.dataDir {
		// Inside the data directory: the account that owns the rest owns it too.
		return c.writeOwned(p, data, 0o644)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("remember port: %w", err)
	}
	return nil
}

// start reuses a running server or launches one, retrying on a port taken meanwhile and
// on the shared memory a killed server's children still hold for a moment.
func (c *Cluster) start(ctx context.Context, opts Options, conf string) error {
	port, running, err := c.runningServer(ctx)
	if err != nil {
		return err
	}
	if running {
		c.port = port
		c.reused = true
		if err := c.waitReady(ctx); err != nil {
			return fmt.Errorf("reuse PostgreSQL already running from %s: %w", c.dataDir, err)
		}
		return nil
	}

	pinned := opts.Port != 0
	port = opts.Port
	if port == 0 {
		port = readPortFile(c.dir)
	}
	if port == 0 || (!pinned && !portFree(port)) {
		if port, err = freeport.Get(); err != nil {
			return err
		}
	}
	for attempt := 1; ; attempt++ {
		if err := c.writeOwned(filepath.Join(c.dataDir, confFileName), []byte(baseConf(port)+conf), 0o600); err != nil {
			return err
		}
		offset := fileSize(c.logPath)
		c.port = port
		err := c.launch(ctx, opts.Attached)
		if err == nil {
			if err = c.waitReady(ctx); err == nil {
				return nil
			}
			if c.exited == nil {
				// pg_ctl said the server started: do not start a second one.
				return err
			}
			c.killAttached()
		}
		log := readFrom(c.logPath, offset)
		switch {
		case ctx.Err() != nil:
		case !pinned && attempt < 5 && bindFailed(log):
			if port, err = freeport.Get(); err != nil {
				return err
			}
			continue
		case attempt < 30 && sharedMemoryBusy(log):
			select {
			case <-time.After(500 * time.Millisecond):
				continue
			case <-ctx.Done():
			}
		}
		return fmt.Errorf("start PostgreSQL in %s: %w\nserver log (%s):\n%s", c.dataDir, err, c.logPath, lastLines(log, 30))
	}
}

// launch starts postgres, by pg_ctl or as a child of this process.
func (c *Cluster) launch(ctx context.Context, attached bool) error {
	if !attached {
		c.exited = nil
		out, err := c.command(ctx, "pg_ctl", "start", "-D", c.dataDir, "-l", c.logPath, "-w",
			"-t", strconv.Itoa(timeoutSeconds(ctx))).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctl start: %w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}

	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	if err := c.chown(c.logPath); err != nil {
		logFile.Close()
		return err
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.dataDir)
	cmd.Dir = "/"
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = c.sysProcAttr()
	tieToParent(cmd.SysProcAttr)

	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// The parent-death signal follows the thread that forked postgres: keep this
		// goroutine on its thread, never unlocked, until postgres has exited.
		runtime.LockOSThread()
		err := cmd.Start()
		logFile.Close()
		started <- err
		if err != nil {
			return
		}
		werr := cmd.Wait()
		c.exitErr = werr
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("run postgres: %w", err)
	}
	c.proc = cmd.Process
	c.exited = exited
	return nil
}

// killAttached ends an attached postgres that never became ready.
func (c *Cluster) killAttached() {
	if c.proc == nil || c.exited == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.proc.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.proc.Kill()
		<-c.exited
	}
}

// waitReady waits until the server accepts a connection to the postgres database.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, readyTimeout)
	defer cancel()
	connURL := c.URL("postgres") + "&connect_timeout=5"
	var last error
	for {
		conn, err := pgx.Connect(ctx, connURL)
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		last = err
		if c.exited != nil {
			select {
			case <-c.exited:
				return fmt.Errorf("postgres exited before accepting connections: %v", c.exitErr)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for PostgreSQL on port %d: %w (last error: %v)", c.port, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Lookup returns the cluster that Start set up in dir, without starting it: Stop stops its
// server and URL uses the port it runs on (or the remembered one).
func Lookup(dir string) (*Cluster, error) {
	c, err := locate(dir, false)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotInitialized, dir)
		}
		return nil, fmt.Errorf("look for a cluster in %s: %w", c.dataDir, err)
	}
	c.port = readPortFile(c.dir)
	if _, port, err := readPidFile(c.dataDir); err == nil && port != 0 {
		c.port = port
	}
	return c, nil
}

// URL returns the connection URL of database dbname as the postgres superuser.
func (c *Cluster) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Reused reports whether Start found the server already running from the data directory
// (and reused it) rather than starting it: the caller did not start it, so it should leave
// it running.
func (c *Cluster) Reused() bool { return c.reused }

// Running reports whether a server is running from the cluster's data directory.
func (c *Cluster) Running(ctx context.Context) (bool, error) {
	_, running, err := c.runningServer(ctx)
	return running, err
}

// Port returns the TCP port the server listens on, on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir returns the PostgreSQL data directory: Options.Dir, or the directory under
// os.TempDir() used in its place.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logPath }

// EnsureDatabase creates database name unless it exists.
func (c *Cluster) EnsureDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("ensure database %q: connect: %w", name, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		// 42P04 duplicate_database; 23505 when a concurrent CREATE won the race.
		if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
			return nil
		}
		return fmt.Errorf("ensure database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast: open sessions are ended) and waits until it is gone.
// Stopping a server that is not running is not an error.
func (c *Cluster) Stop(ctx context.Context) error { return c.stop(ctx, "fast") }

// Crash stops the server as a crash of the database would: an immediate shutdown, in which
// every server process exits at once, without a checkpoint and without writing the WAL still in
// its buffers (what asynchronous commits left there is lost). The next Start recovers from the
// WAL on disk. Tests use it to check what survives a database crash. Crashing a server that is
// not running is not an error.
func (c *Cluster) Crash(ctx context.Context) error { return c.stop(ctx, "immediate") }

// stop shuts the server down in pg_ctl's mode and waits until it is gone.
func (c *Cluster) stop(ctx context.Context, mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.stopTail()
	_, running, err := c.runningServer(ctx)
	if err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	if running {
		out, err := c.command(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", mode, "-w",
			"-t", strconv.Itoa(timeoutSeconds(ctx))).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctl stop -m %s %s: %w: %s", mode, c.dataDir, err, strings.TrimSpace(string(out)))
		}
	}
	if c.exited != nil {
		select {
		case <-c.exited:
		case <-ctx.Done():
			return fmt.Errorf("stop PostgreSQL: wait for postgres to exit: %w", ctx.Err())
		}
	}
	return nil
}

func (c *Cluster) stopTail() {
	if c.tail != nil {
		c.tail.close()
		c.tail = nil
	}
}

// runningServer reports whether a server from this data directory is running, and its
// port. A postmaster.pid whose process is alive but is not a postmaster of this data
// directory (its pid was reused after a crash) is removed as stale.
func (c *Cluster) runningServer(ctx context.Context) (port int, running bool, err error) {
	out, err := c.command(ctx, "pg_ctl", "status", "-D", c.dataDir).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		// 3: not running; 4: no accessible data directory.
		if errors.As(err, &ee) && (ee.ExitCode() == 3 || ee.ExitCode() == 4) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("pg_ctl status %s: %w: %s", c.dataDir, err, strings.TrimSpace(string(out)))
	}
	pid, port, err := readPidFile(c.dataDir)
	if err != nil {
		return 0, false, err
	}
	if cwd, ok := processCwd(pid); ok && !sameDir(cwd, c.dataDir) {
		if err := os.Remove(filepath.Join(c.dataDir, "postmaster.pid")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, false, fmt.Errorf("remove stale postmaster.pid: %w", err)
		}
		return 0, false, nil
	}
	if port == 0 {
		return 0, false, fmt.Errorf("postmaster.pid in %s names no port", c.dataDir)
	}
	return port, true, nil
}

// locate finds the data directory for dir and the account that runs the server. With
// create, an unreachable dir gets a data directory under os.TempDir(), recorded in dir.
func locate(dir string, create bool) (*Cluster, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster directory %q: %w", dir, err)
	}
	c := &Cluster{bin: bin, dir: abs, dataDir: abs}
	recorded, err := os.ReadFile(filepath.Join(abs, locationFileName))
	switch {
	case err == nil:
		c.dataDir = strings.TrimSpace(string(recorded))
		if !filepath.IsAbs(c.dataDir) {
			return nil, fmt.Errorf("%s names %q, not an absolute path", filepath.Join(abs, locationFileName), c.dataDir)
		}
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return nil, fmt.Errorf("read data directory location: %w", err)
	}
	if os.Geteuid() == 0 {
		if c.acct, err = runAccount(c.dataDir); err != nil {
			return nil, err
		}
		if create && c.dataDir == abs && !reachable(c.acct, abs) {
			c.dataDir = filepath.Join(os.TempDir(), "pipeweave-pg-"+shortHash(abs))
			if c.acct, err = runAccount(c.dataDir); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(abs, 0o755); err != nil {
				return nil, fmt.Errorf("create cluster directory: %w", err)
			}
			if err := os.WriteFile(filepath.Join(abs, locationFileName), []byte(c.dataDir+"\n"), 0o644); err != nil {
				return nil, fmt.Errorf("record data directory location: %w", err)
			}
		}
	}
	c.logPath = filepath.Join(c.dataDir, logFileName)
	return c, nil
}

// runAccount picks who runs postgres for dataDir when this process is root: the non-root
// owner of existing data (or of the directory), else nobody.
func runAccount(dataDir string) (*account, error) {
	for _, p := range []string{filepath.Join(dataDir, "PG_VERSION"), dataDir} {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			return accountByID(st.Uid, st.Gid), nil
		}
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and the unprivileged user to run it as is missing: %w", err)
	}
	return accountOf(u)
}

func accountByID(uid, gid uint32) *account {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		if a, err := accountOf(u); err == nil {
			return a
		}
	}
	return &account{name: strconv.FormatUint(uint64(uid), 10), uid: uid, gid: gid, groups: []uint32{gid}}
}

func accountOf(u *user.User) (*account, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid), groups: []uint32{uint32(gid)}}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != a.gid {
				a.groups = append(a.groups, uint32(g))
			}
		}
	}
	return a, nil
}

func (a *account) inGroup(gid uint32) bool {
	for _, g := range a.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// reachable reports whether a may search every existing parent of dir, so that a data
// directory at dir (which is chowned to a) is usable by it.
func reachable(a *account, dir string) bool {
	var parents []string
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		parents = append(parents, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	for i := len(parents) - 1; i >= 0; i-- {
		fi, err := os.Stat(parents[i])
		if errors.Is(err, fs.ErrNotExist) {
			return true // created below with mode 0755
		}
		if err != nil || !fi.IsDir() {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return true
		}
		perm := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == a.uid:
			can = perm&0o100 != 0
		case a.inGroup(st.Gid):
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return false
		}
	}
	return true
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// prepareDataDir creates the data directory, owned by the account that runs postgres, with
// the permissions PostgreSQL demands.
func (c *Cluster) prepareDataDir() error {
	if err := os.MkdirAll(filepath.Dir(c.dataDir), 0o755); err != nil {
		return fmt.Errorf("create parent of data directory: %w", err)
	}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create data directory: %w", err)
	}
	fi, err := os.Stat(c.dataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", c.dataDir)
	}
	if c.acct != nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != c.acct.uid {
			if st.Uid != 0 {
				return fmt.Errorf("data directory %s is owned by uid %d, but PostgreSQL would run as %s (uid %d)",
					c.dataDir, st.Uid, c.acct.name, c.acct.uid)
			}
			if err := c.chownTree(c.dataDir); err != nil {
				return err
			}
		}
	}
	if fi.Mode().Perm()&^0o750 != 0 {
		if err := os.Chmod(c.dataDir, 0o700); err != nil {
			return fmt.Errorf("restrict data directory permissions: %w", err)
		}
	}
	return nil
}

// initdb creates the cluster unless the data directory already holds one.
func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	out, err := c.command(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ensureInclude makes postgresql.conf read pipeweave.conf.
func (c *Cluster) ensureInclude() error {
	p := filepath.Join(c.dataDir, "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == includeLine {
			return nil
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings of the current start, written by PipeWeave.\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to postgresql.conf: %w", err)
	}
	return nil
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// settingsConf renders extra settings as postgresql.conf lines, sorted by name.
func settingsConf(settings map[string]string) (string, error) {
	names := make([]string, 0, len(settings))
	for name := range settings {
		if !settingName.MatchString(name) {
			return "", fmt.Errorf("PostgreSQL setting %q: not a setting name", name)
		}
		if strings.EqualFold(name, "port") {
			return "", errors.New("PostgreSQL setting port: use Options.Port")
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s = %s\n", name, quoteConf(settings[name]))
	}
	return b.String(), nil
}

func baseConf(port int) string {
	return "# Written by PipeWeave at every start: changes here are lost.\n" +
		"listen_addresses = '127.0.0.1'\n" +
		"port = " + strconv.Itoa(port) + "\n" +
		"unix_socket_directories = ''\n"
}

func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// command prepares a PostgreSQL program run as the cluster's account.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = childEnv()
	cmd.SysProcAttr = c.sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (c *Cluster) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if c.acct != nil {
		attr.Credential = &syscall.Credential{Uid: c.acct.uid, Gid: c.acct.gid, Groups: c.acct.groups}
	}
	return attr
}

// childEnv is this process's environment without the PG* variables that would redirect
// the PostgreSQL programs, with messages in English.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// writeOwned writes a file and hands it to the cluster's account.
func (c *Cluster) writeOwned(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return c.chown(path)
}

func (c *Cluster) chown(path string) error {
	if c.acct == nil {
		return nil
	}
	if err := os.Lchown(path, int(c.acct.uid), int(c.acct.gid)); err != nil {
		return fmt.Errorf("give %s to %s: %w", path, c.acct.name, err)
	}
	return nil
}

func (c *Cluster) chownTree(root string) error {
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return c.chown(p)
	})
	if err != nil {
		return fmt.Errorf("give data directory to %s: %w", c.acct.name, err)
	}
	return nil
}

// readPidFile reads the postmaster's pid and port from postmaster.pid.
func readPidFile(dataDir string) (pid, port int, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return 0, 0, fmt.Errorf("postmaster.pid in %s: pid: %w", dataDir, err)
	}
	if len(lines) > 3 {
		port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pid, port, nil
}

func readPortFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, portFileName))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

func sameDir(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func bindFailed(log string) bool {
	return strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "could not create any TCP/IP sockets")
}

func sharedMemoryBusy(log string) bool {
	return strings.Contains(log, "pre-existing shared memory block")
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// timeoutSeconds is what pg_ctl -t gets: the time left on ctx, or readyTimeout.
func timeoutSeconds(ctx context.Context) int {
	if dl, ok := ctx.Deadline(); ok {
		if s := int(time.Until(dl).Seconds()); s > 0 {
			return s
		}
		return 1
	}
	return int(readyTimeout.Seconds())
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns what path holds past offset (at most its last 64 KiB).
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if size := fileSize(path); size-offset > 64<<10 {
		offset = size - 64<<10
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 64<<10))
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailer copies what is appended to a file to a writer until closed.
type tailer struct {
	stop chan struct{}
	done chan struct{}
}

func startTail(path string, offset int64, w io.Writer) *tailer {
	t := &tailer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		buf := make([]byte, 32<<10)
		pump := func() {
			f, err := os.Open(path)
			if err != nil {
				return
			}
			defer f.Close()
			for {
				n, err := f.ReadAt(buf, offset)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					offset += int64(n)
				}
				if err != nil || n == 0 {
					return
				}
			}
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			pump()
			select {
			case <-t.stop:
				pump()
				return
			case <-tick.C:
			}
		}
	}()
	return t
}

func (t *tailer) close() {
	close(t.stop)
	<-t.done
}
