package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string, details any) {
	writeJSON(w, status, protocol.ErrorBody{Error: msg, Code: code, Details: details})
}

// fail answers err with the status its kind calls for: the engine's client errors keep their
// code and sentence; an unreachable database is 503; anything else is a 500 whose cause is
// logged, not shown.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body, ok := s.errorAnswer(r, err)
	if !ok {
		return
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, status, body)
}

// errorAnswer is the status and body that answer err (see fail); ok is false when nobody reads
// the answer (the client went away).
func (s *Server) errorAnswer(r *http.Request, err error) (status int, body protocol.ErrorBody, ok bool) {
	var e *engine.Error
	switch {
	case errors.As(err, &e):
		status := http.StatusBadRequest
		switch {
		case errors.Is(e.Kind, engine.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(e.Kind, engine.ErrConflict):
			status = http.StatusConflict
		case errors.Is(e.Kind, engine.ErrUnauthorized):
			status = http.StatusUnauthorized
		case errors.Is(e.Kind, engine.ErrTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(e.Kind, engine.ErrGone):
			status = http.StatusGone
		}
		return status, protocol.ErrorBody{Error: e.Msg, Code: e.Code, Details: e.Details}, true
	case errors.Is(err, engine.ErrStorage) && r.Context().Err() == nil:
		// Object storage failed: the database is fine, and the request may succeed later.
		s.log.Warn("storage unavailable", "path", r.URL.Path, "err", err)
		return http.StatusServiceUnavailable, protocol.ErrorBody{Error: "object storage failed; try again shortly", Code: "STORAGE_UNAVAILABLE"}, true
	case errors.Is(err, database.ErrUnavailable):
		s.log.Warn("database unavailable", "path", r.URL.Path, "err", err)
		return http.StatusServiceUnavailable, protocol.ErrorBody{Error: "the database is unreachable; try again shortly", Code: "DATABASE_UNAVAILABLE"}, true
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		return 0, protocol.ErrorBody{}, false
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		return http.StatusInternalServerError, protocol.ErrorBody{Error: "internal error", Code: "INTERNAL"}, true
	}
}

// decode reads a JSON body into v. Malformed JSON, wrong types and trailing data are 400;
// a body over the cap is 413. It answers the request itself and returns false on failure.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.decodeBody(w, r, v, false)
}

// decodeStrict is decode that also refuses fields v does not have: for bodies where a
// misspelt field would silently widen what the request does (a filter of a bulk action).
func (s *Server) decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.decodeBody(w, r, v, true)
}

func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, strict bool) bool {
	data, err := io.ReadAll(r.Body)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		if strict {
			dec.DisallowUnknownFields()
		}
		err = dec.Decode(v)
		if err == nil && dec.More() {
			err = errors.New("unexpected data after the JSON value")
		}
		if err == nil {
			// The input rules (inputcheck.go): no NUL, invalid UTF-8 or out-of-range number
			// reaches the database.
			if p := checkJSON(data); p != nil {
				p.write(w)
				return false
			}
			return true
		}
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		writeErr(w, http.StatusBadRequest, "TRUNCATED_BODY",
			fmt.Sprintf("the request body ended after %d of its %d bytes (Content-Length)", len(data), r.ContentLength), nil)
		return false
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeErr(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE",
			fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit), nil)
	case errors.Is(err, io.EOF):
		writeErr(w, http.StatusBadRequest, "MALFORMED_JSON", "request body is empty; a JSON object is required", nil)
	case errors.As(err, &syntax):
		writeErr(w, http.StatusBadRequest, "MALFORMED_JSON", fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err), nil)
	case errors.As(err, &typ) && checkJSON(data) != nil:
		// A number out of range for a number field (1e999 for an int) reads as one.
		checkJSON(data).write(w)
	case badTimeout(w, err):
	case badMapOption(w, err):
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		writeErr(w, http.StatusBadRequest, "INVALID_FIELD",
			fmt.Sprintf("%s must be %s, not a JSON %s", field, typeName(typ.Type.String()), typ.Value), map[string]string{"field": field})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		writeErr(w, http.StatusBadRequest, "UNKNOWN_FIELD", fmt.Sprintf("unknown field %q", field), map[string]string{"field": field})
	default:
		writeErr(w, http.StatusBadRequest, "MALFORMED_JSON", "malformed JSON: "+err.Error(), nil)
	}
	return false
}

// badTimeout answers 400 INVALID_TIMEOUT when err is a timeoutMs that is not an integer (1.5,
// "x") and reports whether it did.
func badTimeout(w http.ResponseWriter, err error) bool {
	var typ *json.UnmarshalTypeError
	if !errors.As(err, &typ) || (typ.Field != "timeoutMs" && !strings.HasSuffix(typ.Field, ".timeoutMs")) {
		return false
	}
	writeErr(w, http.StatusBadRequest, "INVALID_TIMEOUT",
		fmt.Sprintf("%s must be an integer number of milliseconds from 1 to %d (30 days), not a JSON %s",
			typ.Field, int64(protocol.MaxPipelineTimeoutMs), typ.Value), map[string]string{"field": typ.Field})
	return true
}

// badMapOption answers 400 MAP_MAX_CONCURRENCY_INVALID or MAP_MAX_ITEMS_INVALID when err is a
// map node's maxConcurrency or maxItems that is not an integer (1.5, "3") and reports whether
// it did.
func badMapOption(w http.ResponseWriter, err error) bool {
	var typ *json.UnmarshalTypeError
	if !errors.As(err, &typ) {
		return false
	}
	var code string
	switch {
	case strings.HasSuffix(typ.Field, "map.maxConcurrency"):
		code = "MAP_MAX_CONCURRENCY_INVALID"
	case strings.HasSuffix(typ.Field, "map.maxItems"):
		code = "MAP_MAX_ITEMS_INVALID"
	default:
		return false
	}
	writeErr(w, http.StatusBadRequest, code, fmt.Sprintf("%s must be an integer of at least 1, not a JSON %s", typ.Field, typ.Value),
		map[string]string{"field": typ.Field})
	return true
}

func typeName(goType string) string {
	switch {
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	default:
		return "an object"
	}
}
