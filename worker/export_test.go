package worker

import "time"

// QueuedCallbacks is how many callbacks wait for the batch callback request in flight (tests
// wait on it).
func (w *Worker) QueuedCallbacks() int {
	w.callbacks.mu.Lock()
	defer w.callbacks.mu.Unlock()
	return len(w.callbacks.queue)
}

// MaxCallbackRequests is how many callback requests of a worker may be in flight at once.
func MaxCallbackRequests() int { return maxCallbackRequests }

// SetCallbackStall sets how long a queued callback waits for the requests in flight before it
// goes in a request of its own (callbackStall); set it before the worker runs attempts.
func (w *Worker) SetCallbackStall(d time.Duration) {
	w.callbacks.mu.Lock()
	defer w.callbacks.mu.Unlock()
	w.callbacks.stall = d
}
