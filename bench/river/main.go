// Command river measures River (github.com/riverqueue/river), a Go job queue on PostgreSQL,
// the way `pipeweave bench` measures PipeWeave: jobs inserted in batches, as fast as the
// inserts go, worked by a no-op worker, and jobs per second from the first insert to the last
// completion recorded. River has no HTTP between its queue and its workers, so its figure is the
// ceiling a Postgres queue reaches on the machine, the reference the README's performance
// section compares with. It is a module of its own so that PipeWeave does not depend on River.
//
//	pipeweave pg start --dir /tmp/pg-river --port 37950
//	cd bench/river && go run . --database-url 'postgres://postgres@127.0.0.1:37950/postgres?sslmode=disable'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// noopArgs is the benchmark's job: it does nothing.
type noopArgs struct {
	N int `json:"n"`
}

// Kind names the job kind.
func (noopArgs) Kind() string { return "noop" }

// noopWorker works noop jobs by doing nothing.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work returns at once.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("database-url", "", "PostgreSQL to use (River's tables are made afresh in its schema river_bench)")
	jobs := flag.Int("jobs", 20000, "jobs measured")
	warmup := flag.Int("warmup", 1000, "jobs worked before measuring")
	batch := flag.Int("batch", 1000, "jobs per InsertMany")
	workers := flag.Int("workers", 256, "MaxWorkers of the queue (pipeweave bench's MAX_CONCURRENCY)")
	conns := flag.Int("db-conns", 16, "database connections")
	cooldown := flag.Duration("fetch-cooldown", 100*time.Millisecond, "River's FetchCooldown, the least time between two fetches of jobs (River's default 100 ms; with it a queue fetches at most MaxWorkers jobs per cooldown)")
	flag.Parse()
	if *url == "" {
		return errors.New("--database-url is required")
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(*url)
	if err != nil {
		return err
	}
	cfg.MaxConns = int32(*conns)
	cfg.ConnConfig.RuntimeParams["search_path"] = "river_bench"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS river_bench CASCADE; CREATE SCHEMA river_bench"); err != nil {
		return fmt.Errorf("make River's schema: %w", err)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	w := river.NewWorkers()
	river.AddWorker(w, noopWorker{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *workers}},
		Workers:       w,
		FetchCooldown: *cooldown,
	})
	if err != nil {
		return err
	}
	// Every completion is counted: a channel that fills drops events.
	events, cancelEvents := client.SubscribeConfig(&river.SubscribeConfig{
		Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: *jobs + *warmup})
	defer cancelEvents()
	var completed atomic.Int64
	go func() {
		for range events {
			completed.Add(1)
		}
	}()
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()
	measure := func(n int) (total, inserted time.Duration, err error) {
		before := completed.Load()
		start := time.Now()
		for i := 0; i < n; i += *batch {
			params := make([]river.InsertManyParams, min(*batch, n-i))
			for j := range params {
				params[j] = river.InsertManyParams{Args: noopArgs{N: i + j}}
			}
			if _, err := client.InsertMany(ctx, params); err != nil {
				return 0, 0, fmt.Errorf("insert: %w", err)
			}
		}
		inserted = time.Since(start)
		deadline := time.Now().Add(5 * time.Minute)
		for completed.Load() < before+int64(n) {
			if time.Now().After(deadline) {
				return 0, 0, fmt.Errorf("only %d of %d jobs completed in 5 minutes", completed.Load()-before, n)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start), inserted, nil
	}
	if _, _, err := measure(*warmup); err != nil {
		return err
	}
	total, inserted, err := measure(*jobs)
	if err != nil {
		return err
	}
	fmt.Printf("river %s: %d jobs (after %d warm-up), InsertMany of %d, MaxWorkers %d, FetchCooldown %s, %d DB conns\n",
		"v0.51.2", *jobs, *warmup, *batch, *workers, *cooldown, *conns)
	fmt.Printf("summary: jobs/s=%.0f insert/s=%.0f\n", float64(*jobs)/total.Seconds(), float64(*jobs)/inserted.Seconds())
	return nil
}
