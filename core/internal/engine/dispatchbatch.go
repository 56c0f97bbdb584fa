package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// Batch dispatch (docs/protocol.md, Batch dispatch): a worker that said at registration that it
// takes several dispatches in one request (dispatchBatchMax) gets the runs a claim took for it
// in POST {baseUrl}/tasks, each answered as its single dispatch would be. Every other worker
// gets one POST {baseUrl}/tasks/{taskId} per run.
const (
	// maxDispatchBatch caps the dispatches of one request, whatever a worker said.
	maxDispatchBatch = 256
	// maxDispatchBatchBytes caps a batch's estimated body: a batch is cut before a dispatch
	// would take it past this, and a dispatch that is larger alone goes alone.
	maxDispatchBatchBytes = 4 << 20
	// dispatchOverhead estimates the bytes of a dispatch besides its inline payloads (ids,
	// run token, paths).
	dispatchOverhead = 2 << 10
	// maxDispatchBatchAnswer caps the body of a batch dispatch's answer that is read.
	maxDispatchBatchAnswer = maxDispatchBatch << 10
	// noBatchRouteFor is how long this instance sends a worker's runs alone after the worker
	// answered a batch dispatch 404 or 405, rather than try a batch on every claim.
	noBatchRouteFor = 5 * time.Minute
)

// batchRouteOff reports whether the worker at base answered a batch dispatch 404 or 405 within
// noBatchRouteFor.
func (e *Engine) batchRouteOff(base string) bool {
	at, ok := e.noBatchRoute.Load(base)
	if !ok {
		return false
	}
	if time.Since(at.(time.Time)) < noBatchRouteFor {
		return true
	}
	e.noBatchRoute.CompareAndDelete(base, at)
	return false
}

// dispatchBatchMax is the dispatchBatchMax stored for a registration that said advertised: 0
// (one dispatch per request) in compat mode, whose dispatches are upstream's, and below 2.
func (e *Engine) dispatchBatchMax(advertised int) int {
	if e.cfg.Compat || advertised < 2 {
		return 0
	}
	return min(advertised, maxDispatchBatch)
}

// send dispatches every claimed run at once, those whose workers take batches in batches, and
// returns each run's result (results[i] is claimed[i]'s).
func (e *Engine) send(ctx context.Context, claimed []Claimed) []result {
	results := make([]result, len(claimed))
	var wg sync.WaitGroup
	alone := func(i int) { wg.Go(func() { results[i] = e.dispatchOne(ctx, claimed[i]) }) }
	type target struct {
		url string
		max int
	}
	var groups map[target][]int
	for i, c := range claimed {
		if c.DispatchBatchMax < 2 || e.cfg.Compat {
			alone(i)
			continue
		}
		if groups == nil {
			groups = map[target][]int{}
		}
		k := target{c.BaseURL, min(c.DispatchBatchMax, maxDispatchBatch)}
		groups[k] = append(groups[k], i)
	}
	for k, idx := range groups {
		off := e.batchRouteOff(k.url)
		for _, batch := range cutBatches(claimed, idx, k.max) {
			if off || len(batch) == 1 {
				for _, i := range batch {
					alone(i)
				}
				continue
			}
			wg.Go(func() { e.dispatchBatch(ctx, claimed, batch, results) })
		}
	}
	wg.Wait()
	return results
}

// cutBatches cuts idx (indexes into claimed) into batches of at most limit dispatches and
// maxDispatchBatchBytes estimated bytes each.
func cutBatches(claimed []Claimed, idx []int, limit int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for _, i := range idx {
		n := estimateDispatch(claimed[i])
		if len(cur) > 0 && (len(cur) == limit || size+n > maxDispatchBatchBytes) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur, size = append(cur, i), size+n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// estimateDispatch estimates the encoded size of c's dispatch: its inline payloads and the rest.
func estimateDispatch(c Claimed) int {
	n := dispatchOverhead + len(c.Input) + 256*len(c.PreviousAttempts)
	for _, u := range c.Upstream {
		n += len(u.Output) + len(u.OutputPath) + 128 + 256*len(u.Assets)
	}
	return n
}

// dispatchBatch sends the dispatches of claimed[i] for i in batch (one worker's) in one POST
// {baseUrl}/tasks and sets results[i] from each one's answer. A worker that answers 404 or 405
// (no batch route after all) gets them one by one; an answer that cannot be read fails them
// all, as a single dispatch without a readable answer fails.
func (e *Engine) dispatchBatch(ctx context.Context, claimed []Claimed, batch []int, results []result) {
	start := time.Now()
	items := make([]protocol.DispatchBatchItem, 0, len(batch))
	sent := make([]int, 0, len(batch)) // the indexes of items
	// each sets the result of every sent dispatch to f's.
	each := func(f func(Claimed) result) {
		for _, i := range sent {
			results[i] = f(claimed[i])
		}
	}
	spans := make(map[int]trace.Span, len(batch))
	defer func() {
		for i, span := range spans {
			endDispatchSpan(span, results[i])
		}
	}()
	base := claimed[batch[0]].BaseURL
	if err := checkBaseURL(base); err != nil {
		for _, i := range batch {
			results[i] = e.badBaseURL(claimed[i], err)
		}
		return
	}
	for _, i := range batch {
		c := claimed[i]
		item := protocol.DispatchBatchItem{Traceparent: c.Traceparent}
		if e.tracing {
			sctx, span := e.startDispatchSpan(ctx, c, attribute.Int("pipeweave.dispatch_batch", len(batch)))
			spans[i] = span
			carrier := propagation.MapCarrier{}
			telemetry.Propagator.Inject(sctx, carrier)
			item.Traceparent, item.Tracestate = carrier["traceparent"], carrier["tracestate"]
		}
		tok, err := e.runToken(c)
		if err != nil {
			results[i] = e.failDispatch(c, telemetry.ReasonToken, "could not make the run token: "+err.Error())
			continue
		}
		item.DispatchRequest = e.dispatchRequest(c, tok)
		items = append(items, item)
		sent = append(sent, i)
	}
	if len(items) == 0 {
		return
	}
	defer func() {
		d := time.Since(start).Seconds()
		for _, i := range sent {
			e.metrics.DispatchDuration.WithLabelValues(results[i].outcome.name()).Observe(d)
		}
	}()
	body, err := json.Marshal(protocol.DispatchBatchRequest{Dispatches: items})
	if err != nil {
		each(func(c Claimed) result {
			return e.failDispatch(c, telemetry.ReasonEncode, "encode dispatch: "+err.Error())
		})
		return
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DispatchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodPost, base+protocol.DispatchBatchPath, bytes.NewReader(body))
	if err != nil {
		each(func(c Claimed) result {
			return e.failDispatch(c, telemetry.ReasonEncode, "build dispatch request: "+err.Error())
		})
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		for _, i := range sent {
			if span, ok := spans[i]; ok {
				span.RecordError(err)
			}
		}
		each(func(c Claimed) result { return e.transportFailure(c, err) })
		return
	}
	answer, rerr := io.ReadAll(io.LimitReader(resp.Body, maxDispatchBatchAnswer+1))
	_ = resp.Body.Close()
	for _, span := range spans {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		// Not taken: the worker has no batch route after all (say, an older version behind the
		// same base URL). Each goes alone; their leases are still current.
		e.log.Info("the worker has no batch dispatch route; dispatching its runs one by one for a while", "baseUrl", base, "status", resp.Status)
		e.noBatchRoute.Store(base, time.Now())
		var wg sync.WaitGroup
		for _, i := range sent {
			wg.Go(func() { results[i] = e.dispatchOne(ctx, claimed[i]) })
		}
		wg.Wait()
		sent = nil // dispatchOne observed them
		return
	case resp.StatusCode != http.StatusOK:
		// The whole request's answer is each dispatch's (429/503: back pressure).
		each(func(c Claimed) result {
			return e.statusResult(c, resp.StatusCode, resp.Status, resp.Header.Get("Location"))
		})
		return
	}
	var out protocol.DispatchBatchResponse
	switch {
	case rerr != nil:
		err = rerr
	case len(answer) > maxDispatchBatchAnswer:
		err = fmt.Errorf("the answer is larger than %d bytes", maxDispatchBatchAnswer)
	default:
		err = json.Unmarshal(answer, &out)
	}
	if err == nil && len(out.Results) != len(sent) {
		err = fmt.Errorf("%d results for %d dispatches", len(out.Results), len(sent))
	}
	for k := 0; err == nil && k < len(sent); k++ {
		if out.Results[k].RunID != claimed[sent[k]].RunID {
			err = fmt.Errorf("result %d is for run %q, not %q", k, out.Results[k].RunID, claimed[sent[k]].RunID)
		}
	}
	if err != nil {
		// Some may have started; a new attempt fences their callbacks out (their lease).
		each(func(c Claimed) result {
			r := e.failDispatch(c, telemetry.ReasonStatus, "worker answered the batch dispatch with an answer that cannot be read")
			r.detail = r.err + ": " + err.Error()
			return r
		})
		return
	}
	for k, i := range sent {
		st := out.Results[k].HTTPStatus
		r := e.statusResult(claimed[i], st, fmt.Sprintf("%d %s", st, http.StatusText(st)), "")
		if msg := out.Results[k].Error; msg != "" && r.outcome == dispatchFailed {
			r.detail = fmt.Sprintf("%s (%s: %.200s)", r.err, out.Results[k].Code, msg) // logged, not stored
		}
		results[i] = r
	}
}
