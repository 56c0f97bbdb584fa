package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// webhooksCommand runs pipeweave webhooks list|get|put|delete|deliveries|resend (docs/webhooks.md).
func webhooksCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("webhooks", args)
	}
	rest := args[1:]
	switch args[0] {
	case "list":
		return webhooksListCommand(ctx, rest, stdout, stderr, getenv)
	case "get":
		return webhooksGetCommand(ctx, rest, stdout, stderr, getenv)
	case "put":
		return webhooksPutCommand(ctx, rest, stdout, stderr, getenv)
	case "delete":
		return webhooksDeleteCommand(ctx, rest, stdout, stderr, getenv)
	case "deliveries":
		return webhooksDeliveriesCommand(ctx, rest, stdout, stderr, getenv)
	case "resend":
		return webhooksResendCommand(ctx, rest, stdout, stderr, getenv)
	}
	return unknownSubcommand("webhooks", args)
}

func webhookPath(id string) string { return "/api/webhooks/" + url.PathEscape(id) }

func webhooksListCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks list", "[--json]", stdout, stderr, getenv)
	if _, err := o.parse(args); err != nil {
		return err
	}
	var list protocol.WebhookList
	raw, err := o.client.get(ctx, "/api/webhooks", nil, &list)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	if len(list.Items) == 0 {
		_, err := fmt.Fprintln(stdout, "no webhooks")
		return err
	}
	tw := newTable(stdout)
	row(tw, "ID", "URL", "EVENTS", "ENABLED", "SECRET")
	for _, w := range list.Items {
		row(tw, w.ID, truncate(w.URL, 60), strings.Join(w.Events, ","), strconv.FormatBool(w.Enabled), w.SecretPrefix+"…")
	}
	return tw.Flush()
}

func webhooksGetCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks get", "ID [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	var w protocol.Webhook
	raw, err := o.client.get(ctx, webhookPath(pos[0]), nil, &w)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	return printWebhook(stdout, w)
}

// printWebhook writes a webhook's fields, one a line.
func printWebhook(w io.Writer, h protocol.Webhook) error {
	tw := newTable(w)
	row(tw, "id:", h.ID)
	row(tw, "url:", h.URL)
	row(tw, "events:", strings.Join(h.Events, ", "))
	row(tw, "enabled:", strconv.FormatBool(h.Enabled))
	row(tw, "secret:", h.SecretPrefix+"… (not shown)")
	row(tw, "updated:", h.UpdatedAt.Format(time.RFC3339))
	return tw.Flush()
}

func webhooksPutCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks put", "ID --endpoint URL --events E1,E2 [--secret whsec_…] [--disabled] [--json]", stdout, stderr, getenv)
	target := o.fs.String("endpoint", "", "the URL that receives the deliveries (required; --url is the orchestrator's)")
	events := o.fs.String("events", "", "comma-separated event types (required): "+strings.Join(protocol.WebhookEvents, ", "))
	secret := o.fs.String("secret", "", "signing secret, whsec_ and base64 (default: generated for a new webhook, kept for an existing one)")
	disabled := o.fs.Bool("disabled", false, "create or keep the webhook disabled: no new deliveries")
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	if *target == "" {
		return fmt.Errorf("webhooks put: --endpoint is required")
	}
	if *events == "" {
		return fmt.Errorf("webhooks put: --events is required (%s)", strings.Join(protocol.WebhookEvents, ", "))
	}
	enabled := !*disabled
	body := protocol.WebhookPut{URL: *target, Enabled: &enabled}
	for _, e := range strings.Split(*events, ",") {
		if e = strings.TrimSpace(e); e != "" {
			body.Events = append(body.Events, e)
		}
	}
	if *secret != "" {
		body.Secret = secret
	}
	var w protocol.Webhook
	raw, err := o.client.do(ctx, http.MethodPut, webhookPath(pos[0]), body, &w)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	if w.Secret != "" {
		if _, err := fmt.Fprintf(stdout, "webhook %s created; its signing secret, shown this once:\n%s\n", w.ID, w.Secret); err != nil {
			return err
		}
		return nil
	}
	_, err = fmt.Fprintf(stdout, "webhook %s saved (%s, %s)\n", w.ID, strings.Join(w.Events, ","), map[bool]string{true: "enabled", false: "disabled"}[w.Enabled])
	return err
}

func webhooksDeleteCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks delete", "ID [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	raw, err := o.client.do(ctx, http.MethodDelete, webhookPath(pos[0]), nil, nil)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	_, err = fmt.Fprintf(stdout, "webhook %s deleted, with its delivery log\n", pos[0])
	return err
}

func webhooksDeliveriesCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks deliveries", "ID [--status pending|delivered|dead] [--limit N] [--json]", stdout, stderr, getenv)
	status := o.fs.String("status", "", "only deliveries in this state: pending, delivered or dead (default: all)")
	limit, pageSize := o.limitFlags(50)
	pos, err := o.parse(args, "ID")
	if err != nil {
		return err
	}
	if err := o.checkLimits(*limit, *pageSize); err != nil {
		return err
	}
	switch *status {
	case "", protocol.DeliveryPending, protocol.DeliveryDelivered, protocol.DeliveryDead:
	default:
		return fmt.Errorf("webhooks deliveries: --status must be pending, delivered or dead, got %q", *status)
	}
	items, err := o.client.list(ctx, webhookPath(pos[0])+"/deliveries", url.Values{"status": {*status}}, *limit, *pageSize)
	if err != nil {
		return err
	}
	if o.json {
		return o.printItems(items)
	}
	ds, err := decodeItems[protocol.WebhookDelivery](items)
	if err != nil {
		return fmt.Errorf("webhooks deliveries: %w", err)
	}
	if len(ds) == 0 {
		_, err := fmt.Fprintln(stdout, "no deliveries")
		return err
	}
	now := time.Now()
	tw := newTable(stdout)
	row(tw, "ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT", "CREATED", "ERROR")
	for _, d := range ds {
		last := ""
		if d.LastStatusCode != nil {
			last = strconv.Itoa(*d.LastStatusCode)
		}
		next := ""
		if d.NextAttemptAt != nil {
			next = d.NextAttemptAt.Format(time.RFC3339)
		}
		row(tw, d.ID, d.Event, d.Status, strconv.Itoa(d.Attempts), last, next, ago(d.CreatedAt, now), truncate(d.LastError, 60))
	}
	return tw.Flush()
}

func webhooksResendCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := newOps(ctx, "webhooks resend", "ID DELIVERY [--json]", stdout, stderr, getenv)
	pos, err := o.parse(args, "ID", "DELIVERY")
	if err != nil {
		return err
	}
	var d protocol.WebhookDelivery
	raw, err := o.client.post(ctx, webhookPath(pos[0])+"/deliveries/"+url.PathEscape(pos[1])+"/resend", nil, &d)
	if err != nil {
		return err
	}
	if o.json {
		return o.printJSON(raw)
	}
	_, err = fmt.Fprintf(stdout, "delivery %s of webhook %s is pending again: it is sent with the same webhook-id\n", d.ID, pos[0])
	return err
}
