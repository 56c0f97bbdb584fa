package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

func maintenanceCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("maintenance", args)
	}
	rest := args[1:]
	switch args[0] {
	case "status":
		o := newOps(ctx, "maintenance status", "[--json]", stdout, stderr, getenv)
		if _, err := o.parse(rest); err != nil {
			return err
		}
		var st protocol.MaintenanceStatus
		raw, err := o.client.get(ctx, "/api/maintenance", nil, &st)
		if err != nil {
			return err
		}
		return o.printMaintenance(raw, st)
	case "enter":
		return maintenanceEnterCommand(ctx, rest, stdout, stderr, getenv)
	case "exit":
		o := newOps(ctx, "maintenance exit", "[--json]", stdout, stderr, getenv)
		if _, err := o.parse(rest); err != nil {
			return err
		}
		var st protocol.MaintenanceStatus
		raw, err := o.client.post(ctx, "/api/maintenance/exit", nil, &st)
		if err != nil {
			return err
		}
		return o.printMaintenance(raw, st)
	}
	return unknownSubcommand("maintenance", args)
}

func maintenanceEnterCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "maintenance enter", "[--wait] [--poll D] [--json]", stdout, stderr, getenv)
	wait := o.fs.Bool("wait", false, "poll until the mode is maintenance (nothing in flight), printing progress")
	poll := o.fs.Duration("poll", time.Second, "with --wait: how often to ask for the status")
	if _, err := o.parse(args); err != nil {
		return err
	}
	if *poll <= 0 {
		return fmt.Errorf("maintenance enter: --poll must be positive, got %s", *poll)
	}
	var st protocol.MaintenanceStatus
	raw, err := o.client.post(ctx, "/api/maintenance/enter", nil, &st)
	if err != nil {
		return err
	}
	if !*wait || st.Mode == protocol.MaintenanceOn {
		return o.printMaintenance(raw, st)
	}
	if !o.json {
		fmt.Fprintf(stdout, "%s: waiting for %d %s in flight to finish (%d pending wait)\n", st.Mode, st.RunningTasks,
			plural(int(st.RunningTasks), "run", "runs"), st.PendingTasks)
	}
	last := st.RunningTasks
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting; the orchestrator stays %s (see pipeweave maintenance status)", st.Mode)
		case <-time.After(*poll):
		}
		st = protocol.MaintenanceStatus{}
		raw, err = o.client.get(ctx, "/api/maintenance", nil, &st)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("stopped waiting; see pipeweave maintenance status")
		case err != nil && apiclient.Transient(err) && failures < 20:
			failures++
			continue
		case err != nil:
			return err
		}
		failures = 0
		switch st.Mode {
		case protocol.MaintenanceOn:
			if o.json {
				return o.printJSON(raw)
			}
			fmt.Fprintln(stdout, "maintenance: nothing in flight; no task is claimed until pipeweave maintenance exit")
			return nil
		case protocol.MaintenanceOff:
			return fmt.Errorf("maintenance enter: the orchestrator is running again: someone exited maintenance while this waited")
		}
		if !o.json && st.RunningTasks != last {
			fmt.Fprintf(stdout, "%s: %d %s in flight (%d pending wait)\n", st.Mode, st.RunningTasks,
				plural(int(st.RunningTasks), "run", "runs"), st.PendingTasks)
			last = st.RunningTasks
		}
	}
}

// printMaintenance prints a maintenance status: the server's JSON, or a few lines.
func (o *ops) printMaintenance(raw json.RawMessage, st protocol.MaintenanceStatus) error {
	if o.json {
		return o.printJSON(raw)
	}
	tw := newTable(o.stdout)
	fmt.Fprintf(tw, "mode\t%s\n", st.Mode)
	fmt.Fprintf(tw, "since\t%s\n", stamp(&st.ModeChangedAt, time.Now()))
	fmt.Fprintf(tw, "in flight\t%d\n", st.RunningTasks)
	fmt.Fprintf(tw, "pending\t%d\n", st.PendingTasks)
	fmt.Fprintf(tw, "message\t%s\n", apiclient.OneLine(st.Message))
	return tw.Flush()
}
