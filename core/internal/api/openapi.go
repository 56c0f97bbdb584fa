package api

import (
	_ "embed"
	"net/http"
	"slices"
)

// openAPI is the OpenAPI 3 document of this API, served at GET /api/openapi.json. A test keeps
// its paths and methods equal to the routes the server registers.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI answers the OpenAPI document. It is open: the document holds no secrets.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// Routes returns the route patterns the server registered ("METHOD /path"), in order, without
// the catch-all that answers unknown routes.
func (s *Server) Routes() []string {
	return slices.Clone(s.patterns)
}
