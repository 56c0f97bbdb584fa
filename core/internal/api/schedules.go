package api

import (
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// putSchedule serves PUT /api/schedules/{id}: 201 when it made the schedule, 200 when it
// replaced one. Fields the body does not define are refused (a misspelt catchUp would silently
// change what fires).
func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) {
	var req protocol.ScheduleRequest
	if !s.decodeStrict(w, r, &req) {
		return
	}
	out, created, err := s.eng.PutSchedule(r.Context(), r.PathValue("id"), wire.FromScheduleRequest(req))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	answer(s, w, r, status, out, err, wire.Schedule)
}

// deleteSchedule serves DELETE /api/schedules/{id}.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.eng.DeleteSchedule(r.Context(), id)
	s.reply(w, r, http.StatusOK, map[string]any{"deleted": true, "scheduleId": id}, err)
}
