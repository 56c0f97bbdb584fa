package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// pausable is what pipeweave pause and resume act on: its API path, and what its work is
// called while it waits and once it is released.
type pausable struct {
	path    string // "/api/tasks/"
	work    string // "runs"
	waiting string // "runs"
}

var pausables = map[string]pausable{
	"task":     {path: "/api/tasks/", work: "runs", waiting: "runs"},
	"pipeline": {path: "/api/pipelines/", work: "runs' nodes", waiting: "nodes"},
}

// pauseCommand runs pipeweave pause task|pipeline ID, or with resume true pipeweave resume
// task|pipeline ID.
func pauseCommand(ctx context.Context, args []string, resume bool, stdout, stderr io.Writer, getenv func(string) string) error {
	group := "pause"
	if resume {
		group = "resume"
	}
	if len(args) == 0 {
		return unknownSubcommand(group, args)
	}
	kind := args[0]
	switch args[0] {
	case "task", "pipeline":
	default:
		return unknownSubcommand(group, args)
	}
	what := pausables[kind]
	arg := strings.ToUpper(kind)
	o := newOps(ctx, group+" "+kind, arg+" [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args[1:], arg)
	if err != nil {
		return err
	}
	// The answer is {taskId|pipelineId, paused, pausedAt}.
	var p struct {
		Paused   bool       `json:"paused"`
		PausedAt *time.Time `json:"pausedAt"`
	}
	raw, err := o.client.post(ctx, what.path+url.PathEscape(pos[0])+"/"+group, nil, &p)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	if p.Paused {
		_, err = fmt.Fprintf(stdout, "%s %s is paused (since %s): its %s wait until pipeweave resume %s %s\n",
			kind, pos[0], stamp(p.PausedAt, time.Now()), what.work, kind, pos[0])
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s %s is not paused: its waiting %s are claimed in priority order\n", kind, pos[0], what.waiting)
	return err
}
