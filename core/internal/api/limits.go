package api

import (
	"fmt"
	"net/http"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Size caps on stored text (issue 10). Over-long text is refused with 400, except a failed
// callback's error and errorCode, which are cut to their cap (with TruncatedMarker after the
// error text) so that the failure is still recorded and the run does not stay running.
const (
	// MaxMessageBytes caps the message of a heartbeat or progress report.
	MaxMessageBytes = 1000
	// MaxDescriptionBytes caps task and pipeline descriptions.
	MaxDescriptionBytes = 4096
	// MaxCallbackErrorBytes is where a failed callback's error text is cut.
	MaxCallbackErrorBytes = 16 << 10
	// MaxErrorCodeBytes is where a failed callback's errorCode is cut.
	MaxErrorCodeBytes = 128
	// TruncatedMarker ends an error text that was cut to MaxCallbackErrorBytes.
	TruncatedMarker = "… [truncated]"
)

// isWorkerBodyRoute reports whether r is a worker call held to MaxWorkerBodyBytes.
func isWorkerBodyRoute(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	switch p := r.URL.Path; {
	case p == "/api/heartbeat", p == "/api/progress", p == "/api/idempotency/check":
		return true
	default:
		return len(p) > len("/api/callback/") && p[:len("/api/callback/")] == "/api/callback/"
	}
}

// tooLong answers 400 with code for a field over its cap; it returns false when text fits.
func tooLong(w http.ResponseWriter, code, field, text string, limit int) bool {
	if len(text) <= limit {
		return false
	}
	writeErr(w, http.StatusBadRequest, code, fmt.Sprintf("%s is %d bytes; at most %d are accepted", field, len(text), limit),
		map[string]any{"field": field, "limit": limit})
	return true
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// capCallbackError cuts a failed callback's error and errorCode to their caps.
func capCallbackError(cb *protocol.CallbackRequest) {
	if len(cb.Error) > MaxCallbackErrorBytes {
		cb.Error = truncateUTF8(cb.Error, MaxCallbackErrorBytes-len(TruncatedMarker)) + TruncatedMarker
	}
	cb.ErrorCode = truncateUTF8(cb.ErrorCode, MaxErrorCodeBytes)
}

// registrationTooBig answers 400 for a registration over MaxTasksPerRegistration or with an
// over-long description; it returns false when req is within the caps.
func (s *Server) registrationTooBig(w http.ResponseWriter, req *protocol.RegisterRequest) bool {
	if n := len(req.Tasks); n > s.opts.MaxTasksPerRegistration {
		writeErr(w, http.StatusBadRequest, "TOO_MANY_TASKS",
			fmt.Sprintf("a registration declares %d tasks; at most %d (MAX_TASKS_PER_REGISTRATION) are accepted", n, s.opts.MaxTasksPerRegistration),
			map[string]any{"field": "tasks", "limit": s.opts.MaxTasksPerRegistration})
		return true
	}
	for _, t := range req.Tasks {
		if tooLong(w, "DESCRIPTION_TOO_LONG", "tasks.description", t.Description, MaxDescriptionBytes) {
			return true
		}
	}
	for _, p := range req.Pipelines {
		if tooLong(w, "DESCRIPTION_TOO_LONG", "pipelines.description", p.Description, MaxDescriptionBytes) {
			return true
		}
	}
	return false
}

// batchTooBig answers 400 BATCH_TOO_LARGE for a batch of more than MaxBatchSize tasks.
func (s *Server) batchTooBig(w http.ResponseWriter, n int) bool {
	if n <= s.opts.MaxBatchSize {
		return false
	}
	writeErr(w, http.StatusBadRequest, "BATCH_TOO_LARGE",
		fmt.Sprintf("the batch has %d tasks; at most %d (MAX_BATCH_SIZE) are accepted, split it", n, s.opts.MaxBatchSize),
		map[string]any{"field": "tasks", "limit": s.opts.MaxBatchSize})
	return true
}
