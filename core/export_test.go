package core

import (
	"context"
	"github.com/pipeweave/pipeweave/core/internal/engine"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testsignal"
)

// LoopSignals turns on o's loop signals; call it before Run. Listening waits until the loop's
// LISTEN connection is in place; Pass returns how many runs the next pass of the loop claimed;
// FirePass returns how many slots the next pass of the schedule firer fired; DrainPasses
// forgets the passes signalled so far.
func (o *Orchestrator) LoopSignals() LoopSignals {
	o.signals.listening.Init()
	o.signals.pass.Init()
	o.signals.firePass.Init()
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

// FirePass waits for the next pass of the schedule firer and returns how many slots it fired.
func (s LoopSignals) FirePass(tb testsignal.TB) int {
	tb.Helper()
	return s.o.signals.firePass.Wait(tb)
}

// DrainPasses forgets the passes signalled so far.
func (s LoopSignals) DrainPasses() { s.o.signals.pass.Drain() }

// EngineSignals turns on the signals of o's engine commits; call it before o serves a request
// or runs its loop.
func (o *Orchestrator) EngineSignals() EngineSignals {
	o.signals.engine.RunStatus.Init()
	o.signals.engine.PipelineEnded.Init()
	return EngineSignals{o}
}

// ShareEngineSignals makes o signal its engine's commits to the EngineSignals of first, an
// instance on the same database (any instance may commit what a test waits for); call it
// before o serves a request or runs its loop.
func (o *Orchestrator) ShareEngineSignals(first *Orchestrator) EngineSignals {
	o.signals.engine = first.signals.engine // the channels are shared
	return EngineSignals{first}
}

// EngineSignals waits for an orchestrator's engine commits.
type EngineSignals struct{ o *Orchestrator }

// RunStatus waits for the next commit that moved a task run on (a callback, a dispatch, the
// sweep) and returns the run and the status it left it in.
func (s EngineSignals) RunStatus(tb testsignal.TB) (string, protocol.TaskRunStatus) {
	tb.Helper()
	v := s.o.signals.engine.RunStatus.Wait(tb)
	return v.ID, v.Status
}

// PipelineEnded waits for the next commit that ended a pipeline run and returns the run and
// its final status.
func (s EngineSignals) PipelineEnded(tb testsignal.TB) (string, protocol.PipelineRunStatus) {
	tb.Helper()
	v := s.o.signals.engine.PipelineEnded.Wait(tb)
	return v.ID, v.Status
}

// Drain forgets the commits signalled so far, so that a wait that reads the state after it
// waits only for later commits (and the signals a test never read cannot fill the buffer).
func (s EngineSignals) Drain() {
	s.o.signals.engine.RunStatus.Drain()
	s.o.signals.engine.PipelineEnded.Drain()
}

// SetWebhookClock makes o's webhook delivery statements use now (engine.SetWebhookClock).
func (o *Orchestrator) SetWebhookClock(now func() time.Time) { o.eng.SetWebhookClock(now) }

// ClaimWebhookDeliveries claims up to n due deliveries and sends none of them, as an instance
// that dies after its claim; it returns their ids.
func (o *Orchestrator) ClaimWebhookDeliveries(ctx context.Context, n int) ([]string, error) {
	claimed, err := o.eng.ClaimWebhookDeliveries(ctx, n)
	ids := make([]string, len(claimed))
	for i, c := range claimed {
		ids[i] = c.ID
	}
	return ids, err
}

// DeliverWebhooks sends due webhook deliveries once (engine.DeliverWebhooks) and returns how
// many attempts it made.
func (o *Orchestrator) DeliverWebhooks(ctx context.Context) (int, error) {
	s, err := o.eng.DeliverWebhooks(ctx, 0, 0)
	return s.Delivered + s.Failed + s.Dead, err
}

// SignWebhookForTest is the engine's webhook signer (engine.SignWebhook).
func SignWebhookForTest(secret, id, timestamp string, body []byte) (string, error) {
	return engine.SignWebhook(secret, id, timestamp, body)
}
