package worker

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pipeweave/pipeweave/core/apiclient"
)

// traceContext reads and writes the W3C traceparent and tracestate headers, whatever the
// global propagator is: the orchestrator speaks W3C trace context.
var traceContext propagation.TextMapPropagator = propagation.TraceContext{}

// post sends body as JSON (a json.RawMessage as it is) to the orchestrator's path with bearer,
// and decodes the answer into out (when not nil). An error answer is an *apiclient.Error.
func (w *Worker) post(ctx context.Context, path, bearer string, body, out any) error {
	if _, err := w.api.WithToken(bearer).Post(ctx, path, body, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}

// postRetrying is post retried while the failure is transient (apiclient.Retry), up to
// attempts times, each call within 60 s.
func (w *Worker) postRetrying(ctx context.Context, attempts int, path, bearer string, body, out any) error {
	return apiclient.Retry(ctx, attempts, func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return w.post(rctx, path, bearer, body, out)
	}, func(n int, err error, _ time.Duration) {
		w.log.Warn("orchestrator call failed; retrying", "path", path, "attempt", n, "err", err)
	})
}
