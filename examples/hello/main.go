// Command hello is the complete worker of docs/worker.md: service "hello" with one task,
// "shout", which upper-cases a text. With `scripts/dev` running in another terminal:
//
//	PIPEWEAVE_SERVICE_KEY=$(go run ./cmd/pipeweave token service --service hello --secret "$(cat .pipeweave/secret)") \
//	    go run ./examples/hello
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pipeweave/pipeweave/worker"
)

func main() {
	// ctx ends on Ctrl+C or SIGTERM: Listen then stops taking dispatches, lets the running
	// attempts finish (up to Config.ShutdownTimeout) and returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	w, err := worker.New(worker.Config{
		OrchestratorURL: envOr("PIPEWEAVE_ORCHESTRATOR_URL", "http://localhost:3000"),
		// The address the orchestrator dispatches to. Empty, it is derived from the listening
		// address (http://127.0.0.1:8091 here), which only works on the orchestrator's machine.
		BaseURL:    os.Getenv("PIPEWEAVE_WORKER_URL"),
		ServiceID:  "hello",
		Version:    "1.0.0",
		ServiceKey: os.Getenv("PIPEWEAVE_SERVICE_KEY"),
	})
	if err != nil {
		return err
	}
	defer w.Close() // releases the storage clients the attempts opened
	if err := w.Register("shout", worker.Options{Timeout: time.Minute}, shout); err != nil {
		return err
	}
	// Serves, registers with the orchestrator, and shuts down gracefully when ctx ends.
	return w.Listen(ctx, envOr("PIPEWEAVE_WORKER_ADDR", "127.0.0.1:8091"))
}

// shout is the task's handler. task is the attempt: a context.Context of its own (it ends when
// the run is cancelled or times out) with the run's input, assets and logs.
func shout(task *worker.Context) (any, error) {
	var in struct {
		Text string `json:"text"`
	}
	if err := task.Decode(&in); err != nil {
		return nil, worker.Fail("BAD_INPUT", err.Error()) // not retried
	}
	task.Log("shouting", "chars", len(in.Text))
	return map[string]string{"text": strings.ToUpper(in.Text)}, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
