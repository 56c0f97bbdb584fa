package api

import (
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Request guards that run before any route reads a body: the Host check (421), which defeats
// DNS rebinding, and the Content-Type check of mutating requests (415), which defeats the
// cross-site "simple request" (a page's no-cors POST with text/plain, form-urlencoded or
// multipart, which a browser sends without asking the server first).

// guard answers a request that fails a guard and returns false.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) bool {
	if !s.hostAllowed(r) {
		writeErr(w, http.StatusMisdirectedRequest, "MISDIRECTED_REQUEST",
			fmt.Sprintf("this orchestrator does not answer to the host %q; PIPEWEAVE_ALLOWED_HOSTS lists the names it serves", r.Host), nil)
		return false
	}
	if msg := s.contentTypeProblem(r); msg != "" {
		writeErr(w, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", msg, nil)
		return false
	}
	return true
}

// hostAllowed reports whether the request's Host (without its port) is one of
// Options.AllowedHosts. Every host is allowed when the list is empty, and /health is answered
// whatever the host (load balancers probe it by IP address).
func (s *Server) hostAllowed(r *http.Request) bool {
	if len(s.opts.AllowedHosts) == 0 || r.URL.Path == "/health" {
		return true
	}
	return slices.Contains(s.opts.AllowedHosts, requestHost(r))
}

// requestHost is the request's Host without port or IPv6 brackets, lower-cased and without a
// trailing dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// contentTypeProblem says what is wrong with the Content-Type of a mutating request under
// /api/ ("" when nothing is): every body is JSON, except POST /api/upload/temp, which is
// multipart/form-data. A request without a body and without a Content-Type (a cancel or a
// scheduler's POST /api/process) is accepted only with a valid API key in Authorization: a
// browser cannot add that header to a cross-site simple request, so such a request cannot be
// forged. Without API keys (PIPEWEAVE_INSECURE_NO_AUTH) every mutating request needs the type.
func (s *Server) contentTypeProblem(r *http.Request) string {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return ""
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		return ""
	}
	want := "application/json"
	if r.Method == http.MethodPost && r.URL.Path == uploadPath {
		want = "multipart/form-data"
	}
	got := r.Header.Get("Content-Type")
	if got == "" && r.ContentLength == 0 && len(r.TransferEncoding) == 0 && s.validKey(r) {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(got); err == nil && mt == want {
		return ""
	}
	if got == "" {
		return fmt.Sprintf("%s %s needs Content-Type: %s (a request without a body may omit it only with an API key)", r.Method, r.URL.Path, want)
	}
	return fmt.Sprintf("%s %s needs Content-Type: %s, not %q", r.Method, r.URL.Path, want, got)
}

// validKey reports whether the request's bearer token is one of the API keys (false when none
// is configured).
func (s *Server) validKey(r *http.Request) bool {
	got := []byte(bearer(r))
	ok := false
	for _, k := range s.opts.APIKeys {
		if subtle.ConstantTimeCompare(got, []byte(k)) == 1 {
			ok = true
		}
	}
	return ok
}

// authMode is what GET /health reports as "auth": "apiKey" when API keys are required, "none"
// when the operator turned authentication off (PIPEWEAVE_INSECURE_NO_AUTH).
func (s *Server) authMode() string {
	if len(s.opts.APIKeys) > 0 || !s.opts.InsecureNoAuth {
		return "apiKey"
	}
	return "none"
}
