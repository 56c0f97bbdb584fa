package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// rateLimitsCommand runs pipeweave rate-limits list|put|delete: the named rate limits that
// tasks share by registering rateLimitKey.
func rateLimitsCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("rate-limits", args)
	}
	switch args[0] {
	case "list":
		o := newOps(ctx, "rate-limits list", "[--json]", stdout, stderr, getenv)
		if _, err := o.parse(args[1:]); err != nil {
			return err
		}
		var list protocol.RateLimitList
		raw, err := o.client.get(ctx, "/api/rate-limits", nil, &list)
		if err != nil {
			return err
		}
		if o.json {
			return o.printJSON(raw)
		}
		if len(list.RateLimits) == 0 {
			_, err = fmt.Fprintln(stdout, "no named rate limits (create one: pipeweave rate-limits put KEY LIMIT PERIOD)")
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tLIMIT\tPERIOD\tUPDATED")
		for _, r := range list.RateLimits {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Key, r.Limit, time.Duration(r.PeriodMs)*time.Millisecond, r.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "put":
		o := newOps(ctx, "rate-limits put", "KEY LIMIT PERIOD [--json]   (PERIOD: 1s, 500ms, 1m…, at most 24h)", stdout, stderr, getenv)
		pos, err := o.parse(args[1:], "KEY", "LIMIT", "PERIOD")
		if err != nil {
			return err
		}
		limit, err := strconv.Atoi(pos[1])
		if err != nil {
			return fmt.Errorf("rate-limits put: LIMIT %q is not a whole number", pos[1])
		}
		period, err := time.ParseDuration(pos[2])
		if err != nil {
			return fmt.Errorf("rate-limits put: PERIOD %q is not a duration such as 1s, 500ms or 1m", pos[2])
		}
		var r protocol.NamedRateLimit
		raw, err := o.client.Do(ctx, "PUT", "/api/rate-limits/"+url.PathEscape(pos[0]), nil,
			map[string]any{"limit": limit, "periodMs": period.Milliseconds()}, &r)
		if err != nil {
			return o.client.explain(err)
		}
		if o.json {
			return o.printJSON(raw)
		}
		_, err = fmt.Fprintf(stdout, "rate limit %s: at most %d runs per %s (tasks share it with rateLimitKey %q)\n",
			r.Key, r.Limit, time.Duration(r.PeriodMs)*time.Millisecond, r.Key)
		return err
	case "delete":
		o := newOps(ctx, "rate-limits delete", "KEY [--json]", stdout, stderr, getenv)
		pos, err := o.parse(args[1:], "KEY")
		if err != nil {
			return err
		}
		raw, err := o.client.Do(ctx, "DELETE", "/api/rate-limits/"+url.PathEscape(pos[0]), nil, nil, nil)
		if err != nil {
			return o.client.explain(err)
		}
		if o.json {
			return o.printJSON(raw)
		}
		_, err = fmt.Fprintf(stdout, "rate limit %s deleted\n", pos[0])
		return err
	}
	return unknownSubcommand("rate-limits", args)
}
