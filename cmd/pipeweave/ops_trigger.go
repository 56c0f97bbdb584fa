package main

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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

func triggerCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "trigger", "PIPELINE [-i JSON|@file] [--failure-mode M] [--priority N] [--validation-mode M] [--timeout-ms N] [--wait] [--json]", stdout, stderr, getenv)
	var input string
	o.fs.StringVar(&input, "i", "", "the run's input: JSON text, or @file to read it from a file (default {})")
	o.fs.StringVar(&input, "input", "", "same as -i")
	failureMode := o.fs.String("failure-mode", "", "fail-fast, continue or partial-merge (default: the pipeline's)")
	priority := o.fs.Int("priority", 0, "priority of the run's tasks, lower first (default: each task's)")
	validationMode := o.fs.String("validation-mode", "", "strict, warn or none: how the input is checked against the entry tasks' input schemas (default: the server's, warn)")
	timeoutMs := o.fs.Int64("timeout-ms", 0, "the run's deadline in milliseconds from now, 1 to 2592000000 (30 days), instead of the pipeline's timeoutMs (default: the pipeline's)")
	wait := o.fs.Bool("wait", false, "follow the run until it ends; the exit status says whether it completed")
	poll := o.fs.Duration("poll", 300*time.Millisecond, "with --wait: how often to ask for the run's state")
	pos, err := o.parse(args, "PIPELINE")
	if err != nil {
		return err
	}
	set := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	raw, err := readInput(input, set["i"] || set["input"])
	if err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	if *poll <= 0 {
		return fmt.Errorf("trigger: --poll must be positive, got %s", *poll)
	}
	body := map[string]any{"input": raw}
	if *failureMode != "" {
		body["failureMode"] = *failureMode
	}
	if set["priority"] {
		body["priority"] = *priority
	}
	if *validationMode != "" {
		body["validationMode"] = *validationMode
	}
	if set["timeout-ms"] {
		// Sent as given: the server refuses a bad one (400 INVALID_TIMEOUT).
		body["timeoutMs"] = *timeoutMs
	}
	var res protocol.TriggerResult
	answer, err := o.client.post(ctx, "/api/pipelines/"+url.PathEscape(pos[0])+"/trigger", body, &res)
	if err != nil {
		return err
	}
	if !o.json {
		for _, line := range validationLines(res.ValidationWarnings) {
			fmt.Fprintln(stderr, "warning: input "+line)
		}
	}
	if !*wait {
		if o.json {
			return o.printJSON(answer)
		}
		_, err := fmt.Fprintln(stdout, res.PipelineRunID)
		return err
	}
	if !o.json {
		fmt.Fprintln(stdout, res.PipelineRunID)
	}
	run, final, err := o.waitRun(res.PipelineRunID, *poll)
	if err != nil {
		return err
	}
	if o.json {
		if err := o.printJSON(final); err != nil {
			return err
		}
	}
	return runOutcome(run)
}

// readInput reads -i: JSON text, or @file naming a file holding it; {} when -i was not given
// (set is false).
func readInput(s string, set bool) (json.RawMessage, error) {
	if !set {
		return json.RawMessage("{}"), nil
	}
	src, data := "-i", []byte(s)
	if name, ok := strings.CutPrefix(s, "@"); ok {
		if name == "" {
			return nil, errors.New("-i @file: the file name is missing")
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("-i: read the input: %w", err)
		}
		src, data = "-i "+s, b
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: the input is empty; give a JSON value such as {}", src)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: the input is not valid JSON: %v", src, err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, fmt.Errorf("%s: the input is not valid JSON: %v", src, err)
	}
	return buf.Bytes(), nil
}

// waitRun polls the pipeline run id every poll until it is no longer running, showing its
// progress (unless --json), and returns its final state, decoded and as the server sent it.
func (o *ops) waitRun(id string, poll time.Duration) (protocol.PipelineRun, json.RawMessage, error) {
	var view *waitView
	if !o.json {
		term := isTerminal(o.stdout)
		view = &waitView{w: o.stdout, terminal: term, color: term && o.getenv("NO_COLOR") == "" && o.getenv("TERM") != "dumb",
			seen: map[string]string{}}
	}
	failures := 0
	for {
		var run protocol.PipelineRun
		raw, err := o.client.get(o.ctx, "/api/runs/"+url.PathEscape(id), nodesOnly, &run)
		switch {
		case o.ctx.Err() != nil:
			return run, nil, fmt.Errorf("stopped waiting for run %s, which goes on: follow it with pipeweave status %s", id, id)
		case err != nil && apiclient.Transient(err) && failures < 20:
			// The orchestrator restarts or its database is away for a moment: keep asking.
			failures++
		case err != nil:
			return run, nil, err
		default:
			failures = 0
			if view != nil {
				view.update(run, time.Now())
			}
			if run.Status != protocol.PipelineRunning {
				if view != nil {
					view.finish(run, time.Now())
				}
				return run, raw, nil
			}
		}
		select {
		case <-o.ctx.Done():
		case <-time.After(poll):
		}
	}
}

// runOutcome is nil for a completed run, else an error that says how the run ended and names
// its failed tasks with their errors.
func runOutcome(run protocol.PipelineRun) error {
	if run.Status == protocol.PipelineCompleted {
		return nil
	}
	msg := fmt.Sprintf("run %s of pipeline %s ended %s", run.ID, run.PipelineID, run.Status)
	var failed []string
	for _, t := range orderTasks(run, false) {
		// A map node that completed with failed items (continue, partial-merge) names them too.
		if t.Status == protocol.StatusFailed || (mapOf(run, t.TaskID) != nil && deref(t.ErrorCode) == "MAP_ITEMS_FAILED") {
			failed = append(failed, fmt.Sprintf("%s (%s)", t.TaskID, errorText(t.ErrorCode, t.Error)))
		}
	}
	switch {
	case run.ErrorCode != "":
		// A run that ended for a reason of its own (PIPELINE_TIMEOUT) says it first.
		msg += ": " + errorText(&run.ErrorCode, run.Error)
		if len(failed) > 0 {
			msg += "; failed tasks: " + strings.Join(failed, ", ")
		}
	case len(failed) > 0:
		msg += "; failed tasks: " + strings.Join(failed, ", ")
	case deref(run.Error) != "":
		msg += ": " + *run.Error
	}
	return errors.New(apiclient.OneLine(msg))
}

// waitView shows a run's progress while trigger --wait follows it: on a terminal, a block of
// lines redrawn in place; otherwise one line per change of a task's state.
type waitView struct {
	w        io.Writer
	terminal bool
	color    bool
	// drawn is the number of lines the last redraw wrote (terminal).
	drawn int
	// seen holds each task run's last state line (plain).
	seen map[string]string
}

// update shows run's current state.
func (v *waitView) update(run protocol.PipelineRun, now time.Time) {
	if v.terminal {
		v.redraw(liveLines(run, now, v.color))
		return
	}
	for _, t := range orderTasks(run, false) {
		line := plainLine(t.TaskRun) + mapSuffix(run, t.TaskRun)
		if v.seen[t.ID] == line {
			continue
		}
		v.seen[t.ID] = line
		fmt.Fprintf(v.w, "%s %s\n", now.Format("15:04:05"), line)
	}
}

// finish shows how the run ended.
func (v *waitView) finish(run protocol.PipelineRun, now time.Time) {
	end := now
	if run.CompletedAt != nil {
		end = *run.CompletedAt
	}
	line := fmt.Sprintf("run %s %s in %s", run.ID, run.Status, duration(end.Sub(run.CreatedAt)))
	if v.terminal {
		fmt.Fprintln(v.w, paint(v.color, string(run.Status), line))
		return
	}
	fmt.Fprintf(v.w, "%s %s\n", now.Format("15:04:05"), line)
}

// redraw moves the cursor up over the lines drawn last time and writes lines in their place.
func (v *waitView) redraw(lines []string) {
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if len(lines) < v.drawn {
		b.WriteString("\x1b[J") // clear what is left below
	}
	v.drawn = len(lines)
	_, _ = io.WriteString(v.w, b.String())
}

// plainLine is a task run's state on one line: "extract-text running 40% reading page 4".
func plainLine(t protocol.TaskRun) string {
	parts := []string{t.TaskID, string(t.Status)}
	if t.Attempt > 1 {
		parts = append(parts, "attempt "+strconv.Itoa(t.Attempt))
	}
	if t.Status == protocol.StatusRunning {
		if p := progressText(t); p != "" {
			parts = append(parts, p)
		}
	}
	if e := errorText(t.ErrorCode, t.Error); e != "" && t.Status != protocol.StatusCompleted {
		parts = append(parts, e)
	}
	return apiclient.OneLine(strings.Join(parts, " "))
}

// liveLines is the terminal view of a run: a header and a line per task with its state, a
// progress bar and the worker's message.
func liveLines(run protocol.PipelineRun, now time.Time, color bool) []string {
	end := now
	if run.CompletedAt != nil {
		end = *run.CompletedAt
	}
	lines := []string{fmt.Sprintf("run %s  pipeline %s  %s  %s", run.ID, run.PipelineID,
		paint(color, string(run.Status), string(run.Status)), duration(end.Sub(run.CreatedAt).Truncate(time.Second)))}
	tasks := orderTasks(run, false)
	width := 4
	for _, t := range tasks {
		width = max(width, len(t.TaskID))
	}
	for _, t := range tasks {
		status := fmt.Sprintf("%-11s", t.Status)
		line := fmt.Sprintf("  %s %-*s  %s", paint(color, string(t.Status), symbol(t.Status)), width, t.TaskID, paint(color, string(t.Status), status))
		if t.Attempt > 1 {
			line += fmt.Sprintf("  attempt %d", t.Attempt)
		}
		if m := mapOf(run, t.TaskID); m != nil {
			line += "  map " + mapCounts(*m)
		}
		switch {
		case t.Status == protocol.StatusFailed:
			line += "  " + truncate(errorText(t.ErrorCode, t.Error), 70)
		case t.Status == protocol.StatusRunning || t.Progress != nil:
			pct := 0
			if t.Progress != nil {
				pct = *t.Progress
			}
			if t.Status == protocol.StatusCompleted {
				pct = 100
			}
			line += "  " + bar(pct, 20) + fmt.Sprintf(" %3d%%", pct)
			if t.ProgressMessage != "" && t.Status != protocol.StatusCompleted {
				line += "  " + truncate(t.ProgressMessage, 50)
			}
		}
		lines = append(lines, line)
	}
	return lines
}

// bar is a progress bar of width cells for pct percent.
func bar(pct, width int) string {
	pct = min(max(pct, 0), 100)
	full := pct * width / 100
	return "[" + strings.Repeat("#", full) + strings.Repeat(".", width-full) + "]"
}

// symbol marks a state in the live view.
func symbol(status protocol.TaskRunStatus) string {
	switch status {
	case protocol.StatusCompleted:
		return "✓"
	case protocol.StatusFailed:
		return "✗"
	case protocol.StatusRunning, protocol.StatusDispatching:
		return "▶"
	case protocol.StatusSkipped, protocol.StatusCancelled:
		return "-"
	default:
		return "·"
	}
}

// paint colours s for status, a task or pipeline run state, when color is set: green done,
// red failed, yellow in progress.
func paint(color bool, status, s string) string {
	if !color {
		return s
	}
	code := ""
	switch status {
	case string(protocol.StatusCompleted): // and protocol.PipelineCompleted
		code = "32"
	case string(protocol.StatusFailed), string(protocol.PipelinePartial):
		code = "31"
	case string(protocol.StatusRunning), string(protocol.StatusDispatching):
		code = "33"
	case string(protocol.StatusSkipped), string(protocol.StatusCancelled):
		code = "90"
	default:
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// validationLines lists input-schema violations one per line, ordered by task id:
// `task "t": title: Minimum length is 3 (too_small)`.
func validationLines(v protocol.ValidationErrors) []string {
	tasks := make([]string, 0, len(v))
	for t := range v {
		tasks = append(tasks, t)
	}
	sort.Strings(tasks)
	var lines []string
	for _, t := range tasks {
		for _, e := range v[t] {
			field := e.Field
			if field == "" {
				field = "(input)"
			}
			lines = append(lines, fmt.Sprintf("task %q: %s: %s (%s)", t, field, e.Message, e.Code))
		}
	}
	return lines
}
