package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// register serves POST /api/register (docs/protocol.md, "Registration"). The registration
// token is checked from the header alone before the body is read: it must be signed with the
// service key of the service its sub names (under the current or the previous secret). Then
// the body must be the one the token was signed for (its bsh claim) and name that service.
// In compat mode a registration without a token is accepted unauthenticated.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req protocol.RegisterRequest
	tok := bearer(r)
	if tok == "" && s.opts.Compat {
		if !s.decode(w, r, &req) || s.registrationTooBig(w, &req) {
			return
		}
		resp, err := s.eng.Register(r.Context(), &req, "")
		s.reply(w, r, http.StatusOK, resp, err)
		return
	}
	if tok == "" {
		s.fail(w, r, engine.Unauthorized("registration needs a token signed with the service's key: Authorization: Bearer <jwt>"))
		return
	}
	claims, err := s.keys.VerifyRegistration(tok, s.opts.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		s.fail(w, r, engine.Unauthorized("the registration token has expired"))
		return
	case errors.Is(err, token.ErrWrongKey):
		// The usual cause: the worker's key was made from another secret than the
		// orchestrator's (or for another service).
		s.fail(w, r, engine.Unauthorized("the registration token is not valid: the worker's service key "+
			"does not match the key this orchestrator derives from its secret (PIPEWEAVE_SECRET_KEY) for service %q; "+
			"give the worker (PIPEWEAVE_SERVICE_KEY) what `pipeweave token service --service %q` prints "+
			"with the orchestrator's secret", claims.ServiceID, claims.ServiceID))
		return
	case err != nil:
		s.fail(w, r, engine.Unauthorized("the registration token is not valid: it must be signed with the registration key of the service it names (protocol v2)"))
		return
	}
	// A valid token: the body is read in the authenticated pool (bodygate.go), so slow
	// unauthenticated registrations cannot hold up a real worker's.
	markAuthenticated(r)
	// The body, read whole (within the body cap) to check the bytes the token was signed for.
	data, readErr := io.ReadAll(r.Body)
	if readErr != nil {
		// decode answers a read error (413, truncated body) as for any other route.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), errReader{readErr}))
		s.decode(w, r, &req)
		return
	}
	if err := claims.CheckBody(data); err != nil {
		s.fail(w, r, &engine.Error{Kind: engine.ErrUnauthorized, Code: "REGISTRATION_BODY_MISMATCH",
			Msg: "the registration body is not the one the token was signed for (its bsh claim is the SHA-256 of the exact body bytes)"})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	if !s.decode(w, r, &req) || s.registrationTooBig(w, &req) {
		return
	}
	if req.ServiceID != claims.ServiceID {
		s.fail(w, r, &engine.Error{Kind: engine.ErrUnauthorized, Code: "SERVICE_MISMATCH",
			Msg: "the registration token was issued for another service"})
		return
	}
	resp, err := s.eng.Register(r.Context(), &req, claims.KeyID)
	s.reply(w, r, http.StatusOK, resp, err)
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
