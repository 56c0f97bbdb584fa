package core

import "github.com/pipeweave/pipeweave/internal/testsignal"

// LoopSignals turns on o's loop signals; call it before Run. Listening waits until the loop's
// LISTEN connection is in place; Pass returns how many runs the next pass of the loop claimed;
// DrainPasses forgets the passes signalled so far.
func (o *Orchestrator) LoopSignals() LoopSignals {
	o.signals.listening.Init()
	o.signals.pass.Init()
	return LoopSignals{o}
}

// LoopSignals waits for the steps of an orchestrator's standalone loop.
type LoopSignals struct{ o *Orchestrator }

// Listening waits until the loop's LISTEN connection is in place.
func (s LoopSignals) Listening(tb testsignal.TB) {
	tb.Helper()
	s.o.signals.listening.Wait(tb)
}

// Pass waits for the next pass of the loop and returns how many runs it claimed.
func (s LoopSignals) Pass(tb testsignal.TB) int {
	tb.Helper()
	return s.o.signals.pass.Wait(tb)
}

// DrainPasses forgets the passes signalled so far.
func (s LoopSignals) DrainPasses() { s.o.signals.pass.Drain() }
