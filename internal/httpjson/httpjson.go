// Package httpjson sends JSON requests to the orchestrator's HTTP API for the project's own
// clients (the CLI, the benchmarks, dev --demo): one place for the encoding, the bearer token
// and the status check.
package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// StatusError is an answer of 300 or more, with its body.
type StatusError struct {
	Method, URL string
	Status      int
	StatusText  string // "404 Not Found"
	Body        []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s answered %s: %s", e.Method, e.URL, e.StatusText, bytes.TrimSpace(e.Body))
}

// Do sends body (when not nil) as JSON to url with an optional bearer token and returns the
// answer's body. An answer of 300 or more is a *StatusError; a request that got no answer is
// the client's error.
func Do(ctx context.Context, client *http.Client, method, url, bearer string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request to %s %s: %w", method, url, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	// Every request that may change something says JSON, with or without a body: the
	// orchestrator answers 415 to a mutating request of another (or no) type.
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	if resp.StatusCode >= 300 {
		return nil, &StatusError{Method: method, URL: url, Status: resp.StatusCode, StatusText: resp.Status, Body: data}
	}
	return data, nil
}

// Call is Do that decodes the answer into out (when not nil).
func Call(ctx context.Context, client *http.Client, method, url, bearer string, body, out any) error {
	data, err := Do(ctx, client, method, url, bearer, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, url, err)
	}
	return nil
}
