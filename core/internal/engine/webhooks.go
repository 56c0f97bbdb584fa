package engine

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/netguard"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Webhook limits.
const (
	// MaxWebhooks is the most webhooks one database holds.
	MaxWebhooks = 100
	// MaxWebhookURLBytes bounds a webhook's url.
	MaxWebhookURLBytes = 2048
	// defaultWebhookTimeout bounds one delivery request unless Config.WebhookTimeout says.
	defaultWebhookTimeout = 10 * time.Second
	// webhookLeaseMargin is how much longer than a request may take (Config.WebhookTimeout) a
	// claimed delivery is not due again, so that no other instance sends it meanwhile; after an
	// instance died mid-send, it is due again then.
	webhookLeaseMargin = 20 * time.Second
	// webhookChunk is the most deliveries a DeliverWebhooks call without a max sends;
	// webhookParallel how many one claim takes and sends at once.
	webhookChunk    = 50
	webhookParallel = 8
	// webhookSecretPrefix starts every signing secret (Standard Webhooks).
	webhookSecretPrefix = "whsec_"
	// webhooksLock is the advisory lock a webhook's creation takes, so that concurrent
	// creations cannot pass MaxWebhooks together.
	webhooksLock int64 = 0x7077776562686f6b
)

// WebhookBackoff are the waits after each failed attempt, before a jitter of up to +10%: the
// first seven steps of the Standard Webhooks specification's example schedule (immediately,
// then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h), then 10 h, for 8 attempts over about 27.6 hours (the
// example goes on to 14, 20 and 24 h); a delivery whose 8th attempt fails is dead.
var WebhookBackoff = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// webhookRetryDelay is the wait after failed attempt n (from 1): WebhookBackoff's step and a
// random jitter of up to 10% of it, so that the retries of a burst of failures spread out.
func webhookRetryDelay(n int) time.Duration {
	d := WebhookBackoff[n-1]
	return d + time.Duration(mathrand.Int64N(int64(d)/10+1))
}

// webhookClock is the time the delivery statements take, set by tests (SetWebhookClock).
type webhookClock struct {
	mu  sync.Mutex
	now func() time.Time
}

// SetWebhookClock makes the webhook deliveries' statements use now instead of the engine's
// clock (Config.Now, else the database's): tests move time past backoffs and leases with it.
func (e *Engine) SetWebhookClock(now func() time.Time) {
	e.whClock.mu.Lock()
	e.whClock.now = now
	e.whClock.mu.Unlock()
}

// webhookNow is the time for the delivery statements (nil: the database clock) and the
// webhook-timestamp of an attempt.
func (e *Engine) webhookNow() (*time.Time, time.Time) {
	e.whClock.mu.Lock()
	now := e.whClock.now
	e.whClock.mu.Unlock()
	if now != nil {
		t := now()
		return &t, t
	}
	if t := e.now(); t != nil {
		return t, *t
	}
	return nil, time.Now()
}

// PutWebhook creates or replaces webhook id. created says it is new; the answer carries the
// secret only when this call generated it.
func (e *Engine) PutWebhook(ctx context.Context, id string, req protocol.WebhookPut) (protocol.Webhook, bool, error) {
	if !idPattern.MatchString(id) {
		return protocol.Webhook{}, false, invalid("INVALID_WEBHOOK_ID", "webhook id %q must be 1-128 letters, digits, '.', '_' or '-'", id)
	}
	if err := e.checkWebhookURL(ctx, req.URL); err != nil {
		return protocol.Webhook{}, false, err
	}
	events, err := checkEvents(req.Events)
	if err != nil {
		return protocol.Webhook{}, false, err
	}
	if req.Secret != nil {
		if err := checkSecret(*req.Secret); err != nil {
			return protocol.Webhook{}, false, err
		}
	}
	enabled := req.Enabled == nil || *req.Enabled
	generated, err := NewWebhookSecret()
	if err != nil {
		return protocol.Webhook{}, false, err
	}
	var r dbsqlc.WebhookUpsertRow
	// The webhooks lock makes the count and the insert one step across instances.
	err = e.db.InTx(ctx, func(tx dbtx) error {
		if err := queries.LockClaims(ctx, tx, webhooksLock); err != nil {
			return fmt.Errorf("lock the webhooks: %w", err)
		}
		if _, err := queries.WebhookGet(ctx, tx, id); errors.Is(err, database.ErrNotFound) {
			n, err := queries.WebhookCount(ctx, tx)
			if err != nil {
				return fmt.Errorf("count webhooks: %w", err)
			}
			if n >= MaxWebhooks {
				return conflict("TOO_MANY_WEBHOOKS", "there are %d webhooks already, the most one database holds", n)
			}
		} else if err != nil {
			return fmt.Errorf("read webhook %s: %w", id, err)
		}
		r, err = queries.WebhookUpsert(ctx, tx, dbsqlc.WebhookUpsertParams{ID: id, Url: req.URL, Events: events,
			Secret: req.Secret, NewSecret: generated, Enabled: enabled})
		if err != nil {
			return fmt.Errorf("save webhook %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return protocol.Webhook{}, false, err
	}
	w := webhookOf(r.ID, r.Url, r.Events, r.Secret, r.Enabled, r.CreatedAt, r.UpdatedAt)
	if r.Created && req.Secret == nil {
		w.Secret = r.Secret
	}
	return w, r.Created, nil
}

// GetWebhook returns webhook id, without its secret.
func (e *Engine) GetWebhook(ctx context.Context, id string) (protocol.Webhook, error) {
	r, err := queries.WebhookGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return protocol.Webhook{}, notFound("WEBHOOK_NOT_FOUND", "webhook %q not found", id)
	}
	if err != nil {
		return protocol.Webhook{}, fmt.Errorf("read webhook %s: %w", id, err)
	}
	return webhookOf(r.ID, r.Url, r.Events, r.Secret, r.Enabled, r.CreatedAt, r.UpdatedAt), nil
}

// ListWebhooks lists the webhooks (at most MaxWebhooks) by id, without their secrets.
func (e *Engine) ListWebhooks(ctx context.Context) (protocol.WebhookList, error) {
	rows, err := queries.WebhookList(ctx, e.db, MaxWebhooks)
	if err != nil {
		return protocol.WebhookList{}, fmt.Errorf("list webhooks: %w", err)
	}
	out := protocol.WebhookList{Items: make([]protocol.Webhook, len(rows))}
	for i, r := range rows {
		out.Items[i] = webhookOf(r.ID, r.Url, r.Events, r.Secret, r.Enabled, r.CreatedAt, r.UpdatedAt)
	}
	return out, nil
}

// DeleteWebhook deletes webhook id and its deliveries (pending ones are not sent).
func (e *Engine) DeleteWebhook(ctx context.Context, id string) error {
	n, err := queries.WebhookDelete(ctx, e.db, id)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if n == 0 {
		return notFound("WEBHOOK_NOT_FOUND", "webhook %q not found", id)
	}
	return nil
}

// WebhookDeliveryFilter selects deliveries of a webhook's log: Status "" (any), pending,
// delivered or dead; Cursor the nextCursor of the previous page.
type WebhookDeliveryFilter struct {
	Status, Cursor string
	Limit          int
}

// WebhookDeliveries lists the deliveries of webhook id, newest first.
func (e *Engine) WebhookDeliveries(ctx context.Context, id string, f WebhookDeliveryFilter) (protocol.WebhookDeliveryPage, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return protocol.WebhookDeliveryPage{}, err
	}
	switch f.Status {
	case "", protocol.DeliveryPending, protocol.DeliveryDelivered, protocol.DeliveryDead:
	default:
		return protocol.WebhookDeliveryPage{}, invalid("INVALID_STATUS", "status must be pending, delivered or dead, got %q", f.Status)
	}
	if err := checkCursor(f.Cursor); err != nil {
		return protocol.WebhookDeliveryPage{}, err
	}
	if _, err := e.GetWebhook(ctx, id); err != nil {
		return protocol.WebhookDeliveryPage{}, err
	}
	rows, err := queries.WebhookDeliveries(ctx, e.db, dbsqlc.WebhookDeliveriesParams{WebhookID: id, Status: f.Status,
		Cursor: f.Cursor, Max: limit + 1})
	if err != nil {
		return protocol.WebhookDeliveryPage{}, fmt.Errorf("list the deliveries of webhook %s: %w", id, err)
	}
	items := make([]protocol.WebhookDelivery, len(rows))
	for i, r := range rows {
		items[i] = deliveryOf(dbsqlc.WebhookDeliveryGetRow(r))
	}
	page := paginate(items, limit, func(d protocol.WebhookDelivery) string { return d.ID })
	return protocol.WebhookDeliveryPage{Items: page.Items, NextCursor: page.NextCursor}, nil
}

// ResendWebhookDelivery makes delivered or dead delivery deliveryID of webhook id pending and
// due now, with its attempts counted afresh and its id (the webhook-id) kept. A pending one is
// a conflict.
func (e *Engine) ResendWebhookDelivery(ctx context.Context, id, deliveryID string) (protocol.WebhookDelivery, error) {
	now, _ := e.webhookNow()
	r, err := queries.WebhookDeliveryResend(ctx, e.db, dbsqlc.WebhookDeliveryResendParams{ID: deliveryID, WebhookID: id, Now: now})
	if err == nil {
		return deliveryOf(dbsqlc.WebhookDeliveryGetRow(r)), nil
	}
	if !errors.Is(err, database.ErrNotFound) {
		return protocol.WebhookDelivery{}, fmt.Errorf("resend delivery %s: %w", deliveryID, err)
	}
	cur, err := queries.WebhookDeliveryGet(ctx, e.db, dbsqlc.WebhookDeliveryGetParams{ID: deliveryID, WebhookID: id})
	switch {
	case errors.Is(err, database.ErrNotFound):
		if _, err := e.GetWebhook(ctx, id); err != nil {
			return protocol.WebhookDelivery{}, err
		}
		return protocol.WebhookDelivery{}, notFound("DELIVERY_NOT_FOUND", "webhook %q has no delivery %q", id, deliveryID)
	case err != nil:
		return protocol.WebhookDelivery{}, fmt.Errorf("read delivery %s: %w", deliveryID, err)
	}
	return protocol.WebhookDelivery{}, &Error{Kind: ErrConflict, Code: "DELIVERY_PENDING",
		Msg:     fmt.Sprintf("delivery %q is pending (attempt %d); it is sent again by itself", deliveryID, cur.Attempts),
		Details: map[string]string{"status": cur.Status}}
}

// EmitWebhookEvent queues event, with data as the payload's data, for every enabled webhook
// that wants it, on x (a transaction, so that the event commits with the change it reports),
// and returns how many deliveries it queued. It runs the SQL function webhook_emit, which
// statements may also call directly.
func EmitWebhookEvent(ctx context.Context, x dbtx, event string, data any) (int, error) {
	if !slices.Contains(protocol.WebhookEvents, event) {
		return 0, fmt.Errorf("emit webhook event: unknown event %q", event)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, fmt.Errorf("emit webhook event %s: %w", event, err)
	}
	n, err := queries.WebhookEmit(ctx, x, dbsqlc.WebhookEmitParams{Event: event, Data: raw})
	if err != nil {
		return 0, fmt.Errorf("emit webhook event %s: %w", event, err)
	}
	return n, nil
}

// WebhookSummary counts what one DeliverWebhooks did.
type WebhookSummary struct {
	// Delivered got a 2xx answer; Failed will be retried; Dead were given up.
	Delivered, Failed, Dead int
}

// DeliverWebhooks sends due deliveries, at most max (0: one claim's worth), until none is due
// or max were sent. Without a budget (0) it claims up to 50 at a time and sends them 8 at a
// time. With one, it claims 8 at a time and starts another claim only while a whole request
// time (Config.WebhookTimeout) fits in what is left of the budget, so that it ends within the
// budget; the first claim always runs, so a budget shorter than the request time overruns by
// at most that time.
func (e *Engine) DeliverWebhooks(ctx context.Context, max int, budget time.Duration) (WebhookSummary, error) {
	start := time.Now()
	if max <= 0 {
		max = webhookChunk
	}
	// One claim takes no more than are sent at once: the lease of a claimed delivery lasts one
	// request's time (and a margin), so a delivery claimed to wait for a later wave could be
	// claimed again by another instance and sent twice.
	per := webhookParallel
	var s WebhookSummary
	for sent := 0; sent < max; {
		if sent > 0 && budget > 0 && time.Since(start)+e.cfg.WebhookTimeout > budget {
			break
		}
		chunk := min(max-sent, per)
		claimed, err := e.ClaimWebhookDeliveries(ctx, chunk)
		if err != nil {
			return s, err
		}
		sent += len(claimed)
		var mu sync.Mutex
		var firstErr error
		slots := make(chan struct{}, webhookParallel)
		var wg sync.WaitGroup
		for _, c := range claimed {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				outcome, err := e.deliver(ctx, c)
				mu.Lock()
				defer mu.Unlock()
				switch outcome {
				case telemetry.WebhookDelivered:
					s.Delivered++
				case telemetry.WebhookFailed:
					s.Failed++
				case telemetry.WebhookDead:
					s.Dead++
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return s, firstErr
		}
		if len(claimed) < chunk {
			break
		}
	}
	return s, nil
}

// WebhookAttempt is a claimed delivery, to be sent once.
type WebhookAttempt = dbsqlc.WebhookClaimRow

// ClaimWebhookDeliveries claims up to max due deliveries for one attempt each (DeliverWebhooks
// sends them; tests claim without sending, as an instance that dies after its claim).
func (e *Engine) ClaimWebhookDeliveries(ctx context.Context, max int) ([]WebhookAttempt, error) {
	now, _ := e.webhookNow()
	rows, err := queries.WebhookClaim(ctx, e.db, dbsqlc.WebhookClaimParams{Now: now, LeaseMs: (e.cfg.WebhookTimeout + webhookLeaseMargin).Milliseconds(), Max: max})
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	return rows, nil
}

// webhookStale is the outcome of an attempt whose result was not recorded because a newer
// claim holds the delivery's lease: it is counted nowhere.
const webhookStale = "stale"

// deliver sends one attempt and records its result under the attempt's lease; it returns the
// outcome (a telemetry.Webhook* name, or webhookStale).
func (e *Engine) deliver(ctx context.Context, c WebhookAttempt) (string, error) {
	_, ts := e.webhookNow()
	code, errText, refused := e.sendWebhook(ctx, c, ts)
	now, _ := e.webhookNow()
	if errText == "" {
		n, err := queries.WebhookDelivered(ctx, e.db, dbsqlc.WebhookDeliveredParams{ID: c.ID, Lease: c.Lease, StatusCode: code, Now: now})
		if err != nil {
			return "", fmt.Errorf("record delivery %s: %w", c.ID, err)
		}
		if n == 0 {
			return webhookStale, nil // a newer claim's lease: that attempt's result counts
		}
		e.metrics.WebhookDeliveries.WithLabelValues(telemetry.WebhookDelivered).Inc()
		return telemetry.WebhookDelivered, nil
	}
	// 410 Gone: the receiver wants no more (Standard Webhooks); the delivery is given up.
	gone := code != nil && *code == http.StatusGone
	dead := refused || gone || c.Attempts > len(WebhookBackoff)
	var retry time.Duration
	if !dead {
		retry = webhookRetryDelay(c.Attempts)
	}
	n, err := queries.WebhookAttemptFailed(ctx, e.db, dbsqlc.WebhookAttemptFailedParams{ID: c.ID, Lease: c.Lease, StatusCode: code,
		Error: &errText, Dead: dead, RetryMs: retry.Milliseconds(), Now: now})
	if err != nil {
		return "", fmt.Errorf("record the failed attempt of delivery %s: %w", c.ID, err)
	}
	if n == 0 {
		return webhookStale, nil
	}
	outcome := telemetry.WebhookFailed
	if dead {
		outcome = telemetry.WebhookDead
	}
	e.metrics.WebhookDeliveries.WithLabelValues(outcome).Inc()
	return outcome, nil
}

// sendWebhook POSTs the delivery, signed, and returns the answer's status code (nil without
// an answer) and, when it failed, a stored text (generic for failures without an answer, as
// for dispatches) and whether the guard refused the address.
func (e *Engine) sendWebhook(ctx context.Context, c WebhookAttempt, ts time.Time) (code *int, errText string, refused bool) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Url, strings.NewReader(c.Payload))
	if err != nil {
		return nil, "the webhook's url cannot be requested", true
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	sig, err := SignWebhook(c.Secret, c.ID, unix, []byte(c.Payload))
	if err != nil {
		return nil, "the webhook's secret is not a whsec_ secret", true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "PipeWeave-Webhooks/1")
	req.Header.Set("webhook-id", c.ID)
	req.Header.Set("webhook-timestamp", unix)
	req.Header.Set("webhook-signature", sig)
	resp, err := e.whClient.Do(req)
	if err != nil {
		// Not err itself: a *url.Error's text holds the URL, whose query may carry the
		// receiver's token.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		e.log.Info("webhook delivery failed", "delivery", c.ID, "webhook", c.WebhookID, "err", err)
		if errors.Is(err, netguard.ErrRefused) {
			return nil, "refused: the webhook's address is not allowed (WORKER_ALLOWED_NETWORKS)", true
		}
		return nil, "no answer: the webhook's url could not be reached or did not answer within WEBHOOK_TIMEOUT_MS", false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	status := resp.StatusCode
	if status >= 200 && status < 300 {
		return &status, "", false
	}
	return &status, fmt.Sprintf("HTTP %d", status), false
}

// SignWebhook is the webhook-signature header of a delivery (Standard Webhooks): "v1," and the
// base64 of HMAC-SHA256, keyed with the base64-decoded part of secret after whsec_, of
// "{id}.{timestamp}.{body}".
func SignWebhook(secret, id, timestamp string, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, webhookSecretPrefix))
	if err != nil {
		return "", fmt.Errorf("decode the webhook secret: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// NewWebhookSecret makes a signing secret: whsec_ and the base64 of 32 random bytes.
func NewWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a webhook secret: %w", err)
	}
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// checkSecret accepts whsec_ and the standard base64 of 24 to 64 bytes.
func checkSecret(s string) error {
	bad := func(msg string) error {
		return &Error{Kind: ErrInvalid, Code: "INVALID_SECRET", Msg: "secret " + msg, Details: map[string]string{"field": "secret"}}
	}
	rest, ok := strings.CutPrefix(s, webhookSecretPrefix)
	if !ok {
		return bad("must start with whsec_")
	}
	if len(rest) > 100 {
		return bad("must encode 24 to 64 bytes")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	switch {
	case err != nil:
		return bad("must be whsec_ followed by standard base64")
	case len(key) < 24 || len(key) > 64:
		return bad(fmt.Sprintf("must encode 24 to 64 bytes, got %d", len(key)))
	}
	return nil
}

// checkEvents returns events sorted without duplicates, or a 400 naming the unknown one.
func checkEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, &Error{Kind: ErrInvalid, Code: "INVALID_EVENTS", Msg: "events must name at least one event: " + strings.Join(protocol.WebhookEvents, ", "),
			Details: map[string]string{"field": "events"}}
	}
	if len(events) > 4*len(protocol.WebhookEvents) {
		return nil, &Error{Kind: ErrInvalid, Code: "INVALID_EVENTS", Msg: fmt.Sprintf("events lists %d items; there are %d event types", len(events), len(protocol.WebhookEvents)),
			Details: map[string]string{"field": "events"}}
	}
	for _, ev := range events {
		if !slices.Contains(protocol.WebhookEvents, ev) {
			return nil, &Error{Kind: ErrInvalid, Code: "UNKNOWN_EVENT", Msg: fmt.Sprintf("unknown event %q; events are %s", ev, strings.Join(protocol.WebhookEvents, ", ")),
				Details: map[string]string{"field": "events", "event": ev}}
		}
	}
	out := slices.Clone(events)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkWebhookURL accepts an absolute http or https URL with a host, no user info and no
// fragment, whose host is, or resolves (within a few seconds) only to, addresses the dispatch
// guard allows (WORKER_ALLOWED_NETWORKS). The guard checks again at every connection.
func (e *Engine) checkWebhookURL(ctx context.Context, raw string) error {
	bad := func(code, msg string) error {
		return &Error{Kind: ErrInvalid, Code: code, Msg: "url " + msg, Details: map[string]string{"field": "url"}}
	}
	if len(raw) > MaxWebhookURLBytes {
		return bad("URL_TOO_LONG", fmt.Sprintf("is %d bytes, longer than %d", len(raw), MaxWebhookURLBytes))
	}
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return bad("INVALID_URL", "is required")
	case err != nil || u.Opaque != "" || (u.Scheme != "http" && u.Scheme != "https"):
		return bad("INVALID_URL", "must be an absolute http or https URL")
	case u.Hostname() == "":
		return bad("INVALID_URL", "must have a host")
	case !validPort(u.Port()):
		return bad("INVALID_URL", "must have a port between 1 and 65535, if any")
	case u.User != nil:
		return bad("INVALID_URL", "must not contain user info (user:password@)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return bad("INVALID_URL", "must not contain a fragment (#…)")
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil || len(addrs) == 0 {
			return bad("URL_UNRESOLVED", fmt.Sprintf("host %q does not resolve", host))
		}
	}
	for _, a := range addrs {
		if err := e.guard.Check(a); err != nil {
			return bad("URL_REFUSED", "is refused by the address guard: "+err.Error()+" (WORKER_ALLOWED_NETWORKS)")
		}
	}
	return nil
}

// webhookOf is a webhook's row as the API shows it, without its secret.
func webhookOf(id, u string, events []string, secret string, enabled bool, created, updated time.Time) protocol.Webhook {
	prefix := secret
	if len(prefix) > len(webhookSecretPrefix)+4 {
		prefix = prefix[:len(webhookSecretPrefix)+4]
	}
	if events == nil {
		events = []string{}
	}
	return protocol.Webhook{ID: id, URL: u, Events: events, Enabled: enabled, SecretSet: secret != "", SecretPrefix: prefix,
		CreatedAt: created, UpdatedAt: updated}
}

// deliveryOf is a delivery's row as the log shows it.
func deliveryOf(r dbsqlc.WebhookDeliveryGetRow) protocol.WebhookDelivery {
	d := protocol.WebhookDelivery{ID: r.ID, WebhookID: r.WebhookID, Event: r.Event, Status: r.Status, Attempts: r.Attempts,
		LastAttemptAt: r.LastAttemptAt, LastStatusCode: r.LastStatusCode, LastError: r.LastError, CreatedAt: r.CreatedAt,
		FinishedAt: r.FinishedAt}
	if r.Status == protocol.DeliveryPending {
		next := r.NextAttemptAt
		d.NextAttemptAt = &next
	}
	return d
}
