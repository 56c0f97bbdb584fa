package api

import (
	"context"
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
)

// pauseTask serves POST /api/tasks/{id}/pause and, with resume, /resume.
func (s *Server) pauseTask(set func(context.Context, string) (engine.TaskPause, error), resume bool) http.HandlerFunc {
	return pauseHandler(s, set, resume, wire.TaskPause)
}

// pausePipeline serves POST /api/pipelines/{id}/pause and, with resume, /resume.
func (s *Server) pausePipeline(set func(context.Context, string) (engine.PipelinePause, error), resume bool) http.HandlerFunc {
	return pauseHandler(s, set, resume, wire.PipelinePause)
}

// pauseHandler serves a pause or a resume of what {id} names: the body is empty or an empty
// JSON object, and a resume makes the waiting work ready.
func pauseHandler[T, W any](s *Server, set func(context.Context, string) (T, error), resume bool, toWire func(T) W) http.HandlerFunc {
	return s.bodiless(func(w http.ResponseWriter, r *http.Request) {
		p, err := set(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if resume {
			s.opts.Ready(r.Context())
		}
		writeJSON(w, http.StatusOK, toWire(p))
	})
}
