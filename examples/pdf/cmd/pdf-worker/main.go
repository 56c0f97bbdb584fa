// Command pdf-worker runs the example PDF worker against an orchestrator:
//
//	PIPEWEAVE_ORCHESTRATOR_URL=http://localhost:3000 \
//	PIPEWEAVE_SERVICE_KEY=$(go run ./cmd/pipeweave token service --service pdf-processor --secret "$(cat .pipeweave/secret)") \
//	    go run ./examples/pdf/cmd/pdf-worker -addr 127.0.0.1:8081
//
// Deployed apart from the orchestrator, set PIPEWEAVE_WORKER_URL to the URL the orchestrator
// reaches it at (docs/worker.md, "Config.BaseURL").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pipeweave/pipeweave/examples/pdf"
	"github.com/pipeweave/pipeweave/worker"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to serve the worker on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := worker.New(worker.Config{
		OrchestratorURL: envOr("PIPEWEAVE_ORCHESTRATOR_URL", "http://localhost:3000"),
		// Where the orchestrator dispatches to; empty: derived from -addr (local use only).
		BaseURL:   os.Getenv("PIPEWEAVE_WORKER_URL"),
		ServiceID: pdf.ServiceID,
		Version:   "1.0.0",
		// The service's key: `pipeweave token service --service pdf-processor` prints it.
		ServiceKey: os.Getenv("PIPEWEAVE_SERVICE_KEY"),
		// The pipeline with its map node (ocr-page runs once per page).
		Pipelines: pdf.Pipelines(),
	})
	if err == nil {
		defer w.Close()
		err = pdf.Register(w)
	}
	if err == nil {
		err = w.Listen(ctx, *addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pdf-worker:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
