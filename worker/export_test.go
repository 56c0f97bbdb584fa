package worker

// QueuedCallbacks is how many callbacks wait for the batch callback request in flight (tests
// wait on it).
func (w *Worker) QueuedCallbacks() int {
	w.callbacks.mu.Lock()
	defer w.callbacks.mu.Unlock()
	return len(w.callbacks.queue)
}

// MaxCallbackRequests is how many callback requests of a worker may be in flight at once.
func MaxCallbackRequests() int { return maxCallbackRequests }
