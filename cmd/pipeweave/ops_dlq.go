package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("dlq", args)
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		return dlqListCommand(ctx, rest, stdout, stderr, getenv)
	case "show":
		return dlqShowCommand(ctx, rest, stdout, stderr, getenv)
	case "retry":
		return dlqRetryCommand(ctx, rest, stdout, stderr, getenv)
	case "retry-all":
		return dlqRetryAllCommand(ctx, rest, stdout, stderr, getenv)
	case "purge":
		return dlqPurgeCommand(ctx, rest, stdout, stderr, getenv)
	}
	return unknownSubcommand("dlq", args)
}

func dlqListCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dlq list", "[--pipeline P] [--task T] [--state open|retried] [--limit N] [--json]", stdout, stderr, getenv)
	pipeline := o.fs.String("pipeline", "", "only entries of runs of this pipeline")
	task := o.fs.String("task", "", "only entries of this task")
	state := o.fs.String("state", "", "open (not retried yet) or retried (default: both)")
	limit, pageSize := o.limitFlags(50)
	if _, err := o.parse(args); err != nil {
		return err
	}
	if err := o.checkLimits(*limit, *pageSize); err != nil {
		return err
	}
	if *state != "" && *state != "open" && *state != "retried" {
		return fmt.Errorf("dlq list: --state must be open or retried, got %q", *state)
	}
	items, err := o.client.list(ctx, "/api/dlq", url.Values{"pipelineId": {*pipeline}, "taskId": {*task}, "state": {*state}}, *limit, *pageSize)
	if err != nil {
		return err
	}
	if o.json {
		return o.printItems(items)
	}
	entries, err := decodeItems[protocol.DLQEntry](items)
	if err != nil {
		return fmt.Errorf("dlq list: %w", err)
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "no DLQ entries")
		return nil
	}
	now := time.Now()
	tw := newTable(stdout)
	row(tw, "ID", "TASK", "PIPELINE", "TASK RUN", "ATTEMPTS", "FAILED", "STATE", "ERROR")
	for _, e := range entries {
		row(tw, e.ID, e.TaskID, e.PipelineID, e.TaskRunID, strconv.Itoa(e.Attempts), ago(e.FailedAt, now), dlqState(e),
			truncate(errorText(&e.ErrorCode, &e.Error), 80))
	}
	return tw.Flush()
}

// dlqState is "open" or "retried as trun_…".
func dlqState(e protocol.DLQEntry) string {
	if e.RetriedAt == nil {
		return "open"
	}
	if e.RetryRunID != "" {
		return "retried as " + e.RetryRunID
	}
	return "retried"
}

func dlqShowCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dlq show", "ID [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	var e protocol.DLQEntry
	raw, err := o.client.get(ctx, "/api/dlq/"+url.PathEscape(pos[0]), nil, &e)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	now := time.Now()
	tw := newTable(stdout)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, apiclient.OneLine(v))
		}
	}
	kv("dlq entry", e.ID)
	kv("task", e.TaskID)
	kv("task run", e.TaskRunID)
	kv("pipeline", e.PipelineID)
	kv("pipeline run", e.PipelineRunID)
	kv("code", fmt.Sprintf("v%d (%s)", e.CodeVersion, e.CodeHash))
	kv("input", e.InputPath)
	kv("failed", stamp(&e.FailedAt, now))
	kv("state", dlqState(e))
	kv("retried", stamp(e.RetriedAt, now))
	kv("error", errorText(&e.ErrorCode, &e.Error))
	if err := tw.Flush(); err != nil {
		return err
	}
	return printAttempts(stdout, "attempts", e.AttemptHistory, now)
}

func dlqRetryCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dlq retry", "ID [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	var res protocol.DLQRetryResult
	raw, err := o.client.post(ctx, "/api/dlq/"+url.PathEscape(pos[0])+"/retry", nil, &res)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	_, err = fmt.Fprintf(stdout, "retried %s: task %s queued as run %s at code v%d\n", pos[0], res.TaskID, res.NewRunID, res.CodeVersion)
	return err
}

func dlqRetryAllCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dlq retry-all", "[--pipeline P] [--task T] [--json]", stdout, stderr, getenv)
	pipeline := o.fs.String("pipeline", "", "only entries of runs of this pipeline")
	task := o.fs.String("task", "", "only entries of this task")
	if _, err := o.parse(args); err != nil {
		return err
	}
	total := protocol.RetryAllResult{Runs: []protocol.DLQRetried{}, Failed: []protocol.DLQRetryFailed{}}
	failed := map[string]bool{}
	for {
		var res protocol.RetryAllResult
		if _, err := o.client.post(ctx, "/api/dlq/retry-all", map[string]string{"taskId": *task, "pipelineId": *pipeline}, &res); err != nil {
			if total.Retried > 0 {
				return fmt.Errorf("%w (%d entries were retried before)", err, total.Retried)
			}
			return err
		}
		total.Retried += res.Retried
		total.Runs = append(total.Runs, res.Runs...)
		for _, f := range res.Failed {
			// An entry that cannot be retried stays open: a later call reports it again.
			if !failed[f.DLQID] {
				failed[f.DLQID] = true
				total.Failed = append(total.Failed, f)
			}
		}
		total.More = res.More
		// Repeat while entries are left, as long as a call makes progress.
		if !res.More || res.Retried == 0 {
			break
		}
	}
	if o.json {
		raw, err := json.Marshal(total)
		if err != nil {
			return fmt.Errorf("dlq retry-all: %w", err)
		}
		if err := o.printJSON(raw); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "retried %d DLQ %s\n", total.Retried, plural(total.Retried, "entry", "entries"))
		for _, r := range total.Runs {
			fmt.Fprintf(stdout, "  %s: task %s queued as run %s\n", r.DLQID, r.TaskID, r.RunID)
		}
		for _, f := range total.Failed {
			fmt.Fprintf(stdout, "could not retry %s: %s (%s)\n", f.DLQID, apiclient.OneLine(f.Error), f.Code)
		}
		if total.More {
			fmt.Fprintln(stdout, "more entries are left: run dlq retry-all again")
		}
	}
	if len(total.Failed) > 0 {
		return fmt.Errorf("dlq retry-all: %d %s could not be retried", len(total.Failed), plural(len(total.Failed), "entry", "entries"))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func dlqPurgeCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "dlq purge", "--older-than AGE [--json]   (AGE: 7d, 36h, 90m…)", stdout, stderr, getenv)
	olderThan := o.fs.String("older-than", "", "delete the entries that failed longer ago than this age: 7d, 36h, 90m… (required)")
	if _, err := o.parse(args); err != nil {
		return err
	}
	if strings.TrimSpace(*olderThan) == "" {
		return fmt.Errorf("dlq purge: --older-than is required, such as --older-than 7d")
	}
	var res struct {
		Deleted   int64  `json:"deleted"`
		OlderThan string `json:"olderThan"`
	}
	raw, err := o.client.post(ctx, "/api/dlq/purge", map[string]string{"olderThan": *olderThan}, &res)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	_, err = fmt.Fprintf(stdout, "deleted %d DLQ %s older than %s\n", res.Deleted, plural(int(res.Deleted), "entry", "entries"), res.OlderThan)
	return err
}
