package api

import (
	"context"
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
)

// pauseTask serves POST /api/tasks/{id}/pause and, with resume, /resume. The body is empty or
// an empty JSON object. A resume makes the task's waiting runs ready.
func (s *Server) pauseTask(set func(context.Context, string) (engine.TaskPause, error), resume bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.decodeOptional(w, r) {
			return
		}
		p, err := set(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if resume {
			s.opts.Ready(r.Context())
		}
		writeJSON(w, http.StatusOK, wire.TaskPause(p))
	}
}
