// Package testdb gives each test a fresh PostgreSQL database with the PipeWeave schema.
//
// The server is the one named by the environment variable PIPEWEAVE_TEST_DATABASE_URL (a
// URL to an existing database, such as postgres, of a role that may CREATE DATABASE).
// When it is unset, the first test that asks starts one private cluster for the whole test
// process (see package pgcluster), tuned for speed over durability; a package whose tests
// use it should call Main from TestMain so that the cluster is stopped and removed at the
// end (on Linux it also shuts down by itself when the test process dies).
//
// The schema is migrated once into a template database named after the content of the
// migrations, pw_tmpl_<hash>, and each test's database is a copy of it.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
	"github.com/pipeweave/pipeweave/migrations"
)

// EnvURL names the environment variable with the admin URL of the test server.
const EnvURL = "PIPEWEAVE_TEST_DATABASE_URL"

// templateLockKey is the advisory lock, on the admin database, held while a template is
// built ("pwtmpl" as a number).
const templateLockKey int64 = 0x7077746d706c

// clusterDirPrefix starts the name of each private cluster's directory in os.TempDir(),
// followed by the pid of the test process that owns it.
const clusterDirPrefix = "pipeweave-testdb-"

// privateSettings trade durability for speed: a test cluster is thrown away.
var privateSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
	"max_connections":    "300",
}

// server is the state shared by every test of the process.
var server struct {
	mu       sync.Mutex
	ready    bool
	err      error
	adminURL string
	admin    *pgxpool.Pool
	template string
	cluster  *pgcluster.Cluster
	dir      string
}

// New returns a pool (search_path pipeweave, at most 10 connections) on a new database
// with the PipeWeave schema. The pool is closed and the database dropped when the test
// ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dbURL := NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := database.Open(ctx, dbURL, database.Options{MaxConns: 10})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	// Registered after NewURL's cleanup, so it runs before the database is dropped.
	t.Cleanup(pool.Close)
	return pool
}

// NewURL returns the URL of a new database with the PipeWeave schema, dropped when the
// test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin, adminURL, template, err := setup(ctx)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	name, err := createFromTemplate(ctx, admin, template)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return dbURL
}

// Main runs the tests of a package, stops the private cluster if one was started, and
// exits with the tests' code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// setup connects to the server, starting the private cluster when needed, and makes sure
// the template exists. It runs once per process; a failure is returned to every caller.
func setup(ctx context.Context) (*pgxpool.Pool, string, string, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if !server.ready {
		server.ready = true
		server.err = initServer(ctx)
	}
	return server.admin, server.adminURL, server.template, server.err
}

func initServer(ctx context.Context) error {
	server.adminURL = os.Getenv(EnvURL)
	if server.adminURL == "" {
		if err := startCluster(ctx); err != nil {
			return err
		}
	}
	cfg, err := pgxpool.ParseConfig(server.adminURL)
	if err != nil {
		return fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "pipeweave-testdb"
	if server.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("open admin pool: %w", err)
	}
	server.template, err = templateName()
	if err != nil {
		return err
	}
	return ensureTemplate(ctx, server.admin, server.adminURL, server.template)
}

// startCluster starts the private cluster in a new directory under os.TempDir().
func startCluster(ctx context.Context) error {
	sweepStaleClusters()
	dir, err := os.MkdirTemp("", clusterDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return fmt.Errorf("create directory for the test cluster: %w", err)
	}
	// MkdirTemp makes it 0700: open it so that the unprivileged account that runs postgres
	// when we are root can reach the data directory inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("open test cluster directory: %w", err)
	}
	server.dir = dir
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		Dir:      filepath.Join(dir, "data"),
		Settings: privateSettings,
		Attached: true,
	})
	if err != nil {
		return fmt.Errorf("start the test PostgreSQL cluster (or set %s): %w", EnvURL, err)
	}
	server.cluster = c
	server.adminURL = c.URL("postgres")
	return nil
}

// sweepStaleClusters removes the directories of private clusters whose test process is
// gone (one killed before Main could clean up).
func sweepStaleClusters() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*"))
	for _, dir := range matches {
		rest := strings.TrimPrefix(filepath.Base(dir), clusterDirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		// A server still running from it (which the parent-death signal should prevent)
		// keeps the directory.
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if p, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && processAlive(p) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// shutdown closes the admin pool and stops and removes the private cluster.
func shutdown() error {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.admin != nil {
		server.admin.Close()
		server.admin = nil
	}
	server.ready = false
	var errs []error
	if server.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := server.cluster.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop the test cluster: %w", err))
		}
		server.cluster = nil
	}
	if server.dir != "" {
		if err := os.RemoveAll(server.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove the test cluster: %w", err))
		}
		server.dir = ""
	}
	return errors.Join(errs...)
}

// templateName is pw_tmpl_ and the first 12 hex digits of the SHA-256 of every embedded
// migration file, names and contents.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash the migrations: %w", err)
	}
	return "pw_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// ensureTemplate builds the template database unless it exists. It holds an advisory lock
// on the admin database meanwhile, so that the test processes of several packages build
// it once. The template is migrated under a temporary name and renamed when complete, so
// a process killed halfway leaves nothing that looks finished; it allows no connections,
// so that nothing can block the copies.
func ensureTemplate(ctx context.Context, admin *pgxpool.Pool, adminURL, name string) error {
	conn, err := admin.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to the admin database: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return fmt.Errorf("lock template creation: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockKey)
	}()

	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look for template %s: %w", name, err)
	}
	if exists {
		return nil
	}

	building := name + "_new"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(building)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop unfinished template %s: %w", building, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(building)+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return fmt.Errorf("create template %s: %w", building, err)
	}
	buildURL, err := withDatabase(adminURL, building)
	if err != nil {
		return err
	}
	pool, err := database.Open(ctx, buildURL, database.Options{MaxConns: 2})
	if err != nil {
		return fmt.Errorf("template %s: %w", building, err)
	}
	_, err = migrate.Up(ctx, pool)
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrate template %s: %w", building, err)
	}
	err = retryInUse(ctx, func() error {
		_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(building)+" WITH ALLOW_CONNECTIONS false")
		return err
	})
	if err != nil {
		return fmt.Errorf("close template %s to connections: %w", building, err)
	}
	err = retryInUse(ctx, func() error {
		_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(building)+" RENAME TO "+ident(name))
		return err
	})
	if err != nil {
		return fmt.Errorf("rename template %s to %s: %w", building, name, err)
	}
	return nil
}

// createFromTemplate creates pw_test_<random> as a copy of the template.
func createFromTemplate(ctx context.Context, admin *pgxpool.Pool, template string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	name := "pw_test_" + hex.EncodeToString(b[:])
	err := retryInUse(ctx, func() error {
		_, err := admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(template))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create database %s from %s: %w", name, template, err)
	}
	return name, nil
}

// retryInUse retries fn for a while when the database it works on is still being
// accessed: a backend whose client has just disconnected takes a moment to exit.
func retryInUse(ctx context.Context, fn func() error) error {
	delay := 10 * time.Millisecond
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (while waiting: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// withDatabase returns connection string s with its database replaced by name. s is a
// URL or a keyword/value string.
func withDatabase(s, name string) (string, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("parse database URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// Keyword/value form: a later keyword wins.
	return s + " dbname='" + name + "'", nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
