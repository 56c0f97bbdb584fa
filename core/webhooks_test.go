package core_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// specSignature computes a Standard Webhooks signature from the specification alone (not the
// engine's signer): the key is the base64 decoding of the secret after "whsec_", the signed
// content is "{webhook-id}.{webhook-timestamp}.{body}", the signature "v1," and the base64 of
// its HMAC-SHA256.
func specSignature(t *testing.T, secret, id, timestamp string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	require.NoError(t, err)
	mac := hmac.New(sha256.New, key)
	_, _ = fmt.Fprintf(mac, "%s.%s.%s", id, timestamp, body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// verifyHook checks a delivery as a receiver does: the three headers present, a signature of
// the webhook-signature list (space-separated) equal to the one computed from the spec.
func verifyHook(t *testing.T, secret string, r hookRequest) {
	t.Helper()
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	require.True(t, strings.HasPrefix(id, "msg_"), "webhook-id %q", id)
	_, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err, "webhook-timestamp %q is unix seconds", ts)
	want := specSignature(t, secret, id, ts, r.Body)
	require.Contains(t, strings.Fields(sigs), want, "signature of %s", r.Body)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
}

// The signature of the official libraries' test vector (standard-webhooks libraries/go
// webhook_test.go TestWebhookSign), by the test's implementation and by the engine's.
func TestWebhookSignatureVector(t *testing.T) {
	t.Parallel()
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts     = "1614265330"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	require.Equal(t, want, specSignature(t, secret, id, ts, []byte(body)))
	got, err := core.SignWebhookForTest(secret, id, ts, []byte(body))
	require.NoError(t, err)
	require.Equal(t, want, got)
}

type hookRequest struct {
	Header http.Header
	Body   []byte
}

// hookPayload is a delivery's body.
type hookPayload struct {
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

func (r hookRequest) payload(t *testing.T) hookPayload {
	t.Helper()
	var p hookPayload
	require.NoError(t, json.Unmarshal(r.Body, &p), "%s", r.Body)
	return p
}

// receiver records the deliveries it gets and answers each with answer (default 200).
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	got     []hookRequest
	answer  func(n int, w http.ResponseWriter, r *http.Request) // n counts from 0
	changed chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, changed: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, hookRequest{Header: r.Header.Clone(), Body: body})
		answer := rc.answer
		close(rc.changed)
		rc.changed = make(chan struct{})
		rc.mu.Unlock()
		if answer != nil {
			answer(n, w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.got...)
}

// waitCount waits until the receiver got at least n requests.
func (rc *receiver) waitCount(n int) []hookRequest {
	rc.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		rc.mu.Lock()
		got, ch := len(rc.got), rc.changed
		rc.mu.Unlock()
		if got >= n {
			return rc.requests()
		}
		select {
		case <-ch:
		case <-deadline:
			rc.t.Fatalf("the receiver got %d requests, waiting for %d", got, n)
		}
	}
}

// putWebhook asks PUT /api/webhooks/{id} and checks the status.
func (e *env) putWebhook(id string, body any, status int) protocol.Webhook {
	e.t.Helper()
	r := e.do("PUT", "/api/webhooks/"+id, body, "")
	require.Equal(e.t, status, r.Status, string(r.Body))
	var w protocol.Webhook
	r.json(e.t, &w)
	return w
}

// deliveries lists the log of webhook id.
func (e *env) deliveries(id string) []protocol.WebhookDelivery {
	e.t.Helper()
	r := e.do("GET", "/api/webhooks/"+id+"/deliveries", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	var p protocol.WebhookDeliveryPage
	r.json(e.t, &p)
	return p.Items
}

// deliverAll sends due deliveries until none is left due.
func (e *env) deliverAll() int {
	e.t.Helper()
	total := 0
	for {
		n, err := e.orch.DeliverWebhooks(context.Background())
		require.NoError(e.t, err)
		if n == 0 {
			return total
		}
		total += n
	}
}

// fakeClock is a webhook clock a test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Add(time.Minute)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Every kind of event is delivered, signed, with its data: standalone runs completed and
// failed, the DLQ entry of the failure, pipeline runs completed, failed, partial and cancelled.
// The generated secret is answered once, never by GET.
func TestWebhookEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t)
	all := []string{"pipeline_run.completed", "pipeline_run.failed", "pipeline_run.partial", "pipeline_run.cancelled",
		"task_run.completed", "task_run.failed", "task_run.cancelled", "dlq.added"}
	created := e.putWebhook("all", map[string]any{"url": rc.srv.URL + "/hook", "events": all}, http.StatusCreated)
	require.True(t, strings.HasPrefix(created.Secret, "whsec_"), "generated secret answered: %+v", created)
	secret := created.Secret
	got := e.putWebhook("all", map[string]any{"url": rc.srv.URL + "/hook", "events": all}, http.StatusOK)
	require.Empty(t, got.Secret, "an update keeps the secret and does not show it")
	r := e.do("GET", "/api/webhooks/all", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	require.NotContains(t, string(r.Body), secret)
	require.Contains(t, string(r.Body), `"secretSet":true`)
	require.Contains(t, string(r.Body), secret[:10])
	r = e.do("GET", "/api/webhooks", nil, "")
	require.NotContains(t, string(r.Body), secret)

	w := newPWorker(t, e)
	e.register("solo", "1", w.URL(), task("ok"), task("bad"))
	w.on("bad", failWith("boom", false))
	okRun := e.enqueue(map[string]any{"taskId": "ok"}).RunID
	badRun := e.enqueue(map[string]any{"taskId": "bad"}).RunID
	e.waitStatus(okRun, protocol.StatusCompleted)
	e.waitStatus(badRun, protocol.StatusFailed)

	diamond(e, w.URL())
	done := e.waitRun(e.trigger("dia", map[string]any{"input": 1}), "completed").ID
	e.register("brk", "1", w.URL(), task("f1", next("f2", "f3")), task("f2", next("f4")), task("f3", next("f4")), task("f4"))
	w.on("f2", failWith("bad page", false))
	failed := e.waitRun(e.trigger("brk", map[string]any{"input": 1}), "failed").ID
	partial := e.waitRun(e.trigger("brk", map[string]any{"input": 1, "failureMode": "partial-merge"}), "partial").ID
	e.register("held", "1", w.URL(), task("h1", next("h2")), task("h2"))
	release := w.holdTask("h1")
	cancelled := e.trigger("held", map[string]any{"input": 1})
	w.waitUntil("h1 to run", func() bool { return len(w.dispatchesOf("h1")) == 1 })
	r = e.do("POST", "/api/runs/"+cancelled+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	release()
	w.waitUntil("h1's late callback", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["h1"]) == 1
	})

	e.deliverAll()
	byType := map[string][]hookPayload{}
	ids := map[string]bool{}
	for _, req := range rc.requests() {
		verifyHook(t, secret, req)
		p := req.payload(t)
		byType[p.Type] = append(byType[p.Type], p)
		require.False(t, ids[req.Header.Get("webhook-id")], "one webhook-id per delivery")
		ids[req.Header.Get("webhook-id")] = true
	}
	find := func(typ, key, val string) hookPayload {
		for _, p := range byType[typ] {
			if p.Data[key] == val {
				return p
			}
		}
		t.Fatalf("no %s event with %s=%s; got %v", typ, key, val, byType)
		return hookPayload{}
	}
	p := find("task_run.completed", "runId", okRun)
	require.Equal(t, "ok", p.Data["taskId"])
	require.Equal(t, "completed", p.Data["status"])
	require.False(t, p.Timestamp.IsZero())
	p = find("task_run.failed", "runId", badRun)
	require.Equal(t, "boom", p.Data["error"])
	require.Equal(t, "BOOM", p.Data["errorCode"])
	p = find("dlq.added", "runId", badRun)
	require.Equal(t, "bad", p.Data["taskId"])
	require.Len(t, byType["task_run.completed"], 1, "pipeline nodes are not task_run events")
	require.Len(t, byType["task_run.failed"], 1)
	require.Equal(t, "dia", find("pipeline_run.completed", "pipelineRunId", done).Data["pipelineId"])
	require.Equal(t, "brk", find("pipeline_run.failed", "pipelineRunId", failed).Data["pipelineId"])
	require.Equal(t, "partial", find("pipeline_run.partial", "pipelineRunId", partial).Data["status"])
	find("pipeline_run.cancelled", "pipelineRunId", cancelled)

	log := e.deliveries("all")
	require.Len(t, log, len(rc.requests()))
	for _, d := range log {
		require.Equal(t, protocol.DeliveryDelivered, d.Status)
		require.Equal(t, 1, d.Attempts)
		require.Equal(t, http.StatusOK, *d.LastStatusCode)
		require.Nil(t, d.NextAttemptAt)
	}
	r = e.do("GET", "/metrics", nil, "")
	require.Contains(t, string(r.Body), fmt.Sprintf(`pipeweave_webhook_deliveries_total{outcome="delivered"} %d`, len(log)))
}

// A webhook that wants nothing of what happened gets nothing; a disabled one gets nothing; a
// deleted one loses its log. schedule.missed, emitted through webhook_emit, reaches those that
// want it; task_run.cancelled too; an event is queued in the transaction of its change and
// rolled back with it.
func TestWebhookSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	e.putWebhook("fails", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.failed"}, "secret": secret}, http.StatusCreated)
	e.putWebhook("off", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.completed"}, "enabled": false}, http.StatusCreated)
	e.putWebhook("sched", map[string]any{"url": rc.srv.URL, "events": []string{"schedule.missed"}, "secret": secret}, http.StatusCreated)
	w := newPWorker(t, e)
	e.register("solo", "1", w.URL(), task("ok"))
	e.waitStatus(e.enqueue(map[string]any{"taskId": "ok"}).RunID, protocol.StatusCompleted)
	require.Zero(t, e.count("SELECT count(*) FROM webhook_deliveries"))

	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT webhook_emit('schedule.missed', '{"scheduleId":"nightly","slot":"2026-01-01T00:00:00Z"}')`).Scan(&n))
	require.Equal(t, 1, n)
	require.Equal(t, 1, e.deliverAll())
	req := rc.requests()[0]
	verifyHook(t, secret, req)
	p := req.payload(t)
	require.Equal(t, "schedule.missed", p.Type)
	require.Equal(t, "nightly", p.Data["scheduleId"])

	// task_run.cancelled: a standalone run cancelled while it waits (its task paused).
	e.putWebhook("cancels", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.cancelled"}, "secret": secret}, http.StatusCreated)
	require.Equal(t, http.StatusOK, e.do("POST", "/api/tasks/ok/pause", nil, "").Status)
	waiting := e.enqueue(map[string]any{"taskId": "ok"}).RunID
	r := e.do("POST", "/api/task-runs/"+waiting+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, 1, e.deliverAll())
	req = rc.requests()[1]
	verifyHook(t, secret, req)
	p = req.payload(t)
	require.Equal(t, "task_run.cancelled", p.Type)
	require.Equal(t, waiting, p.Data["runId"])

	// The event is written in the transaction of the change: rolled back, nothing is queued.
	e.putWebhook("fails", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.completed"}}, http.StatusOK)
	before := e.count("SELECT count(*) FROM webhook_deliveries")
	tx, err := e.pool.Begin(context.Background())
	require.NoError(t, err)
	tag, err := tx.Exec(context.Background(), "UPDATE task_runs SET status = 'pending' WHERE id = $1", waiting)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	_, err = tx.Exec(context.Background(), "UPDATE task_runs SET status = 'completed', completed_at = now() WHERE id = $1", waiting)
	require.NoError(t, err)
	var inTx int
	require.NoError(t, tx.QueryRow(context.Background(), "SELECT count(*) FROM webhook_deliveries").Scan(&inTx))
	require.Equal(t, before+1, inTx, "queued inside the transaction")
	require.NoError(t, tx.Rollback(context.Background()))
	require.Equal(t, before, e.count("SELECT count(*) FROM webhook_deliveries"), "rolled back with it")

	r = e.do("DELETE", "/api/webhooks/sched", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Zero(t, e.count("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'sched'"))
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/webhooks/sched", nil, "").Status)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/webhooks/sched/deliveries", nil, "").Status)
}

// Failed attempts (500, then no answer within the timeout) are retried after the backoff,
// with the same webhook-id; after the last attempt the delivery is dead; a resend makes it
// pending again (409 while it is), and the purge deletes finished deliveries past retention.
func TestWebhookRetriesAndDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.WebhookTimeout = 300 * time.Millisecond })
	clock := newFakeClock()
	e.orch.SetWebhookClock(clock.Now)
	rc := newReceiver(t)
	var mode atomic.Value // "500", "hang" or "ok"
	mode.Store("500")
	rc.answer = func(_ int, w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		case "hang":
			<-r.Context().Done() // the sender gives up first
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
	hook := e.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.completed"}}, http.StatusCreated)
	w := newPWorker(t, e)
	e.register("solo", "1", w.URL(), task("ok"))
	e.waitStatus(e.enqueue(map[string]any{"taskId": "ok"}).RunID, protocol.StatusCompleted)

	require.Equal(t, 1, e.deliverAll())
	d := e.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryPending, d.Status)
	require.Equal(t, 1, d.Attempts)
	require.Equal(t, 500, *d.LastStatusCode)
	require.Equal(t, "HTTP 500", d.LastError)
	requireBackoff(t, clock.Now(), 5*time.Second, *d.NextAttemptAt)
	require.Zero(t, e.deliverAll(), "not due before the backoff")

	mode.Store("hang")
	clock.add(d.NextAttemptAt.Sub(clock.Now()))
	require.Equal(t, 1, e.deliverAll())
	d = e.deliveries("h")[0]
	require.Equal(t, 2, d.Attempts)
	require.Nil(t, d.LastStatusCode)
	require.Contains(t, d.LastError, "no answer")
	requireBackoff(t, clock.Now(), 5*time.Minute, *d.NextAttemptAt)

	mode.Store("ok")
	clock.add(d.NextAttemptAt.Sub(clock.Now()))
	require.Equal(t, 1, e.deliverAll())
	d = e.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryDelivered, d.Status)
	require.Equal(t, 3, d.Attempts)
	require.Equal(t, http.StatusNoContent, *d.LastStatusCode)
	reqs := rc.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		verifyHook(t, hook.Secret, r)
		require.Equal(t, d.ID, r.Header.Get("webhook-id"), "the same webhook-id on every attempt")
		require.Equal(t, reqs[0].Body, r.Body)
	}
	require.NotEqual(t, reqs[0].Header.Get("webhook-timestamp"), reqs[2].Header.Get("webhook-timestamp"), "each attempt its own timestamp")

	// Resending a delivered one: pending again (409 while it is), then sent again.
	r := e.do("POST", "/api/webhooks/h/deliveries/"+d.ID+"/resend", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = e.do("POST", "/api/webhooks/h/deliveries/"+d.ID+"/resend", nil, "")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "DELIVERY_PENDING", r.errorBody(t).Code)

	// Failing every attempt: 8 attempts along the backoff, then dead.
	mode.Store("500")
	backoff := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	for attempt := 1; attempt <= 8; attempt++ {
		require.Equal(t, 1, e.deliverAll(), "attempt %d", attempt)
		d = e.deliveries("h")[0]
		require.Equal(t, attempt, d.Attempts)
		if attempt < 8 {
			require.Equal(t, protocol.DeliveryPending, d.Status)
			requireBackoff(t, clock.Now(), backoff[attempt-1], *d.NextAttemptAt)
			clock.add(d.NextAttemptAt.Sub(clock.Now()))
		}
	}
	require.Equal(t, protocol.DeliveryDead, d.Status)
	require.Nil(t, d.NextAttemptAt)
	require.NotNil(t, d.FinishedAt)
	clock.add(48 * time.Hour)
	require.Zero(t, e.deliverAll(), "a dead delivery is not sent")
	r = e.do("GET", "/metrics", nil, "")
	require.Contains(t, string(r.Body), `pipeweave_webhook_deliveries_total{outcome="dead"} 1`)
	require.Contains(t, string(r.Body), `pipeweave_webhook_deliveries_total{outcome="failed"} 9`)

	mode.Store("ok")
	r = e.do("POST", "/api/webhooks/h/deliveries/"+d.ID+"/resend", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, 1, e.deliverAll())
	d = e.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryDelivered, d.Status)
	require.Equal(t, 1, d.Attempts)

	// The log pages with nextCursor, newest first.
	_, err := e.pool.Exec(context.Background(), `SELECT webhook_emit('task_run.completed', jsonb_build_object('i', i)) FROM generate_series(1, 4) i`)
	require.NoError(t, err)
	var ids []string
	for cursor := ""; ; {
		r := e.do("GET", "/api/webhooks/h/deliveries?limit=2&cursor="+cursor, nil, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var p protocol.WebhookDeliveryPage
		r.json(t, &p)
		for _, d := range p.Items {
			ids = append(ids, d.ID)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	require.Len(t, ids, 5)
	require.Equal(t, d.ID, ids[4], "the first delivery is the oldest")
	require.IsIncreasing(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]})
	_, err = e.pool.Exec(context.Background(), "DELETE FROM webhook_deliveries WHERE id <> $1", d.ID)
	require.NoError(t, err)

	// The purge deletes finished deliveries past retention (DLQ_RETENTION_DAYS).
	_, err = e.pool.Exec(context.Background(), "UPDATE webhook_deliveries SET finished_at = now() - interval '400 days'")
	require.NoError(t, err)
	s, err := e.orch.Purge(context.Background(), time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.WebhookDeliveries)
	require.Empty(t, e.deliveries("h"))
}

// requireBackoff checks that next is the step after now, with its jitter of up to +10%.
func requireBackoff(t *testing.T, now time.Time, step time.Duration, next time.Time) {
	t.Helper()
	lo, hi := now.Add(step).Add(-time.Millisecond), now.Add(step+step/10).Add(time.Millisecond)
	require.True(t, !next.Before(lo) && !next.After(hi), "next attempt %v, want %v + up to 10%%", next.Sub(now), step)
}

// A receiver answering 410 Gone wants no more: the delivery is dead at once.
func TestWebhookGoneIsDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t)
	rc.answer = func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) }
	e.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
	_, err := e.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{}')`)
	require.NoError(t, err)
	require.Equal(t, 1, e.deliverAll())
	d := e.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryDead, d.Status)
	require.Equal(t, http.StatusGone, *d.LastStatusCode)
}

// An instance that sent a delivery but died before recording the answer: another instance
// sends it again, with the same webhook-id, once the claim's lease has passed, and not before.
func TestWebhookAtLeastOnceAcrossKill(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *core.Config) { c.WebhookTimeout = 5 * time.Second })
	b := newEnvOn(t, a.pool, func(c *core.Config) { c.WebhookTimeout = 5 * time.Second })
	clock := newFakeClock()
	a.orch.SetWebhookClock(clock.Now)
	b.orch.SetWebhookClock(clock.Now)
	rc := newReceiver(t)
	arrived := make(chan struct{}, 1)
	rc.answer = func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			arrived <- struct{}{}
			<-r.Context().Done() // instance A dies while its request is in flight
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	hook := a.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
	_, err := a.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{"dlqId":"x"}')`)
	require.NoError(t, err)

	ctx, kill := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := a.orch.DeliverWebhooks(ctx)
		errc <- err
	}()
	<-arrived
	kill()
	require.Error(t, <-errc, "A could not record the attempt")
	d := b.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryPending, d.Status)
	require.Equal(t, 1, d.Attempts)

	require.Zero(t, b.deliverAll(), "B does not send it while A's claim holds")
	clock.add(5*time.Second + 20*time.Second)
	require.Equal(t, 1, b.deliverAll())
	reqs := rc.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, reqs[0].Header.Get("webhook-id"), reqs[1].Header.Get("webhook-id"))
	require.Equal(t, reqs[0].Body, reqs[1].Body)
	verifyHook(t, hook.Secret, reqs[1])
	d = b.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryDelivered, d.Status)
	require.Equal(t, 2, d.Attempts)

	// A claim that never sent (an instance killed right after its claim): sent after the lease.
	_, err = a.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{"dlqId":"y"}')`)
	require.NoError(t, err)
	claimed, err := a.orch.ClaimWebhookDeliveries(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Zero(t, b.deliverAll())
	clock.add(5*time.Second + 20*time.Second)
	require.Equal(t, 1, b.deliverAll())
	require.Equal(t, claimed[0], rc.requests()[2].Header.Get("webhook-id"))
}

// Several instances sending at once never send one delivery twice.
func TestWebhookConcurrentSenders(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	instances := []*env{a, newEnvOn(t, a.pool), newEnvOn(t, a.pool)}
	rc := newReceiver(t)
	a.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
	const perRound = 60
	for round := range 5 {
		_, err := a.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', jsonb_build_object('i', i)) FROM generate_series(1, $1) i`, perRound)
		require.NoError(t, err)
		var wg sync.WaitGroup
		for _, in := range instances {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n, err := in.orch.DeliverWebhooks(context.Background())
						if err != nil {
							t.Error(err)
							return
						}
						if n == 0 {
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		reqs := rc.requests()
		require.Len(t, reqs, perRound*(round+1), "round %d", round)
		seen := map[string]int{}
		for _, r := range reqs {
			seen[r.Header.Get("webhook-id")]++
		}
		for id, n := range seen {
			require.Equal(t, 1, n, "delivery %s sent %d times", id, n)
		}
		require.Zero(t, a.count("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"))
	}
}

// The standalone loop sends deliveries by itself.
func TestWebhookStandaloneLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	e.runLoop()
	rc := newReceiver(t)
	hook := e.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"task_run.completed"}}, http.StatusCreated)
	w := newPWorker(t, e)
	e.register("solo", "1", w.URL(), task("ok"))
	id := e.enqueue(map[string]any{"taskId": "ok"}).RunID
	req := rc.waitCount(1)[0]
	verifyHook(t, hook.Secret, req)
	require.Equal(t, id, req.payload(t).Data["runId"])
}

// Bad input is refused with a code naming what is wrong, and writes nothing.
func TestWebhookBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ok := "http://127.0.0.1:9/hook"
	events := []string{"task_run.completed"}
	cases := []struct {
		name, id string
		body     any
		status   int
		code     string
		contains string
	}{
		{"bad id", "bad%20id", map[string]any{"url": ok, "events": events}, 400, "INVALID_WEBHOOK_ID", ""},
		{"no url", "h", map[string]any{"events": events}, 400, "INVALID_URL", "url"},
		{"ftp url", "h", map[string]any{"url": "ftp://127.0.0.1/x", "events": events}, 400, "INVALID_URL", "http"},
		{"user info", "h", map[string]any{"url": "http://u:p@127.0.0.1/x", "events": events}, 400, "INVALID_URL", "user info"},
		{"fragment", "h", map[string]any{"url": "http://127.0.0.1/x#f", "events": events}, 400, "INVALID_URL", "fragment"},
		{"url too long", "h", map[string]any{"url": "http://127.0.0.1/" + strings.Repeat("a", 2100), "events": events}, 400, "URL_TOO_LONG", ""},
		{"metadata address", "h", map[string]any{"url": "http://169.254.169.254/latest", "events": events}, 400, "URL_REFUSED", "169.254.169.254"},
		{"private address not allowed", "h", map[string]any{"url": "http://10.1.2.3/x", "events": events}, 400, "URL_REFUSED", "10.1.2.3"},
		{"unresolvable host", "h", map[string]any{"url": "http://no-such-host.invalid/x", "events": events}, 400, "URL_UNRESOLVED", "no-such-host.invalid"},
		{"unknown event", "h", map[string]any{"url": ok, "events": []string{"task_run.completed", "run.exploded"}}, 400, "UNKNOWN_EVENT", "run.exploded"},
		{"no events", "h", map[string]any{"url": ok, "events": []string{}}, 400, "INVALID_EVENTS", ""},
		{"too many events", "h", map[string]any{"url": ok, "events": make([]string, 100)}, 400, "INVALID_EVENTS", ""},
		{"secret without prefix", "h", map[string]any{"url": ok, "events": events, "secret": "abc"}, 400, "INVALID_SECRET", "whsec_"},
		{"secret too short", "h", map[string]any{"url": ok, "events": events, "secret": "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16))}, 400, "INVALID_SECRET", "24 to 64"},
		{"secret not base64", "h", map[string]any{"url": ok, "events": events, "secret": "whsec_!!!!"}, 400, "INVALID_SECRET", ""},
		{"unknown field", "h", map[string]any{"url": ok, "events": events, "evnets": events}, 400, "", "evnets"},
		{"events not a list", "h", map[string]any{"url": ok, "events": "task_run.completed"}, 400, "INVALID_FIELD", "events"},
		{"body too large", "h", map[string]any{"url": ok, "events": events, "pad": strings.Repeat("x", 20<<10)}, 413, "BODY_TOO_LARGE", ""},
	}
	for _, c := range cases {
		r := e.do("PUT", "/api/webhooks/"+c.id, c.body, "")
		require.Equal(t, c.status, r.Status, "%s: %s", c.name, r.Body)
		b := r.errorBody(t)
		if c.code != "" {
			require.Equal(t, c.code, b.Code, c.name)
		}
		require.Contains(t, b.Error, c.contains, c.name)
	}
	require.Zero(t, e.count("SELECT count(*) FROM webhooks"), "nothing written")

	for _, p := range []string{"GET /api/webhooks/nope", "DELETE /api/webhooks/nope", "GET /api/webhooks/nope/deliveries",
		"POST /api/webhooks/nope/deliveries/msg_x/resend"} {
		method, path, _ := strings.Cut(p, " ")
		r := e.do(method, path, nil, "")
		require.Equal(t, http.StatusNotFound, r.Status, "%s: %s", p, r.Body)
		require.Equal(t, "WEBHOOK_NOT_FOUND", r.errorBody(t).Code, p)
	}
	e.putWebhook("h", map[string]any{"url": ok, "events": events}, http.StatusCreated)
	r := e.do("POST", "/api/webhooks/h/deliveries/msg_x/resend", nil, "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "DELIVERY_NOT_FOUND", r.errorBody(t).Code)
	r = e.do("POST", "/api/webhooks/h/deliveries/msg_x/resend", map[string]any{"x": 1}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "resend takes no body")
	for _, q := range []string{"?status=lost", "?limit=0x", "?limit=100000", "?cursor=%27"} {
		r = e.do("GET", "/api/webhooks/h/deliveries"+q, nil, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", q, r.Body)
	}
	// The allowed networks (WORKER_ALLOWED_NETWORKS) decide, as for dispatches.
	e2 := newEnv(t, func(c *core.Config) { c.WorkerAllowedNetworks = nil })
	r = e2.do("PUT", "/api/webhooks/h", map[string]any{"url": ok, "events": events}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "URL_REFUSED", r.errorBody(t).Code)
}

// A delivery whose address the sending instance's guard refuses (WORKER_ALLOWED_NETWORKS
// differs, or the name now resolves elsewhere) is dead at once, never sent.
func TestWebhookRefusedAtSendIsDead(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	strict := newEnvOn(t, a.pool, func(c *core.Config) { c.WorkerAllowedNetworks = nil })
	rc := newReceiver(t)
	a.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
	_, err := a.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{}')`)
	require.NoError(t, err)
	require.Equal(t, 1, strict.deliverAll())
	d := a.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryDead, d.Status)
	require.Equal(t, 1, d.Attempts)
	require.Contains(t, d.LastError, "not allowed")
	require.Empty(t, rc.requests())
}

// process keeps its deliveries within PROCESS_TIME_BUDGET_MS: with a budget shorter than one
// request's time limit, it sends one claim's worth (8) and leaves the rest due.
func TestWebhookProcessBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) {
		c.WebhookTimeout = 200 * time.Millisecond
		c.ProcessTimeBudget = 100 * time.Millisecond
	})
	rc := newReceiver(t)
	rc.answer = func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	e.putWebhook("h", map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
	_, err := e.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', jsonb_build_object('i', i)) FROM generate_series(1, 20) i`)
	require.NoError(t, err)
	s := e.process()
	require.Equal(t, 8, s.WebhookDeliveries)
	require.Equal(t, 12, e.count("SELECT count(*) FROM webhook_deliveries WHERE attempts = 0"))
}

// At most 100 webhooks, also when many are created at once: the rest are 409
// TOO_MANY_WEBHOOKS; replacing one is still allowed.
func TestWebhookLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"dlq.added"}}
	statuses := make([]int, 110)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.send("PUT", fmt.Sprintf("/api/webhooks/h%d", i), body, "")
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.Status
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	require.Equal(t, map[int]int{http.StatusCreated: 100, http.StatusConflict: 10}, count)
	require.Equal(t, 100, e.count("SELECT count(*) FROM webhooks"))
	created := 0
	for ; statuses[created] != http.StatusCreated; created++ {
	}
	e.putWebhook(fmt.Sprintf("h%d", created), body, http.StatusOK)
	r := e.do("PUT", "/api/webhooks/one-more", body, "")
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "TOO_MANY_WEBHOOKS", r.errorBody(t).Code)
}

// A webhook deleted while a change that emits its event waits on it: the change commits and
// the deleted webhook gets no delivery (before webhook_emit took FOR KEY SHARE, the delivery's
// foreign key check failed the change with 23503 webhook_deliveries_webhook_id_fkey).
func TestWebhookDeleteConcurrentWithEmit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		e.putWebhook("h", map[string]any{"url": "http://127.0.0.1:1/", "events": []string{"dlq.added"}}, http.StatusCreated)
		a, err := e.pool.Begin(ctx)
		require.NoError(t, err)
		_, err = a.Exec(ctx, `DELETE FROM webhooks WHERE id = 'h'`)
		require.NoError(t, err)
		b, err := e.pool.Acquire(ctx)
		require.NoError(t, err)
		var pid int
		require.NoError(t, b.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		// On a failure, the open transaction and connection must not keep the pool's close waiting.
		t.Cleanup(func() { _ = a.Rollback(ctx) })
		done := make(chan error, 1)
		var n int
		go func() {
			done <- b.QueryRow(ctx, `SELECT webhook_emit('dlq.added', '{}')`).Scan(&n)
		}()
		// B waits on the row lock of A's delete before A commits.
		require.Eventually(t, func() bool {
			return e.count(`SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, pid) == 1
		}, time.Minute, 5*time.Millisecond, "round %d", i)
		require.NoError(t, a.Commit(ctx))
		err = <-done
		b.Release()
		require.NoError(t, err, "round %d", i)
		require.Zero(t, n, "round %d", i)
		require.Zero(t, e.count(`SELECT count(*) FROM webhook_deliveries`), "round %d", i)
	}
}

// A receiver's token in the webhook URL's query is not logged or stored when an attempt fails
// without an answer (the HTTP client's error text holds the URL).
func TestWebhookFailureHidesTheURLQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there: the attempt fails without an answer
	e.putWebhook("h", map[string]any{"url": "http://" + addr + "/hook?token=S3CR3T-T0KEN", "events": []string{"dlq.added"}}, http.StatusCreated)
	_, err = e.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{}')`)
	require.NoError(t, err)
	require.Equal(t, 1, e.deliverAll())
	d := e.deliveries("h")[0]
	require.Equal(t, protocol.DeliveryPending, d.Status, "retried later")
	require.NotEmpty(t, d.LastError)
	require.NotContains(t, d.LastError, "S3CR3T")
	require.Contains(t, e.logs.String(), "webhook delivery failed")
	require.NotContains(t, e.logs.String(), "S3CR3T")
}

// A receiver that answers with a redirect is not followed: the attempt fails with the redirect's
// status and is retried later, and the address it points to (which could be one the guard
// refuses, such as the cloud metadata service) gets nothing.
func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target := newReceiver(t)
	rc := newReceiver(t)
	var status atomic.Int32
	rc.answer = func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL+"/elsewhere", int(status.Load()))
	}
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		status.Store(int32(code))
		id := fmt.Sprintf("h%d", code)
		e.putWebhook(id, map[string]any{"url": rc.srv.URL, "events": []string{"dlq.added"}}, http.StatusCreated)
		_, err := e.pool.Exec(context.Background(), `SELECT webhook_emit('dlq.added', '{}')`)
		require.NoError(t, err)
		require.Equal(t, 1, e.deliverAll())
		d := e.deliveries(id)[0]
		require.Equal(t, protocol.DeliveryPending, d.Status, "retried later")
		require.Equal(t, code, *d.LastStatusCode)
		require.Empty(t, target.requests(), "the redirect was followed")
		r := e.do("DELETE", "/api/webhooks/"+id, nil, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}
	// Against the metadata address itself the guard refuses at delivery time (the address is
	// never allowed), which TestWebhookRefusedAtSendIsDead covers for a refused network.
}
