package engine

import (
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testsignal"
)

// Signals tell a test what the engine committed, so that it waits for a commit instead of
// polling for its effects (package testsignal). The zero value is off: each Send is then one
// nil check.
type Signals struct {
	// RunStatus: a commit moved a task run on: a worker's callback was applied (completed;
	// pending when retried; failed), a dispatch was acknowledged (running, unless the callback
	// came first), pushed back (pending) or failed, or the sweep ended an expired attempt.
	RunStatus testsignal.Signal[RunStatus]
	// PipelineEnded: a commit (a callback's, a failed dispatch's or the sweep's) ended a
	// pipeline run.
	PipelineEnded testsignal.Signal[PipelineEnded]
}

// RunStatus is the status a commit left a task run in.
type RunStatus struct {
	ID     string
	Status protocol.TaskRunStatus
}

// PipelineEnded is the final status a commit gave a pipeline run.
type PipelineEnded struct {
	ID     string
	Status protocol.PipelineRunStatus
}

// signalEnded signals the pipeline runs of runs that the committed transaction ended.
func (s *Signals) signalEnded(runs map[string]*lockedRun) {
	for _, r := range runs {
		if r.ended {
			s.PipelineEnded.Send(PipelineEnded{ID: r.id, Status: r.status})
		}
	}
}
