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

// listSchedules serves GET /api/schedules?cursor=&limit=.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.eng.Schedules(r.Context(), r.URL.Query().Get("cursor"), limit)
	answer(s, w, r, http.StatusOK, l, err, wire.Schedules)
}

// deleteSchedule serves DELETE /api/schedules/{id}.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.eng.DeleteSchedule(r.Context(), id)
	s.reply(w, r, http.StatusOK, map[string]any{"deleted": true, "scheduleId": id}, err)
}
