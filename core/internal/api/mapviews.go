package api

import (
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// pipelineRun serves GET /api/runs/{id}: the run with every task run, or with items=false
// without the items of map nodes (their counts are in maps). Any other items value is a 400
// INVALID_ITEMS.
func (s *Server) pipelineRun(w http.ResponseWriter, r *http.Request) {
	read := s.eng.GetPipelineRun
	switch r.URL.Query().Get("items") {
	case "", "true":
	case "false":
		read = s.eng.GetPipelineRunNodes
	default:
		s.fail(w, r, &engine.Error{Kind: engine.ErrInvalid, Code: "INVALID_ITEMS",
			Msg: "items must be true (every task run, the default) or false (map nodes' items left out, counted in maps)"})
		return
	}
	run, err := read(r.Context(), r.PathValue("id"))
	answer(s, w, r, http.StatusOK, run, err, wire.PipelineRun)
}

// mapItems serves GET /api/runs/{id}/maps/{taskId}/items: a page of a map node's items in
// index order (status, limit, cursor).
func (s *Server) mapItems(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	p, err := s.eng.MapItems(r.Context(), r.PathValue("id"), r.PathValue("taskId"),
		engine.MapItemsFilter{Status: q.Get("status"), Cursor: q.Get("cursor"), Limit: limit})
	answer(s, w, r, http.StatusOK, p, err, func(p engine.Page[protocol.MapItem]) protocol.Page[protocol.MapItem] {
		return protocol.Page[protocol.MapItem]{Items: p.Items, NextCursor: p.NextCursor}
	})
}
