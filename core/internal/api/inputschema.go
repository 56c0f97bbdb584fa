package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
)

// validationFailed answers an input refused in validationMode strict, as upstream does:
// 400 {error, code, validationErrors}. validationErrors is keyed by task id; for a batch
// (byItem) by the index of the refused request, each with its errors by task id. It reports
// whether err was such a refusal.
func validationFailed(w http.ResponseWriter, err error, byItem bool) bool {
	var ve *engine.InputValidationError
	if !errors.As(err, &ve) {
		return false
	}
	var errs any = ve.Errors
	if byItem {
		items := map[string]any{}
		for i, byTask := range ve.Items {
			items[strconv.Itoa(i)] = byTask
		}
		errs = items
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"error":            ve.Error(),
		"code":             "INPUT_VALIDATION_FAILED",
		"validationErrors": errs,
	})
	return true
}

// validateInput serves POST /api/tasks/{id}/validate-input {input}: {valid, errors}.
func (s *Server) validateInput(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Input json.RawMessage `json:"input"`
	}
	if !s.decode(w, r, &req) {
		return
	}
	if req.Input == nil {
		writeErr(w, http.StatusBadRequest, "INPUT_REQUIRED", "input is required: {\"input\": …}", nil)
		return
	}
	res, err := s.eng.ValidateTaskInput(r.Context(), r.PathValue("id"), req.Input)
	answer(s, w, r, http.StatusOK, res, err, wire.ValidateInputResult)
}
