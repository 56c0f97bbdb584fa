package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
)

// runScheduleBench measures how late schedule slots fire (bench --schedules N): it puts N
// schedules that fire the noop task every second, lets them fire for the given time, disables
// them, waits for their runs to complete and prints the lag from each slot to its run's creation
// (the fire) and to its completion, by the database clock.
func runScheduleBench(ctx context.Context, api *apiclient.Client, db database.Executor, w benchWorker, n int, d time.Duration, stdout io.Writer) error {
	put := func(i int, enabled bool) error {
		_, err := api.Do(ctx, http.MethodPut, fmt.Sprintf("/api/schedules/bench-%d", i), nil,
			protocol.ScheduleRequest{Cron: "* * * * * *", TaskID: "noop", Enabled: &enabled}, nil)
		return err
	}
	for i := range n {
		if err := put(i, true); err != nil {
			return fmt.Errorf("put schedule %d: %w", i, err)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	for i := range n {
		if err := put(i, false); err != nil {
			return fmt.Errorf("disable schedule %d: %w", i, err)
		}
	}
	fire, _, err := database.ScheduleLags(ctx, db)
	if err != nil {
		return err
	}
	if err := waitCompleted(ctx, w, int64(len(fire)), "scheduled runs"); err != nil {
		return err
	}
	fire, completed, err := database.ScheduleLags(ctx, db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d schedules fired %d slots in %s (%d completed)\n", n, len(fire), d, len(completed))
	fmt.Fprintf(stdout, "slot→fired lag: p50 %s  p90 %s  p99 %s  max %s\n", pct(fire, 0.5), pct(fire, 0.9), pct(fire, 0.99), pct(fire, 1))
	fmt.Fprintf(stdout, "slot→completed lag: p50 %s  p90 %s  p99 %s  max %s\n", pct(completed, 0.5), pct(completed, 0.9), pct(completed, 0.99), pct(completed, 1))
	return nil
}
