// Command pipeweave runs and manages the PipeWeave orchestrator.
//
//	pipeweave serve                     the orchestrator, configured from the environment
//	pipeweave dev [--port N]            the same with zero configuration (private PostgreSQL)
//	pipeweave db init|migrate|status|reset --url URL
//	pipeweave pg start|stop|url --dir DIR
//	pipeweave bench [flags]             end-to-end throughput and latency
//	pipeweave bench slowloris --url URL /health and memory of a running orchestrator under slow connections
//	pipeweave token service --service ID
//	pipeweave token register --service ID --body FILE
//
// and, as clients of a running orchestrator's HTTP API (docs/cli.md):
//
//	pipeweave services | pipelines | runs | status RUN | dry-run PIPELINE
//	pipeweave trigger PIPELINE -i JSON|@file [--wait]
//	pipeweave queue status|items
//	pipeweave dlq list|show|retry|retry-all|purge
//	pipeweave maintenance status|enter [--wait]|exit
//
// pipeweave help COMMAND [SUBCOMMAND] (or COMMAND [SUBCOMMAND] --help) shows a command's flags,
// the environment variables it reads and an example (help.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `usage: pipeweave <command> [flags]

commands:
  serve      run the orchestrator configured from environment variables (MODE=standalone|serverless)
  dev        run the orchestrator with zero configuration: a private PostgreSQL cluster,
             local storage, a generated secret and API key under ./.pipeweave/, on
             127.0.0.1 (--listen ADDR for another address)
  db         init|migrate|status|reset --url URL   manage the database schema
  pg         start|stop|url --dir DIR              manage a private PostgreSQL cluster
  bench      measure end-to-end throughput and latency against a private cluster
             (bench slowloris --url URL --pid PID: a running orchestrator under 5,000 slow connections)
  token      service --service ID [--secret S]     print a service's key (PIPEWEAVE_SERVICE_KEY)
  token      register --service ID --body FILE|-   print a registration token for that body

operator commands, clients of a running orchestrator's HTTP API (docs/cli.md); each takes
--url (default $PIPEWEAVE_ORCHESTRATOR_URL, else http://localhost:3000), --token (default
$PIPEWEAVE_API_TOKEN) and --json (print the server's JSON only):
  services   the registered worker services
  pipelines  the pipelines, their entry tasks and whether they are valid
  trigger    PIPELINE [-i JSON|@file] [--failure-mode M] [--priority N] [--wait]
             start a run; --wait follows it and fails unless it completes
  status     RUN                                   a pipeline run (prun_…) or a task run (trun_…)
  cancel     RUN                                   cancel a pipeline run (prun_…) or a task run outside any pipeline (trun_…)
  runs       [--pipeline P] [--status S] [--limit N]   pipeline runs, newest first
  dry-run    PIPELINE                              validate a pipeline and show its plan
  queue      status | items [--status S] [--task T] [--limit N]
  dlq        list [--pipeline P] [--task T] [--state open|retried] | show ID | retry ID
             | retry-all [--pipeline P] [--task T] | purge --older-than 7d
  maintenance status | enter [--wait] | exit   stop claiming around a schema migration
  pause      task TASK | pipeline PIPELINE         its work waits (still accepted) until resumed
  resume     task TASK | pipeline PIPELINE         its waiting work is claimed again, in priority order
  schedules  list | get ID | put ID --cron EXPR --task T|--pipeline P | delete ID   cron schedules
  webhooks   list | get ID | put ID --endpoint U --events E,… | delete ID | deliveries ID | resend ID DELIVERY
             signed notifications of run endings and DLQ entries (docs/webhooks.md)
  rate-limits list | put KEY LIMIT PERIOD | delete KEY   named rate limits tasks share (rateLimitKey)

pipeweave help COMMAND [SUBCOMMAND] (or COMMAND [SUBCOMMAND] --help) shows a command's flags,
the environment variables it reads and an example.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "pipeweave: "+err.Error())
	}
	os.Exit(exitCode(err))
}

// run executes the command line args (without the program name), writing to stdout and
// stderr and reading environment variables only through getenv (os.Getenv in main), so that
// tests can run it in parallel with environments of their own.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if handled, err := route(ctx, args, stdout, stderr); handled { // help.go
		return err
	}
	return dispatch(ctx, args, stdout, stderr, getenv)
}

// dispatch runs the command args[0]; run has checked it and its subcommand against the
// command table of help.go.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stderr, getenv)
	case "dev":
		return devCommand(ctx, args[1:], stdout, stderr, getenv)
	case "db":
		return dbCommand(ctx, args[1:], stdout, stderr, getenv)
	case "pg":
		return pgCommand(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCommand(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCommand(args[1:], os.Stdin, stdout, stderr, getenv)
	case "services", "pipelines", "trigger", "status", "cancel", "runs", "dry-run", "queue", "dlq", "maintenance", "pause", "resume", "schedules", "webhooks", "rate-limits":
		return opsCommand(ctx, args, stdout, stderr, getenv)
	case "help":
		return helpCommand(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

// newLogger makes the process logger on w: JSON lines, or text lines when text is set, at
// the level named by LOG_LEVEL (read through getenv).
func newLogger(w io.Writer, text bool, getenv func(string) string) (*slog.Logger, error) {
	var level slog.Level
	if v := strings.TrimSpace(getenv("LOG_LEVEL")); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return nil, fmt.Errorf("environment variable LOG_LEVEL: must be debug, info, warn or error, got %q", v)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if text {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}
