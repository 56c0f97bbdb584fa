package apiclient

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// The retry policy of the project's clients: what is worth repeating (Transient) and how long
// to wait before each repeat (Backoff).

// Transient reports whether err may go away by itself, so that the call is worth repeating:
// the orchestrator gave no answer (unreachable, or the call's own deadline passed), or it
// answered 429 or a 5xx (it restarts, its database is away for a moment, a proxy in front of
// it has no upstream). A cancelled call is not transient.
func Transient(err error) bool {
	var e *Error
	var unreachable *UnreachableError
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &e):
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	case errors.As(err, &unreachable):
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// Backoff is the wait before repeat n (1 for the first): 200 ms, doubling up to 5 s.
func Backoff(n int) time.Duration {
	d := 200 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// Retry calls call until it succeeds, fails with an error that is not Transient, has been
// called attempts times (0: no limit) or ctx ends, waiting Backoff between calls. onRetry, when
// not nil, is told of each failure that is retried and the wait before the next call. It
// returns the last call's error.
func Retry(ctx context.Context, attempts int, call func(context.Context) error, onRetry func(n int, err error, wait time.Duration)) error {
	for n := 1; ; n++ {
		err := call(ctx)
		if err == nil || !Transient(err) || n == attempts || ctx.Err() != nil {
			return err
		}
		wait := Backoff(n)
		if onRetry != nil {
			onRetry(n, err, wait)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
