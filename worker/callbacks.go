package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// callbackAnswer is the orchestrator's answer to a callback.
type callbackAnswer struct {
	Applied bool   `json:"applied"`
	Status  string `json:"status"`
}

// callbackBatcher sends the callbacks of attempts that end together in one request, POST
// /api/callbacks, to an orchestrator whose dispatches offer it (callbackBatchMax). It works as
// the orchestrator's group commit does: a callback that ends while fewer than
// maxCallbackRequests of this worker's callback requests are in flight goes at once, alone, on
// POST /api/callback/{runId}, exactly as without batching; those that end while that many are
// in flight wait for one to end and then go together. A lone callback thus waits for nothing,
// and under load one request (and one transaction in the orchestrator) carries many.
//
// A request that hangs (an orchestrator instance that stopped answering, a connection the
// network lost) must not hold up the callbacks behind it for as long as its timeout and
// retries last: callbacks queued for stall go in a request of their own, over the limit.
type callbackBatcher struct {
	w *Worker
	// off: a batch was answered 404 or 405 (an orchestrator without the route); every
	// callback goes alone from then on.
	off atomic.Bool

	mu sync.Mutex
	// stall is how long a callback waits in the queue before it goes whatever is in flight
	// (callbackStall; tests change it).
	stall time.Duration

	// inFlight counts the callback requests in flight (maxCallbackRequests, more while some
	// stall); the sender of each sends the queue when it is over.
	inFlight int
	queue    []*queuedCallback
	// armed: a timer will look at the queue's oldest callback (overdue).
	armed bool
}

// callbackStall is how long a callback waits for the requests in flight before it goes in one
// of its own. A callback request normally takes a few milliseconds (one group commit).
const callbackStall = 250 * time.Millisecond

// maxCallbackRequests is how many callback requests of one worker may be in flight at once.
// Two let one batch gather while the other is applied: with several orchestrator instances
// behind a load balancer, two instances commit at once.
const maxCallbackRequests = 2

// queuedCallback is one attempt's callback waiting for, or in, a batch.
type queuedCallback struct {
	ctx  context.Context
	item protocol.CallbackBatchItem
	max  int // the dispatch's callbackBatchMax
	// taken: in a batch being sent (guarded by callbackBatcher.mu).
	taken  bool
	queued time.Time
	ans    callbackAnswer
	err    error
	done   chan struct{}
}

// send reports the callback body of dispatch d and returns the orchestrator's answer; an error
// answer is an *apiclient.Error, as for a single callback.
func (b *callbackBatcher) send(ctx context.Context, d *protocol.DispatchRequest, body protocol.CallbackRequest) (callbackAnswer, error) {
	if d.CallbackBatchMax < 2 || b.off.Load() {
		return b.single(ctx, d.RunID, d.StorageToken, body)
	}
	b.mu.Lock()
	if b.inFlight < maxCallbackRequests {
		b.inFlight++
		b.mu.Unlock()
		ans, err := b.single(ctx, d.RunID, d.StorageToken, body)
		b.next()
		return ans, err
	}
	q := &queuedCallback{ctx: ctx, max: d.CallbackBatchMax, done: make(chan struct{}), queued: time.Now(),
		item: protocol.CallbackBatchItem{RunID: d.RunID, Token: d.StorageToken, CallbackRequest: body}}
	// The attempt's trace context, which a single callback carries in its headers.
	tc := propagation.MapCarrier{}
	traceContext.Inject(ctx, tc)
	q.item.Traceparent, q.item.Tracestate = tc["traceparent"], tc["tracestate"]
	b.queue = append(b.queue, q)
	b.armLocked()
	b.mu.Unlock()
	select {
	case <-q.done:
	case <-ctx.Done():
		b.mu.Lock()
		if !q.taken {
			b.queue = slices.DeleteFunc(b.queue, func(x *queuedCallback) bool { return x == q })
			b.mu.Unlock()
			return callbackAnswer{}, fmt.Errorf("POST %s: %w", protocol.CallbackBatchPath, ctx.Err())
		}
		b.mu.Unlock()
		<-q.done
	}
	return q.ans, q.err
}

// single sends one callback on its own route, retried while the failure is transient.
func (b *callbackBatcher) single(ctx context.Context, runID, token string, body protocol.CallbackRequest) (callbackAnswer, error) {
	var ans callbackAnswer
	err := b.w.postRetrying(ctx, callbackAttempts, "/api/callback/"+runID, token, body, &ans)
	return ans, err
}

// next sends what queued while a request was in flight, in a goroutine of its own, or marks
// the batcher idle.
func (b *callbackBatcher) next() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.inFlight--
		return
	}
	b.sendLocked()
}

// sendLocked takes a batch off the queue and sends it in a goroutine whose request counts in
// inFlight (the caller's, or one the caller added); b.mu is held.
func (b *callbackBatcher) sendLocked() {
	n := min(len(b.queue), max(b.queue[0].max, 1))
	batch := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n)
	for _, q := range batch {
		q.taken = true
	}
	go func() {
		b.flush(batch)
		b.next()
	}()
}

// armLocked starts a timer for the oldest queued callback's stall, unless one runs or nothing
// waits; b.mu is held.
func (b *callbackBatcher) armLocked() {
	if b.armed || len(b.queue) == 0 {
		return
	}
	b.armed = true
	time.AfterFunc(b.stall-time.Since(b.queue[0].queued), b.overdue)
}

// overdue sends the queue in a request of its own, over the limit, when its oldest callback
// waited stall for the requests in flight to end.
func (b *callbackBatcher) overdue() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	if len(b.queue) > 0 && time.Since(b.queue[0].queued) >= b.stall {
		b.inFlight++
		b.sendLocked()
	}
	b.armLocked()
}

// flush sends batch and answers each of its callbacks. When the batch as a whole fails, or one
// of its callbacks gets a transient answer (429, 5xx), those callbacks are sent again alone.
func (b *callbackBatcher) flush(batch []*queuedCallback) {
	var alone []*queuedCallback
	if len(batch) == 1 {
		alone = batch
	} else {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), callbackBudget)
		defer cancel()
		req := protocol.CallbackBatchRequest{Callbacks: make([]protocol.CallbackBatchItem, len(batch))}
		for i, q := range batch {
			req.Callbacks[i] = q.item
		}
		var resp protocol.CallbackBatchResponse
		err := b.w.postRetrying(ctx, callbackAttempts, protocol.CallbackBatchPath, batch[0].item.Token, req, &resp)
		if err == nil && len(resp.Results) != len(batch) {
			err = fmt.Errorf("POST %s: %d results for %d callbacks", protocol.CallbackBatchPath, len(resp.Results), len(batch))
		}
		if err != nil {
			if s := apiclient.StatusOf(err); s == http.StatusNotFound || s == http.StatusMethodNotAllowed {
				b.off.Store(true)
			}
			b.w.log.Warn("the batch callback failed; sending its callbacks one by one", "callbacks", len(batch), "err", err)
			alone = batch
		} else {
			for i, r := range resp.Results {
				q := batch[i]
				if r.HTTPStatus == http.StatusOK {
					q.ans = callbackAnswer{Applied: r.Applied != nil && *r.Applied, Status: r.Status}
					close(q.done)
					continue
				}
				var details json.RawMessage
				if r.Details != nil {
					details, _ = json.Marshal(r.Details)
				}
				err := &apiclient.Error{Method: http.MethodPost, Path: "/api/callback/" + q.item.RunID,
					Status: r.HTTPStatus, Code: r.Code, Message: r.Error, Details: details}
				if apiclient.Transient(err) {
					alone = append(alone, q) // as a single callback would be retried
					continue
				}
				q.err = fmt.Errorf("POST %s: %w", protocol.CallbackBatchPath, err)
				close(q.done)
			}
		}
	}
	var wg sync.WaitGroup
	for _, q := range alone {
		wg.Go(func() {
			defer close(q.done)
			q.ans, q.err = b.single(q.ctx, q.item.RunID, q.item.Token, q.item.CallbackRequest)
		})
	}
	wg.Wait()
}
