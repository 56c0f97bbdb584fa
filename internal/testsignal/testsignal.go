// Package testsignal lets a loop tell a test that it reached a step, so that the test waits
// for the step instead of polling for its effects (the pattern of River's internal/testsignal).
// A Signal that Init was not called on costs one nil check and signals nothing: production
// code leaves it so.
package testsignal

import "time"

// bufferSize bounds the signals a test has not read yet; further ones are dropped.
const bufferSize = 1000

// waitLimit is how long Wait waits before it fails the test: generous, since it checks that a
// step happens, never how fast.
const waitLimit = 30 * time.Second

// TB is the part of testing.TB that Wait needs (this package does not import testing, so that
// the binaries linking it do not).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Signal carries values of T from a loop to a test. The zero value is off.
type Signal[T any] struct {
	ch chan T
}

// Init turns the signal on; call it before the loop starts.
func (s *Signal[T]) Init() { s.ch = make(chan T, bufferSize) }

// Send signals v if the signal is on, without ever blocking: when the test has not read
// bufferSize signals, v is dropped.
func (s *Signal[T]) Send(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// Wait returns the next value signalled, and fails the test when none comes within a
// generous limit.
func (s *Signal[T]) Wait(tb TB) T {
	tb.Helper()
	select {
	case v := <-s.ch:
		return v
	case <-time.After(waitLimit):
		tb.Fatalf("timed out waiting for a test signal")
		var zero T
		return zero
	}
}

// Drain discards the values signalled so far.
func (s *Signal[T]) Drain() {
	for {
		select {
		case <-s.ch:
		default:
			return
		}
	}
}
