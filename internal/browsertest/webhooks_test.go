package browsertest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The webhooks page lists the webhooks without their secrets and a webhook's deliveries; a
// delivered one is re-sent from it, and shows pending until the next process sends it.
func TestWebhooksPage(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	var got atomic.Int32
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	t.Cleanup(rc.Close)
	var created struct {
		Secret string `json:"secret"`
	}
	require.Equal(t, http.StatusCreated, s.api("PUT", "/api/webhooks/ops", map[string]any{"url": rc.URL, "events": []string{"pipeline_run.completed"}}, &created))
	s.waitRun(s.trigger(map[string]any{"doc": "one"}), "completed")
	require.Equal(t, http.StatusOK, s.api("POST", "/api/process", nil, nil))
	require.EqualValues(t, 1, got.Load())

	b := newBrowser(t, s.url)
	b.open("/webhooks")
	b.wait(`[data-testid="webhook-row"][data-webhook-id="ops"]`)
	require.NotContains(t, b.text(`[data-testid="webhook-table"]`), created.Secret)
	b.click(`[data-testid="webhook-row"][data-webhook-id="ops"] [data-testid="webhook-show"]`)
	b.wait(`[data-testid="delivery-row"][data-state="delivered"]`)
	require.Contains(t, b.text(`[data-testid="delivery-table"]`), "pipeline_run.completed")
	b.screenshot("webhooks")
	b.click(`[data-testid="delivery-resend"]`)
	b.wait(`[data-testid="delivery-resend-ok"]`)
	b.wait(`[data-testid="delivery-row"][data-state="pending"]`)
	b.gone(`[data-testid="delivery-resend"]`)
	require.Equal(t, http.StatusOK, s.api("POST", "/api/process", nil, nil))
	require.EqualValues(t, 2, got.Load())
	b.route("/webhooks?id=ops&again=1")
	b.wait(`[data-testid="delivery-row"][data-state="delivered"]`)
}
