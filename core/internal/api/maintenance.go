package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/wire"
)

// maintenanceCommand is the body of POST /api/maintenance/enter and /exit: nothing, or {}.
type maintenanceCommand struct{}

// maintenance serves GET /api/maintenance.
func (s *Server) maintenance(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Maintenance(r.Context())
	answer(s, w, r, http.StatusOK, st, err, wire.MaintenanceStatus)
}

// maintenanceEnter serves POST /api/maintenance/enter: running → waiting_for_maintenance (or
// maintenance at once when nothing is in flight); 409 MAINTENANCE_STATE from another mode.
func (s *Server) maintenanceEnter(w http.ResponseWriter, r *http.Request) {
	if !s.decodeOptional(w, r) {
		return
	}
	st, err := s.eng.EnterMaintenance(r.Context())
	answer(s, w, r, http.StatusOK, st, err, wire.MaintenanceStatus)
}

// maintenanceExit serves POST /api/maintenance/exit: waiting_for_maintenance or maintenance →
// running; 409 MAINTENANCE_STATE while running. The work that waited is dispatched at once.
func (s *Server) maintenanceExit(w http.ResponseWriter, r *http.Request) {
	if !s.decodeOptional(w, r) {
		return
	}
	st, err := s.eng.ExitMaintenance(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Ready(r.Context())
	writeJSON(w, http.StatusOK, wire.MaintenanceStatus(st))
}

// decodeOptional accepts an empty body or an empty JSON object; anything else is a 400.
func (s *Server) decodeOptional(w http.ResponseWriter, r *http.Request) bool {
	br := bufio.NewReader(r.Body)
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		return true
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{br, r.Body}
	// A pointer, so that a JSON null (which would leave a struct untouched) is told apart.
	var cmd *maintenanceCommand
	if !s.decodeStrict(w, r, &cmd) {
		return false
	}
	if cmd == nil {
		writeErr(w, http.StatusBadRequest, "INVALID_FIELD", "the body must be empty or a JSON object", nil)
		return false
	}
	return true
}

// healthMaintenance is the maintenance part of GET /health: the mode and when it changed
// ("unknown" when it cannot be read although the database answers).
func (s *Server) healthMaintenance(ctx context.Context) map[string]any {
	m, err := s.eng.SettleMaintenance(ctx)
	if err != nil {
		s.log.Warn("health: reading the maintenance mode failed", "err", err)
		return map[string]any{"mode": "unknown"}
	}
	out := map[string]any{"mode": m.Mode}
	if !m.ModeChangedAt.IsZero() {
		out["modeChangedAt"] = m.ModeChangedAt.Format(time.RFC3339Nano)
	}
	return out
}
