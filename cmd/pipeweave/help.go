package main

// Help: one entry per command and subcommand (its summary, usage line, the environment
// variables it reads and an example), printed by `pipeweave help CMD [SUB]` and by
// `pipeweave CMD [SUB] --help` alike. The flags are printed from the FlagSet the command really
// parses: every command calls withHelp on its FlagSet, and help runs the command with only
// --help, so that the flag package prints them and the command stops there.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// envVar is an environment variable a command reads, as its help names it.
type envVar struct {
	name string
	text string
}

// command is one command or subcommand of pipeweave.
type command struct {
	path    string   // "trigger", "db migrate"
	summary string   // one line, lower case, no final period
	usage   string   // the command line, from "pipeweave"
	flags   bool     // it parses a FlagSet of its own (false: a group of subcommands, or help)
	env     []envVar // the environment variables it reads; none: it reads none
	envNote string   // a line after the variables, such as where the full list is
	example string   // one example command line (lines after the first are indented too)
}

// The variables shared by several commands.
var (
	dbEnv = []envVar{
		{"DATABASE_URL", "the PostgreSQL URL when --url is not given"},
		{"DB_*", "upstream's DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSL, used when DATABASE_URL is unset"},
	}
	pgEnv = []envVar{
		{"PATH", "where initdb, pg_ctl and postgres are looked for (then /usr/lib/postgresql/N/bin)"},
	}
	clientEnv = []envVar{
		{"PIPEWEAVE_ORCHESTRATOR_URL", "the orchestrator's URL when --url is not given (default " + defaultOrchestratorURL + ")"},
		{"PIPEWEAVE_API_TOKEN", "the API key when --token is not given: one of the orchestrator's PIPEWEAVE_API_KEYS"},
		{"PIPEWEAVE_DEV_DIR", "without either, for an orchestrator on this machine: the key `pipeweave dev` keeps in $PIPEWEAVE_DEV_DIR/" + devKeyFile + " (default .pipeweave/" + devKeyFile + ")"},
	}
	secretEnv  = envVar{"PIPEWEAVE_SECRET_KEY", "the master secret when --secret is not given (`pipeweave dev` keeps it in .pipeweave/secret)"}
	serviceEnv = envVar{"PIPEWEAVE_SERVICE_KEY", "the service's key (64 hex) when neither --service-key nor --secret is given; read before PIPEWEAVE_SECRET_KEY"}
)

// withEnv is vars followed by more.
func withEnv(vars []envVar, more ...envVar) []envVar {
	return append(append([]envVar(nil), vars...), more...)
}

// commands lists every command and subcommand, in the order of the general usage. A group
// (db, pg, token, queue, dlq, maintenance) is followed by its subcommands; bench is both a
// command and the group of bench slowloris. The dispatcher (run in main.go) accepts a
// subcommand only when it is listed here; TestHelpCoversTheDispatcher checks the rest.
var commands = []command{
	{
		path: "serve", summary: "run the orchestrator, configured from environment variables",
		usage: "pipeweave serve [flags]", flags: true,
		env: []envVar{
			{"DATABASE_URL", "required: the PostgreSQL URL (or upstream's DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSL)"},
			{"STORAGE_BACKENDS", `required: JSON array, such as [{"id":"local","provider":"local","credentials":{"basePath":"./storage"}}]`},
			{"PIPEWEAVE_SECRET_KEY", "required: the master secret, 64 hex or at least 32 bytes (openssl rand -hex 32)"},
			{"PIPEWEAVE_API_KEYS", "required: comma list of the operator API's keys (or PIPEWEAVE_INSECURE_NO_AUTH=1, local development only)"},
			{"MODE", "standalone (default) or serverless"},
			{"PORT", "HTTP port (default 3000)"},
			{"MAX_CONCURRENCY", "runs in flight across all instances (default 10; 0: no cap)"},
			{"PIPEWEAVE_ALLOWED_HOSTS", "comma list of the host names the server answers to, * for any"},
			{"WORKER_ALLOWED_NETWORKS", "comma list of private networks (CIDRs) dispatches may reach, such as 10.0.0.0/8"},
			{"LOG_LEVEL", "debug, info (default), warn or error; JSON lines on stderr"},
		},
		envNote: `Every variable and its default: README.md, section "Configuration".`,
		example: `DATABASE_URL=postgres://pipeweave@localhost:5432/pipeweave \
STORAGE_BACKENDS='[{"id":"local","provider":"local","credentials":{"basePath":"./storage"}}]' \
PIPEWEAVE_SECRET_KEY=$(openssl rand -hex 32) PIPEWEAVE_API_KEYS=$(openssl rand -hex 24) \
pipeweave serve --migrate`,
	},
	{
		path: "dev", summary: "run the orchestrator with zero configuration: a private PostgreSQL cluster, local storage, a generated secret and API key under .pipeweave/",
		usage: "pipeweave dev [flags]", flags: true,
		env: []envVar{
			{"DATABASE_URL", "a database to use instead of the private cluster under DIR/pg (or the DB_* variables)"},
			{"PIPEWEAVE_DEV_DIR", "the state directory when --dir is not given (default .pipeweave)"},
			{"PORT", "HTTP port when --port is not given (default 3000)"},
			{"PIPEWEAVE_SECRET_KEY", "the master secret, instead of the one kept in DIR/secret"},
			{"PIPEWEAVE_API_KEYS", "the API keys, instead of the one generated in DIR/" + devKeyFile},
			{"STORAGE_BACKENDS", "instead of local storage in DIR/storage"},
			{"PIPEWEAVE_ALLOWED_HOSTS", "host names to answer to (default localhost, 127.0.0.1, [::1] and the --listen address)"},
			{"WORKER_ALLOWED_NETWORKS", "networks dispatches may reach (default 127.0.0.0/8,::1/128)"},
			{"LOG_LEVEL", "debug, info (default), warn or error; text lines on stderr"},
		},
		envNote: `Every variable of pipeweave serve works too: README.md, section "Configuration".`,
		example: "pipeweave dev --demo",
	},

	{path: "db", summary: "manage the database schema", usage: "pipeweave db init|migrate|status|reset [--url URL]",
		env: dbEnv, example: "pipeweave db migrate --url postgres://postgres@localhost:5432/pipeweave"},
	{path: "db init", summary: "create the schema in an empty database (the same as db migrate)",
		usage: "pipeweave db init [--url URL]", flags: true, env: dbEnv,
		example: "pipeweave db init --url postgres://postgres@localhost:5432/pipeweave"},
	{path: "db migrate", summary: "apply the pending schema migrations",
		usage: "pipeweave db migrate [--url URL]", flags: true, env: dbEnv,
		example: "DATABASE_URL=postgres://postgres@localhost:5432/pipeweave pipeweave db migrate"},
	{path: "db status", summary: "list the schema migrations, applied (when) or pending",
		usage: "pipeweave db status [--url URL]", flags: true, env: dbEnv,
		example: "pipeweave db status --url postgres://postgres@localhost:5432/pipeweave"},
	{path: "db reset", summary: "drop every PipeWeave table and its data, then create the schema again",
		usage: "pipeweave db reset --yes [--url URL]", flags: true, env: dbEnv,
		example: "pipeweave db reset --yes --url postgres://postgres@localhost:5432/pipeweave_test"},

	{path: "pg", summary: "manage a private PostgreSQL cluster in a directory (development and tests)",
		usage: "pipeweave pg start|stop|url --dir DIR", env: pgEnv, example: "pipeweave pg start --dir .pipeweave/pg"},
	{path: "pg start", summary: "initialize the cluster in DIR if needed, start it (or find it running) and print its URL as the only line on stdout",
		usage: "pipeweave pg start --dir DIR [--port N] [--set name=value]...", flags: true, env: pgEnv,
		example: "pipeweave pg start --dir .pipeweave/pg --set fsync=off"},
	{path: "pg stop", summary: "stop the cluster of DIR (nothing to do when it is not running)",
		usage: "pipeweave pg stop --dir DIR", flags: true, env: pgEnv, example: "pipeweave pg stop --dir .pipeweave/pg"},
	{path: "pg url", summary: "print the URL of the postgres database of the cluster in DIR",
		usage: "pipeweave pg url --dir DIR", flags: true, example: `psql "$(pipeweave pg url --dir .pipeweave/pg)"`},

	{path: "bench", summary: "measure end-to-end throughput and latency: an orchestrator on a private cluster and a no-op worker",
		usage: "pipeweave bench [flags]", flags: true,
		env:     withEnv(pgEnv, envVar{"LOG_LEVEL", "the orchestrator's log level (JSON lines on stderr)"}),
		example: "pipeweave bench --tasks 20000 --storage /dev/shm/pwbench"},
	{path: "bench slowloris", summary: "measure /health and the memory of a running orchestrator under thousands of slow connections",
		usage: "pipeweave bench slowloris [--url URL] [--pid PID] [flags]", flags: true,
		example: "pipeweave bench slowloris --url http://127.0.0.1:3000 --pid 4242 --connections 5000"},
	{path: "bench worker", summary: "the no-op Go SDK worker that bench --worker-process runs as a process of its own (bench starts it; it prints its base URL and serves until SIGTERM)",
		usage: "pipeweave bench worker --orchestrators URL[,URL...] [--sink TASK] [--temp-dir DIR]", flags: true,
		env:     []envVar{{"PIPEWEAVE_SERVICE_KEY", "the key of the service bench (bench passes it)"}},
		example: "pipeweave bench --worker-process --tasks 20000"},

	{path: "token", summary: "print a service's key or a registration token",
		usage: "pipeweave token service|register --service ID [flags]", env: []envVar{secretEnv, serviceEnv},
		example: `pipeweave token service --service pdf-processor --secret "$(cat .pipeweave/secret)"`},
	{path: "token service", summary: "print a service's key (64 hex): give it to that service's workers as PIPEWEAVE_SERVICE_KEY",
		usage: "pipeweave token service --service ID [--secret S]", flags: true, env: []envVar{secretEnv},
		example: `pipeweave token service --service pdf-processor --secret "$(cat .pipeweave/secret)"`},
	{path: "token register", summary: "print a registration token for that exact body (to try POST /api/register by hand)",
		usage: "pipeweave token register --service ID --body FILE|- [--service-key K | --secret S]", flags: true,
		env:     []envVar{serviceEnv, secretEnv},
		example: `pipeweave token register --service demo --body register.json --secret "$(cat .pipeweave/secret)"`},

	{path: "services", summary: "list the registered worker services",
		usage: "pipeweave services [--json]", flags: true, env: clientEnv,
		example: "pipeweave services --url http://orchestrator.internal:3000"},
	{path: "pipelines", summary: "list the pipelines, their entry tasks and whether they are valid",
		usage: "pipeweave pipelines [--json]", flags: true, env: clientEnv, example: "pipeweave pipelines --json | jq -r '.[].id'"},
	{path: "trigger", summary: "start a run of a pipeline and print its id; --wait follows it and fails unless it completes",
		usage: "pipeweave trigger PIPELINE [-i JSON|@file] [--failure-mode M] [--priority N] [--validation-mode M] [--timeout-ms N] [--wait] [--json]",
		flags: true,
		env: withEnv(clientEnv,
			envVar{"NO_COLOR", "with --wait on a terminal: no colours when set"},
			envVar{"TERM", "with --wait on a terminal: no colours when dumb"}),
		example: `pipeweave trigger pdf-processor -i '{"pdfUrl": "https://example.com/a.pdf"}' --wait`},
	{path: "status", summary: "show a pipeline run (prun_…) with its task runs, its map nodes' items counted by state and its sub-pipeline parent and child runs, or one task run (trun_…)",
		usage: "pipeweave status RUN [--json]", flags: true, env: clientEnv,
		example: `pipeweave status "$(pipeweave trigger pdf-processor -i @input.json)"`},
	{path: "cancel", summary: "cancel a pipeline run (prun_…), or a task run outside any pipeline (trun_…), and show it as it now is; a run that already ended is an error that names its status",
		usage: "pipeweave cancel RUN [--json]", flags: true, env: clientEnv,
		example: `pipeweave cancel trun_01jbx9k3m4n5p6q7r8s9t0v1w2`},
	{path: "runs", summary: "list pipeline runs, newest first",
		usage: "pipeweave runs [--pipeline P] [--status S] [--limit N] [--json]", flags: true, env: clientEnv,
		example: "pipeweave runs --pipeline pdf-processor --status failed --limit 0"},
	{path: "dry-run", summary: "validate a pipeline and show its plan by levels, its map nodes, and its sub-pipeline nodes with their child plans",
		usage: "pipeweave dry-run PIPELINE [--json]", flags: true, env: clientEnv, example: "pipeweave dry-run pdf-processor"},

	{path: "queue", summary: "the task queue: task runs counted by state, and listed",
		usage: "pipeweave queue status|items [flags]", env: clientEnv, example: "pipeweave queue status"},
	{path: "queue status", summary: "count the task runs by state, with the DLQ size and the oldest pending run",
		usage: "pipeweave queue status [--json]", flags: true, env: clientEnv, example: "pipeweave queue status --json"},
	{path: "queue items", summary: "list task runs, newest first",
		usage: "pipeweave queue items [--status S] [--task T] [--limit N] [--json]", flags: true, env: clientEnv,
		example: "pipeweave queue items --status pending --limit 20"},

	{path: "dlq", summary: "the dead-letter queue: the runs that failed for good",
		usage: "pipeweave dlq list|show|retry|retry-all|purge [flags]", env: clientEnv, example: "pipeweave dlq list --state open"},
	{path: "dlq list", summary: "list dead-letter entries, newest first",
		usage: "pipeweave dlq list [--pipeline P] [--task T] [--state open|retried] [--limit N] [--json]", flags: true, env: clientEnv,
		example: "pipeweave dlq list --state open --task extract-text"},
	{path: "dlq show", summary: "show one entry with every attempt and its error",
		usage: "pipeweave dlq show ID [--json]", flags: true, env: clientEnv,
		example: `pipeweave dlq show "$(pipeweave dlq list --limit 1 --json | jq -r '.[0].id')"`},
	{path: "dlq retry", summary: "queue a new run of an entry's input at the task's current code version",
		usage: "pipeweave dlq retry ID [--json]", flags: true, env: clientEnv,
		example: `pipeweave dlq retry "$(pipeweave dlq list --limit 1 --json | jq -r '.[0].id')"`},
	{path: "dlq retry-all", summary: "retry every open entry (of a pipeline, of a task)",
		usage: "pipeweave dlq retry-all [--pipeline P] [--task T] [--json]", flags: true, env: clientEnv,
		example: "pipeweave dlq retry-all --task extract-text"},
	{path: "dlq purge", summary: "delete the entries that failed longer ago than AGE (7d, 36h, 90m…)",
		usage: "pipeweave dlq purge --older-than AGE [--json]", flags: true, env: clientEnv,
		example: "pipeweave dlq purge --older-than 30d"},

	{path: "maintenance", summary: "maintenance mode: stop claiming work around a schema migration",
		usage: "pipeweave maintenance status|enter|exit [flags]", env: clientEnv,
		example: "pipeweave maintenance enter --wait && pipeweave db migrate && pipeweave maintenance exit"},
	{path: "maintenance status", summary: "show the mode and the runs in flight and pending",
		usage: "pipeweave maintenance status [--json]", flags: true, env: clientEnv, example: "pipeweave maintenance status"},
	{path: "maintenance enter", summary: "stop claiming; running tasks finish. --wait follows until nothing is in flight (mode maintenance)",
		usage: "pipeweave maintenance enter [--wait] [--poll D] [--json]", flags: true, env: clientEnv,
		example: "pipeweave maintenance enter --wait"},
	{path: "maintenance exit", summary: "resume claiming; the work that waited is dispatched",
		usage: "pipeweave maintenance exit [--json]", flags: true, env: clientEnv, example: "pipeweave maintenance exit"},

	{path: "pause", summary: "pause a task type or a pipeline: its work is still accepted and waits until it is resumed",
		usage: "pipeweave pause task|pipeline ID [--json]", env: clientEnv, example: "pipeweave pause task send-invoice"},
	{path: "pause task", summary: "pause task TASK: no claim takes its runs once this returns; attempts already dispatched run to their end",
		usage: "pipeweave pause task TASK [--json]", flags: true, env: clientEnv, example: "pipeweave pause task send-invoice"},
	{path: "resume", summary: "resume a paused task type or pipeline",
		usage: "pipeweave resume task|pipeline ID [--json]", env: clientEnv, example: "pipeweave resume task send-invoice"},
	{path: "resume task", summary: "resume task TASK: its waiting runs are claimed again, in priority order",
		usage: "pipeweave resume task TASK [--json]", flags: true, env: clientEnv, example: "pipeweave resume task send-invoice"},
	{path: "pause pipeline", summary: "pause pipeline PIPELINE: triggers are accepted, and no claim takes its runs' nodes once this returns; attempts already dispatched run to their end",
		usage: "pipeweave pause pipeline PIPELINE [--json]", flags: true, env: clientEnv, example: "pipeweave pause pipeline pdf-processor"},
	{path: "resume pipeline", summary: "resume pipeline PIPELINE: its waiting nodes are claimed again, in priority order",
		usage: "pipeweave resume pipeline PIPELINE [--json]", flags: true, env: clientEnv, example: "pipeweave resume pipeline pdf-processor"},

	{path: "schedules", summary: "cron schedules that enqueue a task or trigger a pipeline with a fixed input",
		usage: "pipeweave schedules list|get|put|delete [flags]", env: clientEnv, example: "pipeweave schedules list"},
	{path: "schedules list", summary: "the schedules, what they fire, their next slot and last run",
		usage: "pipeweave schedules list [--json]", flags: true, env: clientEnv, example: "pipeweave schedules list"},
	{path: "schedules get", summary: "one schedule: its next five fire times and its latest handled slots",
		usage: "pipeweave schedules get SCHEDULE [--json]", flags: true, env: clientEnv, example: "pipeweave schedules get nightly-report"},
	{path: "schedules put", summary: "create or replace a schedule (the same cron and time zone keep its next slot)",
		usage: "pipeweave schedules put SCHEDULE --cron EXPR --task TASK|--pipeline PIPELINE [flags]", flags: true, env: clientEnv,
		example: `pipeweave schedules put nightly-report --cron "30 2 * * *" --timezone Europe/Berlin --task report --input '{"kind":"daily"}' --overlap skip`},
	{path: "schedules delete", summary: "delete a schedule; the runs it made stay",
		usage: "pipeweave schedules delete SCHEDULE [--json]", flags: true, env: clientEnv, example: "pipeweave schedules delete nightly-report"},
	{path: "webhooks", summary: "signed webhooks: notifications of run endings and DLQ entries, with a delivery log",
		usage: "pipeweave webhooks list|get|put|delete|deliveries|resend [flags]", env: clientEnv,
		example: "pipeweave webhooks put ops --endpoint https://hooks.example.com/pw --events pipeline_run.failed,dlq.added"},
	{path: "webhooks list", summary: "list the webhooks (never their secrets)",
		usage: "pipeweave webhooks list [--json]", flags: true, env: clientEnv, example: "pipeweave webhooks list"},
	{path: "webhooks get", summary: "show one webhook",
		usage: "pipeweave webhooks get ID [--json]", flags: true, env: clientEnv, example: "pipeweave webhooks get ops"},
	{path: "webhooks put", summary: "create or replace a webhook; a new one without --secret gets a generated secret, printed this once",
		usage: "pipeweave webhooks put ID --endpoint URL --events E1,E2 [--secret whsec_…] [--disabled] [--json]", flags: true, env: clientEnv,
		example: "pipeweave webhooks put ops --endpoint https://hooks.example.com/pw --events pipeline_run.failed,dlq.added"},
	{path: "webhooks delete", summary: "delete a webhook and its delivery log",
		usage: "pipeweave webhooks delete ID [--json]", flags: true, env: clientEnv, example: "pipeweave webhooks delete ops"},
	{path: "webhooks deliveries", summary: "a webhook's delivery log, newest first: status, attempts, last answer, next attempt",
		usage: "pipeweave webhooks deliveries ID [--status pending|delivered|dead] [--limit N] [--json]", flags: true, env: clientEnv,
		example: "pipeweave webhooks deliveries ops --status dead"},
	{path: "webhooks resend", summary: "send a delivered or dead delivery again, with the same webhook-id",
		usage: "pipeweave webhooks resend ID DELIVERY [--json]", flags: true, env: clientEnv,
		example: "pipeweave webhooks resend ops msg_018f…"},
	{path: "rate-limits", summary: "named rate limits: at most LIMIT runs dispatched per PERIOD, shared by the tasks that register rateLimitKey KEY",
		usage: "pipeweave rate-limits list|put|delete [args] [--json]", env: clientEnv, example: "pipeweave rate-limits put email 100 1m"},
	{path: "rate-limits list", summary: "list the named rate limits",
		usage: "pipeweave rate-limits list [--json]", flags: true, env: clientEnv, example: "pipeweave rate-limits list"},
	{path: "rate-limits put", summary: "create or replace rate limit KEY: at most LIMIT runs per PERIOD (1s, 500ms, 1m…, at most 24h), across every instance",
		usage: "pipeweave rate-limits put KEY LIMIT PERIOD [--json]", flags: true, env: clientEnv, example: "pipeweave rate-limits put email 100 1m"},
	{path: "rate-limits delete", summary: "delete rate limit KEY (refused while registered tasks name it)",
		usage: "pipeweave rate-limits delete KEY [--json]", flags: true, env: clientEnv, example: "pipeweave rate-limits delete email"},

	{path: "help", summary: "show the help of a command: its flags, the environment variables it reads and an example",
		usage:   "pipeweave help [COMMAND [SUBCOMMAND]]   (the same as pipeweave COMMAND [SUBCOMMAND] --help)",
		example: "pipeweave help dlq retry"},
}

// lookup returns the command at path ("db migrate"), or nil.
func lookup(path string) *command {
	for i := range commands {
		if commands[i].path == path {
			return &commands[i]
		}
	}
	return nil
}

// subcommands returns the subcommands of the command at path, in order.
func subcommands(path string) []*command {
	var subs []*command
	for i := range commands {
		if parent, _, ok := strings.Cut(commands[i].path, " "); ok && parent == path {
			subs = append(subs, &commands[i])
		}
	}
	return subs
}

// subNames is the names of the subcommands of path: "init, migrate, status, reset".
func subNames(path string) string {
	var names []string
	for _, s := range subcommands(path) {
		names = append(names, strings.TrimPrefix(s.path, path+" "))
	}
	return strings.Join(names, ", ")
}

// usageError is a command line that names no command, or one that does not exist: exit
// status 2, with the usage on stderr.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode is the exit status for what run returned: 0 for success (a help request
// included), 2 for a command line naming no command or an unknown one, 1 for any other error.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// isHelpFlag says whether arg asks the flag package for help.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// wantsHelp says whether args ask for help (a help flag before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// resolve finds the command args name and returns it with the arguments after its name. A
// group needs one of its subcommands first (bench, a command itself, only when the next
// argument is not a flag), unless help is asked for; the error for an unknown one says which there are, and the usage to
// print (the general one, or the group's help) goes to stderr.
func resolve(args []string, help bool, stderr io.Writer) (*command, []string, error) {
	c := lookup(args[0])
	if c == nil || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, usage)
		return nil, nil, &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	rest := args[1:]
	if len(subcommands(c.path)) == 0 {
		return c, rest, nil
	}
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		if sub := lookup(c.path + " " + rest[0]); sub != nil {
			return sub, rest[1:], nil
		}
		writeHelp(stderr, c, nil)
		return nil, nil, &usageError{fmt.Sprintf("unknown %s command %q", c.path, rest[0])}
	}
	if !c.flags && !help && !wantsHelp(rest) {
		writeHelp(stderr, c, nil)
		return nil, nil, &usageError{fmt.Sprintf("%s: give a command first: %s", c.path, subNames(c.path))}
	}
	return c, rest, nil
}

// unknownSubcommand is the error of a group command (db, pg, token, queue, dlq, maintenance,
// pause, resume, schedules, webhooks, rate-limits)
// called without one of its subcommands. route refuses such a command line before the group
// runs (with the group's help and exit status 2), so this only guards a direct call.
func unknownSubcommand(group string, args []string) error {
	if len(args) == 0 {
		return &usageError{fmt.Sprintf("%s: give a command first: %s", group, subNames(group))}
	}
	return &usageError{fmt.Sprintf("unknown %s command %q", group, args[0])}
}

// route checks the command line against the command table before anything runs: no command,
// an unknown command or subcommand is a usage error (exit status 2), and a command line asking
// for help (-h or --help anywhere before "--") prints that command's help on stdout and runs
// nothing. It reports whether it handled the command line; when not, run dispatches it.
func route(ctx context.Context, args []string, stdout, stderr io.Writer) (bool, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return true, &usageError{"no command given"}
	}
	if args[0] == "help" {
		return false, nil
	}
	if isHelpFlag(args[0]) {
		return true, helpCommand(ctx, nil, stdout, stderr)
	}
	c, rest, err := resolve(args, false, stderr)
	if err != nil {
		return true, err
	}
	if wantsHelp(rest) {
		_, err := printHelp(ctx, c, stdout)
		return true, err
	}
	return false, nil
}

// helpCommand is `pipeweave help [COMMAND [SUBCOMMAND]]`: the general usage, or the command's
// help, on stdout.
func helpCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var words []string
	for _, a := range args {
		if !isHelpFlag(a) {
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	c, rest, err := resolve(words, true, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{fmt.Sprintf("help: unexpected argument %q (usage: pipeweave help [COMMAND [SUBCOMMAND]])", rest[0])}
	}
	_, err = printHelp(ctx, c, stdout)
	return err
}

// helpOutput is the flag output of a command run for its help only: its usage function then
// prints the whole help there, and notes the FlagSet it printed.
type helpOutput struct {
	io.Writer
	fs *flag.FlagSet
}

// printHelp writes the help of c to w and returns the FlagSet whose flags it printed (nil for a
// command without flags). A command with flags is dispatched with only --help, an ended context
// and an empty environment, so that its own FlagSet prints its flags (and no default taken from
// the environment, such as a URL with a password) and nothing else runs.
func printHelp(ctx context.Context, c *command, w io.Writer) (*flag.FlagSet, error) {
	if !c.flags {
		writeHelp(w, c, nil)
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	out := &helpOutput{Writer: w}
	err := dispatch(ctx, append(strings.Fields(c.path), "--help"), w, out, func(string) string { return "" })
	if out.fs == nil || !errors.Is(err, flag.ErrHelp) {
		return nil, fmt.Errorf("pipeweave %s --help printed no help (%v): its FlagSet needs withHelp", c.path, err)
	}
	return out.fs, nil
}

// withHelp sets the usage function of fs, the FlagSet of the command named fs.Name() ("db
// migrate"): every command calls it right after flag.NewFlagSet. For a help request it prints
// the command's whole help with fs's flags; after a parse error (already printed by the flag
// package), the usage line, the flags and where the rest of the help is.
func withHelp(fs *flag.FlagSet) {
	fs.Usage = func() {
		c := lookup(fs.Name())
		if c == nil {
			c = &command{path: fs.Name(), usage: "pipeweave " + fs.Name() + " [flags]", flags: true}
		}
		if h, ok := fs.Output().(*helpOutput); ok {
			h.fs = fs
			writeHelp(h.Writer, c, fs)
			return
		}
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\nflags:\n", c.usage)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nRun 'pipeweave help %s' for the environment variables it reads and an example.\n", c.path)
	}
}

// writeHelp writes the help of c: summary, usage, subcommands, the flags of fs (when not nil),
// environment variables and the example.
func writeHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "pipeweave %s: %s\n\nUsage:\n  %s\n", c.path, c.summary, c.usage)
	if subs := subcommands(c.path); len(subs) > 0 {
		fmt.Fprintln(w, "\nCommands:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, s := range subs {
			fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimPrefix(s.path, c.path+" "), s.summary)
		}
		_ = tw.Flush()
		fmt.Fprintf(w, "Run 'pipeweave help %s COMMAND' for a command's flags.\n", c.path)
	}
	if fs != nil {
		fmt.Fprintln(w, "\nFlags:")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	fmt.Fprintln(w, "\nEnvironment:")
	if len(c.env) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range c.env {
		fmt.Fprintf(tw, "  %s\t%s\n", v.name, v.text)
	}
	_ = tw.Flush()
	if c.envNote != "" {
		fmt.Fprintf(w, "  %s\n", c.envNote)
	}
	fmt.Fprintf(w, "\nExample:\n  %s\n", strings.ReplaceAll(c.example, "\n", "\n    "))
}
