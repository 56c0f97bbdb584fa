package database

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// queries are the generated statements; they run on whatever executor each call names.
var queries = dbsqlc.New()

// DurabilitySettings returns the server's fsync and synchronous_commit settings.
func DurabilitySettings(ctx context.Context, db Executor) (fsync, synchronousCommit string, err error) {
	row, err := queries.DurabilitySettings(ctx, db)
	if err != nil {
		return "", "", fmt.Errorf("read the durability settings: %w", err)
	}
	return row.Fsync, row.SynchronousCommit, nil
}

// ServerVersion returns the server's version (server_version).
func ServerVersion(ctx context.Context, db Executor) (string, error) {
	v, err := queries.ServerVersion(ctx, db)
	if err != nil {
		return "", fmt.Errorf("ask the server version: %w", err)
	}
	return v, nil
}

// RunLatencies returns, sorted, each run's creation→completion time by the database clock:
// of task runs, or of pipeline runs when pipelines is true. It fails unless every run of ids
// completed.
func RunLatencies(ctx context.Context, db Executor, pipelines bool, ids []string) ([]time.Duration, error) {
	read := queries.TaskRunLatencies
	if pipelines {
		read = queries.PipelineRunLatencies
	}
	secs, err := read(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("read run latencies: %w", err)
	}
	if len(secs) != len(ids) {
		return nil, fmt.Errorf("%d of %d runs completed", len(secs), len(ids))
	}
	out := make([]time.Duration, len(secs))
	for i, s := range secs {
		out[i] = time.Duration(s * float64(time.Second))
	}
	slices.Sort(out)
	return out, nil
}

// CountReadyRuns counts the task runs among ids that are pending and ready to be claimed.
func CountReadyRuns(ctx context.Context, db Executor, ids []string) (int64, error) {
	n, err := queries.CountReadyRuns(ctx, db, ids)
	if err != nil {
		return 0, fmt.Errorf("count ready runs: %w", err)
	}
	return n, nil
}

// CountCompletedRuns counts the task runs among ids that completed.
func CountCompletedRuns(ctx context.Context, db Executor, ids []string) (int64, error) {
	n, err := queries.CountCompletedRuns(ctx, db, ids)
	if err != nil {
		return 0, fmt.Errorf("count completed runs: %w", err)
	}
	return n, nil
}

// ListenReady listens, on a connection of its own to pool's database, for the notifications
// that runs are ready (NotifyReady, payload "") or that a schedule changed (NotifySchedules,
// payload "schedules") and calls onReady with the payload of each, until ctx ends or the
// connection fails. It calls onListening once the LISTEN is in place.
func ListenReady(ctx context.Context, pool *pgxpool.Pool, onListening func(), onReady func(payload string)) error {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return interpretError(err)
	}
	defer conn.Close(context.Background())
	if err := queries.ListenReady(ctx, conn); err != nil {
		return interpretError(err)
	}
	onListening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return interpretError(err)
		}
		onReady(n.Payload)
	}
}

// ScheduleLags returns, sorted, how long after its slot each fired schedule slot's run was made
// (fire) and completed (of the completed ones), by the database clock.
func ScheduleLags(ctx context.Context, db Executor) (fire, completed []time.Duration, err error) {
	rows, err := queries.ScheduleLags(ctx, db)
	if err != nil {
		return nil, nil, fmt.Errorf("read schedule lags: %w", err)
	}
	for _, r := range rows {
		fire = append(fire, time.Duration(r.FireS*float64(time.Second)))
		if r.CompletedS >= 0 {
			completed = append(completed, time.Duration(r.CompletedS*float64(time.Second)))
		}
	}
	slices.Sort(fire)
	slices.Sort(completed)
	return fire, completed, nil
}
