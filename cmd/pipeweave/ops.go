package main

// The operator commands: services, pipelines, trigger, status, runs, dry-run, queue, dlq,
// maintenance and webhooks, each a client of the orchestrator's HTTP API (docs/cli.md).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// opsCommand runs one of the operator commands named by args[0].
func opsCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	name, rest := args[0], args[1:]
	switch name {
	case "services":
		return servicesCommand(ctx, rest, stdout, stderr, getenv)
	case "pipelines":
		return pipelinesCommand(ctx, rest, stdout, stderr, getenv)
	case "trigger":
		return triggerCommand(ctx, rest, stdout, stderr, getenv)
	case "status":
		return statusCommand(ctx, rest, stdout, stderr, getenv)
	case "cancel":
		return cancelCommand(ctx, rest, stdout, stderr, getenv)
	case "pause":
		return pauseCommand(ctx, rest, false, stdout, stderr, getenv)
	case "resume":
		return pauseCommand(ctx, rest, true, stdout, stderr, getenv)
	case "runs":
		return runsCommand(ctx, rest, stdout, stderr, getenv)
	case "dry-run":
		return dryRunCommand(ctx, rest, stdout, stderr, getenv)
	case "queue":
		return queueCommand(ctx, rest, stdout, stderr, getenv)
	case "dlq":
		return dlqCommand(ctx, rest, stdout, stderr, getenv)
	case "maintenance":
		return maintenanceCommand(ctx, rest, stdout, stderr, getenv)
	case "schedules":
		return schedulesCommand(ctx, rest, stdout, stderr, getenv)
	case "webhooks":
		return webhooksCommand(ctx, rest, stdout, stderr, getenv)
	case "rate-limits":
		return rateLimitsCommand(ctx, rest, stdout, stderr, getenv)
	}
	return fmt.Errorf("unknown command %q", name)
}

// ops is one operator command being run: its flags (the common --url, --token and --json
// and its own), its output and, once parsed, its API client.
type ops struct {
	ctx    context.Context
	name   string // "trigger", "dlq list"…
	usage  string // the arguments, for the usage line
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	fs     *flag.FlagSet
	url    string
	token  string
	json   bool
	client *apiClient
}

// newOps makes the flag set of command name (usage: its arguments and flags) with the common
// flags.
func newOps(ctx context.Context, name, usage string, stdout, stderr io.Writer, getenv func(string) string) *ops {
	o := &ops{ctx: ctx, name: name, usage: usage, stdout: stdout, stderr: stderr, getenv: getenv,
		fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	o.fs.SetOutput(stderr)
	withHelp(o.fs)
	// The defaults from the environment are applied after parsing so that -h never prints a
	// token.
	o.fs.StringVar(&o.url, "url", "", "orchestrator URL (default $PIPEWEAVE_ORCHESTRATOR_URL, else "+defaultOrchestratorURL+")")
	o.fs.StringVar(&o.token, "token", "", "API key sent as Authorization: Bearer (default $PIPEWEAVE_API_TOKEN)")
	o.fs.BoolVar(&o.json, "json", false, "print the server's JSON and nothing else")
	return o
}

// parse parses args, flags and arguments in any order ("--" ends the flags), requires exactly
// the positional arguments named by want and returns them; then it makes the API client.
// Nothing is sent to the server before parse succeeded.
func (o *ops) parse(args []string, want ...string) ([]string, error) {
	var pos []string
	for {
		if err := o.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", o.name, err)
		}
		rest := o.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < len(want):
		return nil, fmt.Errorf("%s: missing %s (usage: pipeweave %s %s)", o.name, want[len(pos)], o.name, o.usage)
	case len(pos) > len(want):
		return nil, fmt.Errorf("%s: unexpected argument %q (usage: pipeweave %s %s)", o.name, pos[len(want)], o.name, o.usage)
	}
	for i, p := range pos {
		if strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("%s: %s must not be empty", o.name, want[i])
		}
	}
	if o.url == "" {
		o.url = o.getenv("PIPEWEAVE_ORCHESTRATOR_URL")
	}
	if o.url == "" {
		o.url = defaultOrchestratorURL
	}
	if o.token == "" {
		o.token = o.getenv("PIPEWEAVE_API_TOKEN")
	}
	if o.token == "" {
		o.token = devAPIKey(o.url, o.getenv)
	}
	c, err := newAPIClient(o.url, o.token)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	o.client = c
	return pos, nil
}

// limitFlags adds --limit (default def; 0 = all) and --page-size.
func (o *ops) limitFlags(def int) (limit, pageSize *int) {
	limit = o.fs.Int("limit", def, "most items to list, newest first (0: all)")
	pageSize = o.fs.Int("page-size", 100, "items fetched per request (1 to 500)")
	return limit, pageSize
}

// checkLimits rejects a negative --limit or a --page-size out of range.
func (o *ops) checkLimits(limit, pageSize int) error {
	if limit < 0 {
		return fmt.Errorf("%s: --limit must be 0 (all) or more, got %d", o.name, limit)
	}
	if pageSize < 1 || pageSize > protocol.MaxPageSize {
		return fmt.Errorf("%s: --page-size must be between 1 and %d, got %d", o.name, protocol.MaxPageSize, pageSize)
	}
	return nil
}

// printJSON writes the server's JSON, indented, and a newline.
func (o *ops) printJSON(raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("%s: format the answer: %w", o.name, err)
	}
	buf.WriteByte('\n')
	_, err := o.stdout.Write(buf.Bytes())
	return err
}

// printItems writes items as one JSON array.
func (o *ops) printItems(items []json.RawMessage) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, item := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(item)
	}
	buf.WriteByte(']')
	return o.printJSON(buf.Bytes())
}

// decodeItems decodes each raw item into a T.
func decodeItems[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(items))
	for _, raw := range items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("unexpected item in the answer: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// isTerminal says whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newTable returns a tabwriter for aligned columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// cellText keeps a table cell on one line and in one column.
var cellText = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ")

// row writes cells as one tab-separated row; empty cells show as "-".
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		c = cellText.Replace(c)
		if strings.TrimSpace(c) == "" {
			c = "-"
		}
		cells[i] = c
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// ago is a short relative time: "12s ago", "5m ago", "3h ago", "4d ago", or the date for
// anything older than 30 days.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + shortDuration(-d)
	case d < time.Second:
		return "just now"
	case d < 30*24*time.Hour:
		return shortDuration(d) + " ago"
	default:
		return t.Local().Format("2006-01-02")
	}
}

// shortDuration is the largest unit of d: "12s", "5m", "3h", "4d".
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

// stamp is t in short RFC 3339 (local time, seconds) with the relative time.
func stamp(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.Local().Format(time.RFC3339) + " (" + ago(*t, now) + ")"
}

// duration is d rounded for people: "340ms", "4.1s", "3m12s".
func duration(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// span is the duration from start to end, or to now while end is nil ("12s so far").
func span(start, end *time.Time, now time.Time) string {
	switch {
	case start == nil || start.IsZero():
		return ""
	case end == nil:
		return duration(now.Sub(*start)) + " so far"
	default:
		return duration(end.Sub(*start))
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// truncate shortens s to at most n runes.
func truncate(s string, n int) string {
	s = apiclient.OneLine(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// runSnapshot is the part of a pipeline run's snapshot the commands read: its structure.
type runSnapshot struct {
	EntryTasks []string                         `json:"entryTasks"`
	Tasks      map[string]protocol.PipelineNode `json:"tasks"`
}

// errorText is "CODE: message" of a task run's error.
// runErrorText is errorText for a run's row: a code that only repeats the run's status (a
// cancelled run's CANCELLED) is left out, so that the row says "cancelled" once.
func runErrorText(status protocol.TaskRunStatus, code, msg *string) string {
	if deref(msg) != "" && strings.EqualFold(deref(code), string(status)) {
		return *msg
	}
	return errorText(code, msg)
}

func errorText(code, msg *string) string {
	switch {
	case deref(code) == "":
		return deref(msg)
	case deref(msg) == "":
		return *code
	default:
		return *code + ": " + *msg
	}
}

func servicesCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "services", "[--json]", stdout, stderr, getenv)
	if _, err := o.parse(args); err != nil {
		return err
	}
	var svcs []protocol.Service
	raw, err := o.client.get(ctx, "/api/services", nil, &svcs)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	if len(svcs) == 0 {
		fmt.Fprintln(stdout, "no services registered")
		return nil
	}
	now := time.Now()
	tw := newTable(stdout)
	row(tw, "SERVICE", "VERSION", "BASE URL", "TASKS", "LAST SEEN", "REGISTERED", "TASK IDS")
	for _, s := range svcs {
		row(tw, s.ID, s.Version, s.BaseURL, strconv.Itoa(len(s.Tasks)), ago(s.UpdatedAt, now), ago(s.RegisteredAt, now),
			truncate(strings.Join(s.Tasks, ", "), 60))
	}
	return tw.Flush()
}

func pipelinesCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "pipelines", "[--json]", stdout, stderr, getenv)
	if _, err := o.parse(args); err != nil {
		return err
	}
	var pls []protocol.Pipeline
	raw, err := o.client.get(ctx, "/api/pipelines", nil, &pls)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	if len(pls) == 0 {
		fmt.Fprintln(stdout, "no pipelines")
		return nil
	}
	tw := newTable(stdout)
	row(tw, "PIPELINE", "SERVICE", "ENTRY TASKS", "TASKS", "FAILURE MODE", "VALID")
	var invalid []protocol.Pipeline
	for _, p := range pls {
		valid := "yes"
		if !p.Valid {
			valid = "no"
			invalid = append(invalid, p)
		}
		row(tw, p.ID, p.ServiceID, strings.Join(p.EntryTasks, ", "), strconv.Itoa(len(p.Tasks)), p.FailureMode, valid)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range invalid {
		for _, e := range p.Errors {
			fmt.Fprintf(stdout, "%s: %s\n", p.ID, apiclient.OneLine(e))
		}
	}
	return nil
}

func runsCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "runs", "[--pipeline P] [--status S] [--limit N] [--json]", stdout, stderr, getenv)
	pipeline := o.fs.String("pipeline", "", "only runs of this pipeline")
	status := o.fs.String("status", "", "only runs in this state: running, completed, failed, partial or cancelled")
	limit, pageSize := o.limitFlags(20)
	if _, err := o.parse(args); err != nil {
		return err
	}
	if err := o.checkLimits(*limit, *pageSize); err != nil {
		return err
	}
	items, err := o.client.list(ctx, "/api/runs", url.Values{"pipelineId": {*pipeline}, "status": {*status}}, *limit, *pageSize)
	if err != nil {
		return err
	}
	if o.json {
		return o.printItems(items)
	}
	runs, err := decodeItems[protocol.PipelineRun](items)
	if err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	if len(runs) == 0 {
		fmt.Fprintln(stdout, "no runs")
		return nil
	}
	now := time.Now()
	tw := newTable(stdout)
	row(tw, "RUN", "PIPELINE", "STATUS", "FAILURE MODE", "CREATED", "DURATION", "ERROR")
	for _, r := range runs {
		row(tw, r.ID, r.PipelineID, string(r.Status), r.FailureMode, ago(r.CreatedAt, now), span(&r.CreatedAt, r.CompletedAt, now),
			truncate(deref(r.Error), 80))
	}
	return tw.Flush()
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "status", "RUN [--json]   (RUN: a pipeline run prun_… or a task run trun_…)", stdout, stderr, getenv)
	pos, err := o.parse(args, "RUN")
	if err != nil {
		return err
	}
	// A pipeline run without its map nodes' items: maps counts them.
	return o.showRun(pos[0], "", func(path string, out any) (json.RawMessage, error) {
		var q url.Values
		if strings.HasPrefix(path, "/api/runs/") {
			q = nodesOnly
		}
		return o.client.get(ctx, path, q, out)
	})
}

// showRun shows run id, a task run (trun_…) or a pipeline run, as call answers for its API path
// (GET /api/task-runs/{id} or /api/runs/{id}) followed by suffix.
func (o *ops) showRun(id, suffix string, call func(path string, out any) (json.RawMessage, error)) error {
	if strings.HasPrefix(id, "trun_") {
		var tr protocol.TaskRun
		raw, err := call("/api/task-runs/"+url.PathEscape(id)+suffix, &tr)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		return printTaskRun(o.stdout, tr, time.Now())
	}
	var run protocol.PipelineRun
	raw, err := call("/api/runs/"+url.PathEscape(id)+suffix, &run)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	return printPipelineRun(o.stdout, run, time.Now())
}

// cancelCommand cancels a pipeline run (prun_…) or a task run outside any pipeline (trun_…) and
// shows it as it now is.
func cancelCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "cancel", "RUN [--json]   (RUN: a pipeline run prun_… or a task run trun_… outside any pipeline)", stdout, stderr, getenv)
	pos, err := o.parse(args, "RUN")
	if err != nil {
		return err
	}
	return o.showRun(pos[0], "/cancel", func(path string, out any) (json.RawMessage, error) { return o.client.post(ctx, path, nil, out) })
}

// printPipelineRun shows a run and a table of its task runs.
func printPipelineRun(w io.Writer, run protocol.PipelineRun, now time.Time) error {
	tw := newTable(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, apiclient.OneLine(v))
		}
	}
	kv("run", run.ID)
	kv("pipeline", run.PipelineID)
	kv("status", string(run.Status))
	kv("parent", parentText(run))
	kv("failure mode", run.FailureMode)
	kv("priority", strconv.Itoa(run.Priority))
	kv("created", stamp(&run.CreatedAt, now))
	kv("completed", stamp(run.CompletedAt, now))
	kv("duration", span(&run.CreatedAt, run.CompletedAt, now))
	if run.Deadline != nil {
		kv("deadline", fmt.Sprintf("%s (timeoutMs %d)", stamp(run.Deadline, now), deref(run.TimeoutMs)))
	}
	kv("input", run.InputPath)
	if run.ErrorCode != "" {
		kv("error", errorText(&run.ErrorCode, run.Error))
	} else {
		kv("error", deref(run.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(run.Tasks) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "TASK", "STATUS", "ATTEMPT", "DURATION", "CODE", "CHANGED", "PROGRESS", "TASK RUN", "ERROR")
	for _, t := range orderTasks(run, true) {
		changed := ""
		if t.CodeChanged {
			changed = "yes"
			if t.PreviousCodeVersion != nil {
				changed = fmt.Sprintf("yes (was v%d)", *t.PreviousCodeVersion)
			}
		}
		status := string(t.Status)
		if t.SupersededBy != "" {
			status += " (retried as " + t.SupersededBy + ")"
		}
		row(tw, t.TaskID, status, strconv.Itoa(t.Attempt), span(t.StartedAt, t.CompletedAt, now), "v"+strconv.Itoa(t.CodeVersion),
			changed, progressText(t.TaskRun), t.ID, truncate(runErrorText(t.Status, t.ErrorCode, t.Error), 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printMapNodes(w, run); err != nil {
		return err
	}
	return printChildren(w, run)
}

// progressText is "40% reading page 4", or "" when the task reported no progress.
func progressText(t protocol.TaskRun) string {
	var parts []string
	if t.Progress != nil {
		parts = append(parts, strconv.Itoa(*t.Progress)+"%")
	}
	if t.ProgressMessage != "" {
		parts = append(parts, t.ProgressMessage)
	}
	return strings.Join(parts, " ")
}

// orderTasks orders a run's task runs by their depth in the run's snapshot, then by task id,
// then by creation; withSuperseded keeps the task runs a DLQ retry replaced.
func orderTasks(run protocol.PipelineRun, withSuperseded bool) []protocol.PipelineRunTask {
	depth := map[string]int{}
	var snap runSnapshot
	if json.Unmarshal(run.Snapshot, &snap) == nil {
		var walk func(id string, seen map[string]bool) int
		walk = func(id string, seen map[string]bool) int {
			if d, ok := depth[id]; ok {
				return d
			}
			if seen[id] { // a cycle: not expected in a snapshot
				return 0
			}
			seen[id] = true
			d := 0
			for _, p := range snap.Tasks[id].Predecessors {
				d = max(d, walk(p, seen)+1)
			}
			depth[id] = d
			return d
		}
		for id := range snap.Tasks {
			walk(id, map[string]bool{})
		}
	}
	level := func(t protocol.PipelineRunTask) int {
		if d, ok := depth[t.TaskID]; ok {
			return d
		}
		return len(depth) + 1
	}
	out := make([]protocol.PipelineRunTask, 0, len(run.Tasks))
	for _, t := range run.Tasks {
		// A map node's items are counted in run.Maps, not listed.
		if (withSuperseded || t.SupersededBy == "") && !isItem(run, t) {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b protocol.PipelineRunTask) int {
		if c := level(a) - level(b); c != 0 {
			return c
		}
		if c := strings.Compare(a.TaskID, b.TaskID); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	return out
}

// printTaskRun shows one task run and its previous attempts.
func printTaskRun(w io.Writer, t protocol.TaskRun, now time.Time) error {
	tw := newTable(w)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, apiclient.OneLine(v))
		}
	}
	kv("task run", t.ID)
	kv("task", t.TaskID)
	kv("pipeline run", t.PipelineRunID)
	kv("status", string(t.Status))
	kv("attempt", strconv.Itoa(t.Attempt))
	kv("priority", strconv.Itoa(t.Priority))
	kv("code", fmt.Sprintf("v%d (%s)", t.CodeVersion, t.CodeHash))
	kv("progress", progressText(t))
	kv("created", stamp(&t.CreatedAt, now))
	if t.StartedAt == nil {
		kv("scheduled", stamp(&t.ScheduledAt, now))
	}
	kv("started", stamp(t.StartedAt, now))
	kv("completed", stamp(t.CompletedAt, now))
	kv("duration", span(t.StartedAt, t.CompletedAt, now))
	if t.CompletedAt == nil {
		kv("deadline", stamp(t.DeadlineAt, now))
	}
	kv("idempotency key", t.IdempotencyKey)
	kv("input", t.InputPath)
	if t.OutputPath != nil {
		out := *t.OutputPath
		if t.OutputSize != nil {
			out += fmt.Sprintf(" (%d bytes)", *t.OutputSize)
		}
		kv("output", out)
	}
	kv("logs", deref(t.LogsPath))
	keys := make([]string, 0, len(t.Assets))
	for k := range t.Assets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := t.Assets[k]
		kv("asset "+k, fmt.Sprintf("%s (%d bytes, %s)", a.Path, a.Size, a.Type))
	}
	kv("selected next", strings.Join(t.SelectedNext, ", "))
	kv("error", errorText(t.ErrorCode, t.Error))
	if err := tw.Flush(); err != nil {
		return err
	}
	return printAttempts(w, "failed attempts", t.PreviousAttempts, now)
}

// printAttempts shows failed attempts as a table under a title.
func printAttempts(w io.Writer, title string, attempts []protocol.Attempt, now time.Time) error {
	if len(attempts) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := newTable(w)
	row(tw, "ATTEMPT", "FAILED", "CODE", "ERROR")
	for _, a := range attempts {
		row(tw, strconv.Itoa(a.Attempt), stamp(&a.Timestamp, now), a.ErrorCode, a.Error)
	}
	return tw.Flush()
}

func dryRunCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dry-run", "PIPELINE [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "PIPELINE")
	if err != nil {
		return err
	}
	id := pos[0]
	var plan protocol.DryRun
	raw, err := o.client.post(ctx, "/api/pipelines/"+url.PathEscape(id)+"/dry-run", nil, &plan)
	if err != nil {
		return err
	}
	if o.json {
		if err := o.printJSON(raw); err != nil {
			return err
		}
	} else {
		printDryRun(stdout, id, plan)
	}
	if !plan.Valid {
		msg := fmt.Sprintf("pipeline %q is not valid", id)
		if len(plan.Errors) > 0 {
			msg += ": " + apiclient.OneLine(strings.Join(plan.Errors, "; "))
		}
		return errors.New(msg)
	}
	return nil
}

// printDryRun shows a dry run: validity, the plan by levels, warnings and errors.
func printDryRun(w io.Writer, id string, plan protocol.DryRun) {
	valid := "valid"
	if !plan.Valid {
		valid = "NOT valid"
	}
	fmt.Fprintf(w, "pipeline %s: %s\n", id, valid)
	if len(plan.ExecutionPlan) > 0 {
		fmt.Fprintln(w, "\nplan:")
		tw := newTable(w)
		row(tw, "  STEP", "TYPE", "TASKS", "WAITS FOR")
		for _, s := range plan.ExecutionPlan {
			row(tw, "  "+strconv.Itoa(s.Step), s.Type, strings.Join(s.Tasks, ", "), strings.Join(s.WaitsFor, ", "))
		}
		_ = tw.Flush()
	}
	printPlanNodes(w, plan)
	for _, list := range []struct {
		title string
		items []string
	}{{"warnings", plan.Warnings}, {"errors", plan.Errors}} {
		if len(list.items) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", list.title)
		for _, s := range list.items {
			fmt.Fprintf(w, "  - %s\n", apiclient.OneLine(s))
		}
	}
}

func queueCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("queue", args)
	}
	switch args[0] {
	case "status":
		return queueStatusCommand(ctx, args[1:], stdout, stderr, getenv)
	case "items":
		return queueItemsCommand(ctx, args[1:], stdout, stderr, getenv)
	}
	return unknownSubcommand("queue", args)
}

func queueStatusCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "queue status", "[--json]", stdout, stderr, getenv)
	if _, err := o.parse(args); err != nil {
		return err
	}
	var st protocol.QueueStatus
	raw, err := o.client.get(ctx, "/api/queue/status", nil, &st)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	tw := newTable(stdout)
	for _, c := range []struct {
		name protocol.TaskRunStatus // or "dlq"
		n    int64
	}{{protocol.StatusPending, st.Pending}, {protocol.StatusDispatching, st.Dispatching}, {protocol.StatusRunning, st.Running},
		{protocol.StatusWaiting, st.Waiting}, {protocol.StatusCompleted, st.Completed}, {protocol.StatusFailed, st.Failed},
		{protocol.StatusCancelled, st.Cancelled}, {protocol.StatusSkipped, st.Skipped}, {"dlq", st.DLQ}} {
		fmt.Fprintf(tw, "%s\t%d\n", c.name, c.n)
	}
	oldest := stamp(st.OldestPending, time.Now())
	if oldest == "" {
		oldest = "-"
	}
	fmt.Fprintf(tw, "oldest pending\t%s\n", oldest)
	return tw.Flush()
}

func queueItemsCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "queue items", "[--status S] [--task T] [--limit N] [--json]", stdout, stderr, getenv)
	status := o.fs.String("status", "", "only task runs in this state: waiting, pending, dispatching, running, completed, failed, cancelled or skipped")
	task := o.fs.String("task", "", "only runs of this task")
	limit, pageSize := o.limitFlags(50)
	if _, err := o.parse(args); err != nil {
		return err
	}
	if err := o.checkLimits(*limit, *pageSize); err != nil {
		return err
	}
	items, err := o.client.list(ctx, "/api/queue/items", url.Values{"status": {*status}, "taskId": {*task}}, *limit, *pageSize)
	if err != nil {
		return err
	}
	if o.json {
		return o.printItems(items)
	}
	runs, err := decodeItems[protocol.TaskRun](items)
	if err != nil {
		return fmt.Errorf("queue items: %w", err)
	}
	if len(runs) == 0 {
		fmt.Fprintln(stdout, "no task runs")
		return nil
	}
	now := time.Now()
	tw := newTable(stdout)
	row(tw, "TASK RUN", "TASK", "STATUS", "ATTEMPT", "PRIORITY", "PIPELINE RUN", "CREATED", "PROGRESS", "ERROR")
	for _, r := range runs {
		row(tw, r.ID, r.TaskID, string(r.Status), strconv.Itoa(r.Attempt), strconv.Itoa(r.Priority), r.PipelineRunID, ago(r.CreatedAt, now),
			progressText(r), truncate(runErrorText(r.Status, r.ErrorCode, r.Error), 80))
	}
	return tw.Flush()
}
