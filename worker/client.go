package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// traceContext reads and writes the W3C traceparent and tracestate headers, whatever the
// global propagator is: the orchestrator speaks W3C trace context.
var traceContext propagation.TextMapPropagator = propagation.TraceContext{}

// statusError is an orchestrator's non-2xx answer.
type statusError struct {
	method, path string
	status       int
	body         protocol.ErrorBody
}

func (e *statusError) Error() string {
	msg := e.body.Error
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	if e.body.Code != "" {
		msg += " (" + e.body.Code + ")"
	}
	return fmt.Sprintf("%s %s: orchestrator answered %d: %s", e.method, e.path, e.status, msg)
}

// transient reports whether err is worth retrying: a network failure, a 5xx or a 429.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.status >= 500 || se.status == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled)
}

// statusOf returns the HTTP status of an orchestrator's answer in err, or 0.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

// rawBody is a request body already encoded: post sends its bytes as they are.
type rawBody []byte

// post sends body as JSON (a rawBody as it is) to the orchestrator's path with bearer, and
// decodes a 2xx answer into out (when not nil). A non-2xx answer is a *statusError; for it, out
// is still filled when the body decodes into it (heartbeats answer 409 with a HeartbeatResponse).
func (w *Worker) post(ctx context.Context, path, bearer string, body, out any) error {
	raw, ok := body.(rawBody)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("POST %s: encode body: %w", path, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.orchURL+path, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	// The attempt's trace context, so the orchestrator's spans join the trace.
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("POST %s: read answer: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &statusError{method: http.MethodPost, path: path, status: resp.StatusCode}
		if json.Unmarshal(data, &se.body) != nil {
			se.body.Error = strings.TrimSpace(string(data))
			if len(se.body.Error) > 200 {
				se.body.Error = se.body.Error[:200] + "…"
			}
		}
		if out != nil {
			_ = json.Unmarshal(data, out)
		}
		return se
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("POST %s: decode answer: %w", path, err)
		}
	}
	return nil
}

// postRetrying is post retried with backoff while the failure is transient, up to attempts
// times.
func (w *Worker) postRetrying(ctx context.Context, attempts int, path, bearer string, body, out any) error {
	delay := 200 * time.Millisecond
	for i := 1; ; i++ {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := w.post(rctx, path, bearer, body, out)
		cancel()
		if err == nil || !transient(err) || i == attempts || ctx.Err() != nil {
			return err
		}
		w.log.Warn("orchestrator call failed; retrying", "path", path, "attempt", i, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
