// Package migrate applies the embedded schema migrations to a PostgreSQL database.
//
// All PipeWeave objects live in the schema named by [Schema]. Migrations run in one
// transaction each, under a session advisory lock, so several instances starting at
// once apply every file exactly once.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/migrations"
)

// Schema is the PostgreSQL schema that holds every PipeWeave table and function (the data
// layer's, package internal/database, whose pools put it first on the search path).
const Schema = database.Schema

// lockKey is the advisory lock taken while migrating ("pipeweave" as a 64-bit number).
const lockKey int64 = 0x706970657765617

// Migration is one numbered SQL file and, when applied, the time it was applied.
type Migration struct {
	Version   int
	Name      string
	AppliedAt *time.Time
}

type file struct {
	Migration
	sql string
}

func load() ([]file, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %q: name must be NNN_description.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %q: %w", name, err)
		}
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		files = append(files, file{Migration{Version: v, Name: strings.TrimSuffix(name, ".sql")}, string(body)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Version < files[j].Version })
	for i := 1; i < len(files); i++ {
		if files[i].Version == files[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", files[i].Version)
		}
	}
	return files, nil
}

// withLock runs fn on one connection holding the migration advisory lock.
func withLock(ctx context.Context, pool *pgxpool.Pool, fn func(*pgx.Conn) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must be released even when ctx is done.
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey)
	}()
	return fn(conn.Conn())
}

func ensureTable(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+Schema+`;
CREATE TABLE IF NOT EXISTS `+Schema+`.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

func applied(ctx context.Context, conn *pgx.Conn) (map[int]time.Time, error) {
	rows, err := conn.Query(ctx, `SELECT version, applied_at FROM `+Schema+`.schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	done := map[int]time.Time{}
	for rows.Next() {
		var v int
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		done[v] = at
	}
	return done, rows.Err()
}

// Up applies every migration not yet applied and returns the versions it applied.
func Up(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	files, err := load()
	if err != nil {
		return nil, err
	}
	var ran []int
	err = withLock(ctx, pool, func(conn *pgx.Conn) error {
		if err := ensureTable(ctx, conn); err != nil {
			return err
		}
		done, err := applied(ctx, conn)
		if err != nil {
			return err
		}
		for _, f := range files {
			if _, ok := done[f.Version]; ok {
				continue
			}
			if err := apply(ctx, conn, f); err != nil {
				return err
			}
			ran = append(ran, f.Version)
		}
		return nil
	})
	return ran, err
}

func apply(ctx context.Context, conn *pgx.Conn, f file) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migration %s: begin: %w", f.Name, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+Schema); err != nil {
		return fmt.Errorf("migration %s: %w", f.Name, err)
	}
	if _, err := tx.Exec(ctx, f.sql); err != nil {
		return fmt.Errorf("migration %s: %w", f.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+Schema+`.schema_migrations (version, name) VALUES ($1, $2)`,
		f.Version, f.Name); err != nil {
		return fmt.Errorf("migration %s: record: %w", f.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migration %s: commit: %w", f.Name, err)
	}
	return nil
}

// Status lists every known migration with the time it was applied (nil when pending).
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	files, err := load()
	if err != nil {
		return nil, err
	}
	var done map[int]time.Time
	err = withLock(ctx, pool, func(conn *pgx.Conn) error {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, Schema+".schema_migrations").Scan(&exists); err != nil {
			return fmt.Errorf("look for schema_migrations: %w", err)
		}
		if !exists {
			done = map[int]time.Time{}
			return nil
		}
		done, err = applied(ctx, conn)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Migration, 0, len(files))
	for _, f := range files {
		m := f.Migration
		if at, ok := done[f.Version]; ok {
			at := at
			m.AppliedAt = &at
		}
		out = append(out, m)
	}
	return out, nil
}

// ErrNotConfirmed is returned by Reset when the caller did not confirm.
var ErrNotConfirmed = errors.New("reset drops every PipeWeave table and its data: confirm it")

// Reset drops the PipeWeave schema with all its data and applies every migration again.
// confirm must be true; it exists so that no caller resets by accident.
func Reset(ctx context.Context, pool *pgxpool.Pool, confirm bool) error {
	if !confirm {
		return ErrNotConfirmed
	}
	err := withLock(ctx, pool, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+Schema+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = Up(ctx, pool)
	return err
}
