package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// devCommand runs the orchestrator with zero configuration: every required variable that is
// not set gets a local default, and without DATABASE_URL a private PostgreSQL cluster runs
// under the state directory for as long as the command does. The environment is read
// through getenv.
func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".pipeweave", "state directory: database cluster, storage, secret")
	port := fs.Int("port", 0, "HTTP port (default $PORT or 3000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(stderr, true, getenv)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", abs, err)
	}
	defaults := map[string]string{}
	dbURL := getenv("DATABASE_URL")
	if dbURL == "" {
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(abs, "pg")})
		if err != nil {
			return fmt.Errorf("start the private PostgreSQL cluster: %w", err)
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cluster.Stop(stopCtx); err != nil {
				fmt.Fprintf(stderr, "pipeweave: stop the private PostgreSQL cluster: %v\n", err)
			}
		}()
		if err := cluster.EnsureDatabase(ctx, "pipeweave"); err != nil {
			return err
		}
		dbURL = cluster.URL("pipeweave")
		defaults["DATABASE_URL"] = dbURL
	}
	if err := migrateURL(ctx, dbURL); err != nil {
		return err
	}
	secret, err := devSecret(filepath.Join(abs, "secret"))
	if err != nil {
		return err
	}
	defaults["PIPEWEAVE_SECRET_KEY"] = secret
	backends, err := json.Marshal([]map[string]any{{
		"id": "local", "provider": "local", "isDefault": true,
		"credentials": map[string]string{"basePath": filepath.Join(abs, "storage")},
	}})
	if err != nil {
		return err
	}
	defaults["STORAGE_BACKENDS"] = string(backends)
	if *port != 0 {
		defaults["PORT"] = strconv.Itoa(*port)
	}
	withDefaults := func(k string) string {
		if k == "PORT" && *port != 0 {
			return defaults[k]
		}
		if v := getenv(k); v != "" {
			return v
		}
		return defaults[k]
	}
	cfg, err := core.ConfigFromEnv(withDefaults)
	if err != nil {
		return err
	}
	o, err := core.New(ctx, cfg, core.Options{Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	fmt.Fprintf(stdout, "PipeWeave orchestrator (dev, %s mode) on http://localhost:%d\n", cfg.Mode, cfg.Port)
	fmt.Fprintf(stdout, "  database: %s\n", redactURL(dbURL))
	fmt.Fprintf(stdout, "  storage:  %s\n", filepath.Join(abs, "storage"))
	fmt.Fprintf(stdout, "  secret:   %s (PIPEWEAVE_SECRET_KEY for your workers)\n", filepath.Join(abs, "secret"))
	fmt.Fprintln(stdout, "Press Ctrl+C to stop.")
	return o.ListenAndServe(ctx, fmt.Sprintf(":%d", cfg.Port))
}

// devSecret reads the secret kept at path or makes one (32 random bytes, hex) and keeps it.
func devSecret(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(raw)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

func migrateURL(ctx context.Context, url string) error {
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return fmt.Errorf("migrate the database: %w", err)
	}
	return nil
}

// redactURL hides a password in a database URL.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	creds := u[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return u[:scheme+3] + user + ":xxxxx" + u[at:]
	}
	return u
}
