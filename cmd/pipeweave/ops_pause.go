package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// pauseCommand runs pipeweave pause task|pipeline ID, or with resume true pipeweave resume
// task|pipeline ID.
func pauseCommand(ctx context.Context, args []string, resume bool, stdout, stderr io.Writer, getenv func(string) string) error {
	group, verb := "pause", "pause"
	if resume {
		group, verb = "resume", "resume"
	}
	if len(args) == 0 {
		return unknownSubcommand(group, args)
	}
	switch args[0] {
	case "task":
		o := newOps(ctx, group+" task", "TASK [--json]", stdout, stderr, getenv)
		pos, err := o.parse(args[1:], "TASK")
		if err != nil {
			return err
		}
		var p protocol.TaskPause
		raw, err := o.client.post(ctx, "/api/tasks/"+url.PathEscape(pos[0])+"/"+verb, nil, &p)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		if p.Paused {
			_, err = fmt.Fprintf(stdout, "task %s is paused (since %s): its runs wait until pipeweave resume task %s\n",
				p.TaskID, stamp(p.PausedAt, time.Now()), p.TaskID)
			return err
		}
		_, err = fmt.Fprintf(stdout, "task %s is not paused: its waiting runs are claimed in priority order\n", p.TaskID)
		return err
	case "pipeline":
		o := newOps(ctx, group+" pipeline", "PIPELINE [--json]", stdout, stderr, getenv)
		pos, err := o.parse(args[1:], "PIPELINE")
		if err != nil {
			return err
		}
		var p protocol.PipelinePause
		raw, err := o.client.post(ctx, "/api/pipelines/"+url.PathEscape(pos[0])+"/"+verb, nil, &p)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		if p.Paused {
			_, err = fmt.Fprintf(stdout, "pipeline %s is paused (since %s): its runs' nodes wait until pipeweave resume pipeline %s\n",
				p.PipelineID, stamp(p.PausedAt, time.Now()), p.PipelineID)
			return err
		}
		_, err = fmt.Fprintf(stdout, "pipeline %s is not paused: its waiting nodes are claimed in priority order\n", p.PipelineID)
		return err
	}
	return unknownSubcommand(group, args)
}
