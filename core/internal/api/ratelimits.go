package api

import (
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// rateLimitBody is the body of PUT /api/rate-limits/{key}. The pointers tell a missing field
// (400 naming it) from a zero one (400 too, with the range).
type rateLimitBody struct {
	Limit    *int   `json:"limit"`
	PeriodMs *int64 `json:"periodMs"`
}

// putRateLimit serves PUT /api/rate-limits/{key}: creates or replaces a named rate limit.
func (s *Server) putRateLimit(w http.ResponseWriter, r *http.Request) {
	var body rateLimitBody
	if !s.decodeStrict(w, r, &body) {
		return
	}
	switch {
	case body.Limit == nil:
		s.fail(w, r, &engine.Error{Kind: engine.ErrInvalid, Code: "INVALID_RATE_LIMIT", Msg: "limit is required",
			Details: map[string]string{"field": "limit"}})
		return
	case body.PeriodMs == nil:
		s.fail(w, r, &engine.Error{Kind: engine.ErrInvalid, Code: "INVALID_RATE_LIMIT_PERIOD", Msg: "periodMs is required",
			Details: map[string]string{"field": "periodMs"}})
		return
	}
	out, err := s.eng.PutRateLimit(r.Context(), r.PathValue("key"), *body.Limit, *body.PeriodMs)
	s.reply(w, r, http.StatusOK, out, err)
}

// getRateLimit serves GET /api/rate-limits/{key}.
func (s *Server) getRateLimit(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.RateLimit(r.Context(), r.PathValue("key"))
	s.reply(w, r, http.StatusOK, out, err)
}

// listRateLimits serves GET /api/rate-limits: the named rate limits in key order (at most
// engine.RateLimitPage).
func (s *Server) listRateLimits(w http.ResponseWriter, r *http.Request) {
	out, err := s.eng.RateLimits(r.Context())
	s.reply(w, r, http.StatusOK, protocol.RateLimitList{RateLimits: out}, err)
}

// deleteRateLimit serves DELETE /api/rate-limits/{key} (no body, or {}).
func (s *Server) deleteRateLimit(w http.ResponseWriter, r *http.Request) {
	if err := s.eng.DeleteRateLimit(r.Context(), r.PathValue("key")); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": true, "key": r.PathValue("key")})
}
