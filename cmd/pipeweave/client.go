package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// defaultOrchestratorURL is where the operator commands look for the orchestrator when neither
// --url nor PIPEWEAVE_ORCHESTRATOR_URL names it.
const defaultOrchestratorURL = "http://localhost:3000"

// apiClient is the operator commands' apiclient.Client: its errors say what to do about them
// in the CLI's terms (which flag or variable to set).
type apiClient struct{ *apiclient.Client }

// newAPIClient checks base (an http or https URL) and returns a client for it.
func newAPIClient(base, token string) (*apiClient, error) {
	c, err := apiclient.New(base, token)
	if err != nil {
		return nil, fmt.Errorf("--url %q is not an http(s) URL such as %s", strings.TrimRight(strings.TrimSpace(base), "/"), defaultOrchestratorURL)
	}
	return &apiClient{c}, nil
}

// get decodes GET path?query into out (when not nil) and returns the raw answer.
func (c *apiClient) get(ctx context.Context, path string, query url.Values, out any) (json.RawMessage, error) {
	raw, err := c.Get(ctx, path, query, out)
	return raw, c.explain(err)
}

// post sends body to path, decodes the answer into out (when not nil) and returns it raw.
func (c *apiClient) post(ctx context.Context, path string, body, out any) (json.RawMessage, error) {
	raw, err := c.Post(ctx, path, body, out)
	return raw, c.explain(err)
}

// do sends method path with body, decodes the answer into out (when not nil) and returns it
// raw (PUT and DELETE).
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (json.RawMessage, error) {
	raw, err := c.Do(ctx, method, path, nil, body, out)
	return raw, c.explain(err)
}

// list fetches the items of the listing at path (apiclient.Client.List).
func (c *apiClient) list(ctx context.Context, path string, query url.Values, limit, pageSize int) ([]json.RawMessage, error) {
	items, err := c.List(ctx, path, query, limit, pageSize)
	return items, c.explain(err)
}

// explain adds to err what the user can do: for an unreachable orchestrator, where to point
// the CLI; for a 401, which token to set; for a strict input check, every violation by task.
func (c *apiClient) explain(err error) error {
	var unreachable *apiclient.UnreachableError
	if errors.As(err, &unreachable) {
		return fmt.Errorf("%w; start it or point --url or PIPEWEAVE_ORCHESTRATOR_URL at it", err)
	}
	var e *apiclient.Error
	if !errors.As(err, &e) {
		return err
	}
	// A strict input check lists every violation by task (a trigger's or a single enqueue's
	// shape); they make the message say what to fix.
	var body struct {
		ValidationErrors protocol.ValidationErrors `json:"validationErrors"`
	}
	if json.Unmarshal(e.Body, &body) == nil {
		if lines := validationLines(body.ValidationErrors); len(lines) > 0 {
			e.Message += ": " + strings.Join(lines, "; ")
		}
	}
	switch e.Status {
	case http.StatusUnauthorized:
		if c.Token() == "" {
			e.Hint = "the orchestrator requires an API key: set PIPEWEAVE_API_TOKEN (or --token) to one of its PIPEWEAVE_API_KEYS"
		} else {
			e.Hint = "the API token was refused: set PIPEWEAVE_API_TOKEN (or --token) to one of the orchestrator's PIPEWEAVE_API_KEYS"
		}
	case http.StatusServiceUnavailable:
		if e.Code == "DATABASE_UNAVAILABLE" {
			e.Hint = "try again shortly"
		}
	}
	return err
}
