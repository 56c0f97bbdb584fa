package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// schedulesCommand runs pipeweave schedules list|get|put|delete.
func schedulesCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("schedules", args)
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		o := newOps(ctx, "schedules list", "[--json]", stdout, stderr, getenv)
		if _, err := o.parse(rest); err != nil {
			return err
		}
		// Every page, in id order.
		all := []protocol.Schedule{} // none is [], not null
		for cursor := ""; ; {
			var l protocol.ScheduleList
			if _, err := o.client.get(ctx, "/api/schedules", url.Values{"cursor": {cursor}}, &l); err != nil {
				return err
			}
			all = append(all, l.Schedules...)
			if cursor = l.NextCursor; cursor == "" {
				break
			}
		}
		if o.json {
			raw, err := json.Marshal(protocol.ScheduleList{Schedules: all})
			if err != nil {
				return err
			}
			return o.printJSON(raw)
		}
		return printSchedules(stdout, all, time.Now())
	case "get":
		o := newOps(ctx, "schedules get", "SCHEDULE [--json]", stdout, stderr, getenv)
		pos, err := o.parse(rest, "SCHEDULE")
		if err != nil {
			return err
		}
		var s protocol.Schedule
		raw, err := o.client.get(ctx, "/api/schedules/"+url.PathEscape(pos[0]), nil, &s)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		return printSchedule(stdout, s, time.Now())
	case "put":
		return schedulesPutCommand(ctx, rest, stdout, stderr, getenv)
	case "delete":
		o := newOps(ctx, "schedules delete", "SCHEDULE [--json]", stdout, stderr, getenv)
		pos, err := o.parse(rest, "SCHEDULE")
		if err != nil {
			return err
		}
		raw, err := o.client.do(ctx, http.MethodDelete, "/api/schedules/"+url.PathEscape(pos[0]), nil, nil)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		_, err = fmt.Fprintf(stdout, "schedule %s deleted; the runs it made stay\n", pos[0])
		return err
	}
	return unknownSubcommand("schedules", args)
}

func schedulesPutCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "schedules put", "SCHEDULE --cron EXPR --task TASK|--pipeline PIPELINE [flags]", stdout, stderr, getenv)
	cron := o.fs.String("cron", "", "cron expression: 5 fields, 6 with seconds first, or @hourly, @every 90s…")
	tz := o.fs.String("timezone", "", "IANA time zone of the expression (default UTC)")
	taskID := o.fs.String("task", "", "the task a slot enqueues")
	pipelineID := o.fs.String("pipeline", "", "the pipeline a slot triggers")
	input := o.fs.String("input", "", "the input of every run, as JSON (default {})")
	overlap := o.fs.String("overlap", "", "while the previous run is active: allow (default), skip or cancel-previous")
	catchUp := o.fs.String("catch-up", "", "after downtime: none (default), latest or all")
	limit := o.fs.Int("catch-up-limit", 0, "with --catch-up all: most missed slots fired (default 100)")
	disabled := o.fs.Bool("disabled", false, "store it disabled: no slot fires until it is put enabled")
	pos, err := o.parse(args, "SCHEDULE")
	if err != nil {
		return err
	}
	req := protocol.ScheduleRequest{Cron: *cron, Timezone: *tz, TaskID: *taskID, PipelineID: *pipelineID, Overlap: *overlap, CatchUp: *catchUp}
	if *input != "" {
		if !json.Valid([]byte(*input)) {
			return fmt.Errorf("schedules put: --input is not valid JSON")
		}
		req.Input = json.RawMessage(*input)
	}
	if *limit != 0 {
		req.CatchUpLimit = limit
	}
	if *disabled {
		req.Enabled = new(bool)
	}
	var s protocol.Schedule
	raw, err := o.client.do(ctx, http.MethodPut, "/api/schedules/"+url.PathEscape(pos[0]), req, &s)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	return printSchedule(stdout, s, time.Now())
}

// scheduleTarget is "task T" or "pipeline P".
func scheduleTarget(s protocol.Schedule) string {
	if s.TaskID != "" {
		return "task " + s.TaskID
	}
	return "pipeline " + s.PipelineID
}

func printSchedules(w io.Writer, list []protocol.Schedule, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no schedules")
		return err
	}
	t := newTable(w)
	row(t, "SCHEDULE", "FIRES", "CRON", "TIMEZONE", "NEXT", "LAST RUN", "MISSED")
	for _, s := range list {
		next := "disabled"
		if s.NextFireAt != nil {
			next = stamp(s.NextFireAt, now)
		}
		row(t, s.ID, scheduleTarget(s), s.Cron, s.Timezone, next, s.LastRunID, fmt.Sprint(s.MissedSlots))
	}
	return t.Flush()
}

func printSchedule(w io.Writer, s protocol.Schedule, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule %s: %s on %q (%s)\n", s.ID, scheduleTarget(s), s.Cron, s.Timezone)
	fmt.Fprintf(&b, "  overlap %s, catch-up %s", s.Overlap, s.CatchUp)
	if s.CatchUp == "all" {
		fmt.Fprintf(&b, " (up to %d)", s.CatchUpLimit)
	}
	fmt.Fprintf(&b, ", input %s\n", s.Input)
	if !s.Enabled {
		b.WriteString("  disabled: no slot fires\n")
	}
	for i, at := range s.NextFireTimes {
		label := "  then"
		if i == 0 {
			label = "  next"
		}
		fmt.Fprintf(&b, "%s %s\n", label, stamp(&at, now))
	}
	if s.LastRunID != "" {
		fmt.Fprintf(&b, "  last run %s for the slot %s\n", s.LastRunID, stamp(s.LastSlotAt, now))
	}
	if s.MissedSlots > 0 {
		fmt.Fprintf(&b, "  missed %d slot(s), the latest %s\n", s.MissedSlots, stamp(s.LastMissedAt, now))
	}
	for _, f := range s.RecentSlots {
		what := f.RunID
		if f.Error != "" {
			what = f.Error
		}
		fmt.Fprintf(&b, "  slot %s %s %s\n", f.SlotAt.Local().Format(time.RFC3339), f.Outcome, what)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
