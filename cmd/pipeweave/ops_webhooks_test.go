package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// pipeweave webhooks put, list, get, deliveries, resend and delete against a live stack: the
// generated secret is printed once, a failed run is delivered and logged, a resend makes it
// pending again, bad input is the server's 400.
func TestCLIWebhooks(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	var got atomic.Int32
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	t.Cleanup(rc.Close)

	out := s.cli("webhooks", "put", "ops", "--endpoint", rc.URL+"/hook", "--events", "pipeline_run.failed, dlq.added")
	require.Regexp(t, `^webhook ops created; its signing secret, shown this once:\nwhsec_[A-Za-z0-9+/=]{40,}\n$`, out)
	secret := strings.TrimSpace(strings.Split(out, "\n")[1])
	out = s.cli("webhooks", "put", "ops", "--endpoint", rc.URL+"/hook", "--events", "pipeline_run.failed,dlq.added")
	require.Equal(t, "webhook ops saved (dlq.added,pipeline_run.failed, enabled)\n", out)
	out = s.cli("webhooks", "list")
	require.Contains(t, out, "ops")
	require.Contains(t, out, secret[:10]+"…")
	require.NotContains(t, out, secret)
	out = s.cli("webhooks", "get", "ops")
	require.Contains(t, out, "dlq.added, pipeline_run.failed")
	require.NotContains(t, out, secret)
	var w protocol.Webhook
	s.cliJSON(&w, "webhooks", "get", "ops")
	require.True(t, w.SecretSet)
	require.Empty(t, w.Secret)

	prun := s.trigger("docs", cliInput{Fail: []string{"extract"}})
	require.EqualValues(t, "failed", s.waitRun(prun).Status)
	s.api(http.MethodPost, "/api/process", nil, nil)
	require.EqualValues(t, 2, got.Load(), "pipeline_run.failed and dlq.added")
	out = s.cli("webhooks", "deliveries", "ops", "--status", "delivered")
	require.Contains(t, out, "pipeline_run.failed")
	require.Contains(t, out, "dlq.added")
	var ds []protocol.WebhookDelivery
	s.cliJSON(&ds, "webhooks", "deliveries", "ops")
	require.Len(t, ds, 2)
	require.Equal(t, 200, *ds[0].LastStatusCode)

	out = s.cli("webhooks", "resend", "ops", ds[0].ID)
	require.Equal(t, "delivery "+ds[0].ID+" of webhook ops is pending again: it is sent with the same webhook-id\n", out)
	_, _, err := runCmd(t, s.env(), "webhooks", "resend", "ops", ds[0].ID)
	require.ErrorContains(t, err, "409 DELIVERY_PENDING")
	_, _, err = runCmd(t, s.env(), "webhooks", "put", "bad", "--endpoint", rc.URL, "--events", "run.exploded")
	require.ErrorContains(t, err, `unknown event "run.exploded"`)
	_, _, err = runCmd(t, s.env(), "webhooks", "put", "bad", "--events", "dlq.added")
	require.EqualError(t, err, "webhooks put: --endpoint is required")
	_, _, err = runCmd(t, s.env(), "webhooks", "deliveries", "ops", "--status", "lost")
	require.ErrorContains(t, err, "--status must be pending, delivered or dead")

	require.Equal(t, "webhook ops deleted, with its delivery log\n", s.cli("webhooks", "delete", "ops"))
	_, _, err = runCmd(t, s.env(), "webhooks", "get", "ops")
	require.ErrorContains(t, err, "404 WEBHOOK_NOT_FOUND")
	require.Equal(t, "no webhooks\n", s.cli("webhooks", "list"))
}
