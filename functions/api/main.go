// Command api serves the PipeWeave HTTP API as a stateless function on $PORT (Cloud Run style).
// It is configured from the environment like `pipeweave serve`, except that MODE defaults to
// serverless: no background loop, and POST /api/process is what a scheduler calls.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pipeweave/pipeweave/core"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	cfg, err := core.ConfigFromEnv(func(k string) string {
		if v := getenv(k); v != "" || k != "MODE" {
			return v
		}
		return core.ModeServerless
	})
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	o, err := core.New(ctx, cfg, core.Options{Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	return o.ListenAndServe(ctx, fmt.Sprintf(":%d", cfg.Port))
}
