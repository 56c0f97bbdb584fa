package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/httpjson"
)

// defaultOrchestratorURL is where the operator commands look for the orchestrator when neither
// --url nor PIPEWEAVE_ORCHESTRATOR_URL names it.
const defaultOrchestratorURL = "http://localhost:3000"

// maxPageSize is the largest page the API serves (engine.MaxPageSize).
const maxPageSize = 500

// apiClient calls the orchestrator's HTTP API for the operator commands.
type apiClient struct {
	base  string // without a trailing slash
	token string // bearer token, "" for none
	http  *http.Client
}

// newAPIClient checks base (an http or https URL) and returns a client for it.
func newAPIClient(base, token string) (*apiClient, error) {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an http(s) URL such as %s", base, defaultOrchestratorURL)
	}
	return &apiClient{base: base, token: strings.TrimSpace(token), http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is an error answer of the API: {"error", "code", "details"} and its status.
type apiError struct {
	Status  int
	Code    string
	Message string
	Details json.RawMessage
	// hint is a sentence added to the message, such as what to set for a 401.
	hint string
}

// Error is one line: the server's sentence (which already names what details lists), the
// status and the code, and a hint when there is one: `pipeline "nope" not found (404 PIPELINE_NOT_FOUND)`.
func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	tag := strconv.Itoa(e.Status)
	if e.Code != "" {
		tag += " " + e.Code
	}
	line := oneLine(msg) + " (" + tag + ")"
	if e.hint != "" {
		line += "; " + e.hint
	}
	return line
}

// oneLine replaces line breaks so that a message stays on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)), " ")
}

// unreachableError says the orchestrator could not be reached at all.
type unreachableError struct {
	URL string
	Err error
}

func (e *unreachableError) Error() string {
	reason := e.Err.Error()
	var op *net.OpError
	switch {
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.As(e.Err, &op) && op.Op == "dial":
		reason = oneLine(op.Err.Error())
	}
	return fmt.Sprintf("cannot reach the orchestrator at %s (%s); start it or point --url or PIPEWEAVE_ORCHESTRATOR_URL at it", e.URL, oneLine(reason))
}

func (e *unreachableError) Unwrap() error { return e.Err }

// call sends method path?query with body encoded as JSON (when not nil) and returns the answer's
// body. An answer of 300 or more is an *apiError; a failed connection an *unreachableError.
func (c *apiClient) call(ctx context.Context, method, path string, query url.Values, body any) (json.RawMessage, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	data, err := httpjson.Do(ctx, c.http, method, target, c.token, body)
	var status *httpjson.StatusError
	switch {
	case errors.As(err, &status):
		return nil, c.errorOf(status.Status, status.StatusText, status.Body)
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		var uerr *url.Error
		if !errors.As(err, &uerr) {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		return nil, &unreachableError{URL: c.base, Err: err}
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s %s: the answer is not JSON: %.200q", method, path, data)
	}
	return data, nil
}

// errorOf turns an error answer into an *apiError.
func (c *apiClient) errorOf(statusCode int, status string, data []byte) *apiError {
	e := &apiError{Status: statusCode}
	var body struct {
		protocol.ErrorBody
		Details          json.RawMessage `json:"details"`
		ValidationErrors json.RawMessage `json:"validationErrors"`
	}
	if json.Unmarshal(data, &body) == nil && (body.Error != "" || body.Code != "") {
		e.Code, e.Message, e.Details = body.Code, body.Error, body.Details
		// A strict input check lists every violation by task (a trigger's or a single
		// enqueue's shape); they make the message say what to fix.
		var violations protocol.ValidationErrors
		if json.Unmarshal(body.ValidationErrors, &violations) == nil {
			if lines := validationLines(violations); len(lines) > 0 {
				e.Message += ": " + strings.Join(lines, "; ")
			}
		}
	} else {
		// Not the API's error body (a proxy's page, say): show the start of it.
		text := oneLine(string(data))
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		e.Message = strings.TrimSpace(status + " " + text)
	}
	switch statusCode {
	case http.StatusUnauthorized:
		if c.token == "" {
			e.hint = "the orchestrator requires an API key: set PIPEWEAVE_API_TOKEN (or --token) to one of its PIPEWEAVE_API_KEYS"
		} else {
			e.hint = "the API token was refused: set PIPEWEAVE_API_TOKEN (or --token) to one of the orchestrator's PIPEWEAVE_API_KEYS"
		}
	case http.StatusServiceUnavailable:
		if e.Code == "DATABASE_UNAVAILABLE" {
			e.hint = "try again shortly"
		}
	}
	return e
}

// get decodes GET path?query into out (when not nil) and returns the raw answer.
func (c *apiClient) get(ctx context.Context, path string, query url.Values, out any) (json.RawMessage, error) {
	return c.do(ctx, http.MethodGet, path, query, nil, out)
}

// post sends body to path, decodes the answer into out (when not nil) and returns it raw.
func (c *apiClient) post(ctx context.Context, path string, body, out any) (json.RawMessage, error) {
	return c.do(ctx, http.MethodPost, path, nil, body, out)
}

func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, body, out any) (json.RawMessage, error) {
	raw, err := c.call(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return raw, nil
}

// page is one page of a listing: {items, nextCursor}.
type page struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor string            `json:"nextCursor"`
}

// list fetches the items of the listing at path, newest first, following nextCursor until
// limit items (0: all of them) were read, pageSize at a time.
func (c *apiClient) list(ctx context.Context, path string, query url.Values, limit, pageSize int) ([]json.RawMessage, error) {
	if pageSize <= 0 || pageSize > maxPageSize {
		pageSize = maxPageSize
	}
	q := url.Values{}
	for k, v := range query {
		if len(v) > 0 && v[0] != "" {
			q[k] = v
		}
	}
	items := []json.RawMessage{}
	cursor := ""
	for {
		n := pageSize
		if limit > 0 {
			n = min(n, limit-len(items))
		}
		q.Set("limit", strconv.Itoa(n))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p page
		if _, err := c.get(ctx, path, q, &p); err != nil {
			return nil, err
		}
		items = append(items, p.Items...)
		if limit > 0 && len(items) >= limit {
			return items[:limit], nil
		}
		if p.NextCursor == "" || len(p.Items) == 0 {
			return items, nil
		}
		cursor = p.NextCursor
	}
}
