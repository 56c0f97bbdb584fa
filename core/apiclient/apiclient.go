// Package apiclient calls the orchestrator's HTTP API: one client for the project's own Go
// callers (the pipeweave CLI and its benchmarks, dev --demo, the cold-start tool, the tests and
// the worker SDK's calls to the orchestrator), with one place for the JSON encoding, the bearer
// token, the decoding of the error body (protocol.ErrorBody) and one retry policy (Transient,
// Retry).
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Client calls one orchestrator. It is safe for concurrent use.
type Client struct {
	base   string // without a trailing slash
	token  string // bearer token, "" for none
	http   *http.Client
	header func(context.Context, http.Header)
	limit  int64
}

// maxIdlePerHost is how many idle connections the default transport keeps per host.
const maxIdlePerHost = 256

// defaultTransport is the transport of the clients made without WithHTTPClient, shared by them
// as http.DefaultTransport is: its settings, but keeping up to maxIdlePerHost idle connections
// per host instead of 2. A worker calls back to one orchestrator (or its load balancer) from as
// many goroutines as it runs attempts; with 2 idle connections kept, the others were closed
// after each call and opened anew for the next, which cost a busy Go SDK worker a fifth of its
// throughput (README, Performance).
var defaultTransport = func() *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else { // replaced by another package: the standard library's settings
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
	}
	t.MaxIdleConns, t.MaxIdleConnsPerHost = maxIdlePerHost, maxIdlePerHost
	return t
}()

// Option changes a Client made by New.
type Option func(*Client)

// WithHTTPClient sends the requests with hc (default: an http.Client with a 60 s timeout over
// a transport that keeps up to maxIdlePerHost idle connections per host).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithHeader calls set on every request's headers, with the request's context: the worker SDK
// adds the attempt's trace context this way.
func WithHeader(set func(context.Context, http.Header)) Option {
	return func(c *Client) { c.header = set }
}

// WithAnswerLimit reads at most n bytes of an answer (default: no limit).
func WithAnswerLimit(n int64) Option { return func(c *Client) { c.limit = n } }

// New checks base (an http or https URL) and returns a client for it that sends token, when
// not empty, as a bearer token.
func New(base, token string, opts ...Option) (*Client, error) {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL such as http://localhost:3000", base)
	}
	c := &Client{base: base, token: strings.TrimSpace(token), http: &http.Client{Timeout: 60 * time.Second, Transport: defaultTransport}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL is the orchestrator's base URL, without a trailing slash.
func (c *Client) URL() string { return c.base }

// Token is the bearer token the client sends, "" for none.
func (c *Client) Token() string { return c.token }

// WithToken returns a copy of c that sends token instead (a worker's run or registration token).
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// Error is an error answer of the API (300 or more): its status and the error body
// {"error", "code", "details"} it carried.
type Error struct {
	Method, Path string
	Status       int
	// Code and Message are the body's code and error. For an answer that is not the API's
	// error body (a proxy's page, say), Code is "" and Message is the status line and the
	// start of the body.
	Code, Message string
	Details       json.RawMessage
	// Body is the answer's body as it came.
	Body []byte
	// Hint, when set, is a sentence the caller added: what to do about it.
	Hint string
}

// Error is one line: the server's sentence, the status and the code, and the hint when there
// is one: `pipeline "nope" not found (404 PIPELINE_NOT_FOUND)`.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	tag := strconv.Itoa(e.Status)
	if e.Code != "" {
		tag += " " + e.Code
	}
	line := OneLine(msg) + " (" + tag + ")"
	if e.Hint != "" {
		line += "; " + e.Hint
	}
	return line
}

// StatusOf is the HTTP status of the API's error answer in err, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// UnreachableError says the orchestrator gave no answer: refused connection, DNS failure,
// reset, timeout.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	reason := e.Err.Error()
	var op *net.OpError
	switch {
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.As(e.Err, &op) && op.Op == "dial":
		reason = OneLine(op.Err.Error())
	}
	return fmt.Sprintf("cannot reach the orchestrator at %s (%s)", e.URL, OneLine(reason))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// OneLine replaces line breaks and runs of spaces so that a message stays on one line.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Do sends method path?query with body as JSON (when not nil; a json.RawMessage is sent as it
// is, byte for byte) and returns the answer's body, decoded into out when out is not nil. An
// answer of 300 or more is an *Error; no answer an *UnreachableError (or ctx's error once ctx
// has ended).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) (json.RawMessage, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		raw, ok := body.(json.RawMessage)
		if !ok {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				return nil, fmt.Errorf("%s %s: encode the request: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	// Every request that may change something says JSON, with or without a body: the
	// orchestrator answers 415 to a mutating request of another (or no) type.
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.header != nil {
		c.header(ctx, req.Header)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	var rb io.Reader = resp.Body
	if c.limit > 0 {
		rb = io.LimitReader(resp.Body, c.limit)
	}
	data, err := io.ReadAll(rb)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, errorOf(method, path, resp, data)
	}
	if len(data) > 0 && !json.Valid(data) {
		return nil, fmt.Errorf("%s %s: the answer is not JSON: %.200q", method, path, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return data, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return data, nil
}

// errorOf turns an error answer into an *Error.
func errorOf(method, path string, resp *http.Response, data []byte) *Error {
	e := &Error{Method: method, Path: path, Status: resp.StatusCode, Body: data}
	var body struct {
		protocol.ErrorBody
		Details json.RawMessage `json:"details"`
	}
	if json.Unmarshal(data, &body) == nil && (body.Error != "" || body.Code != "") {
		e.Code, e.Message, e.Details = body.Code, body.Error, body.Details
		return e
	}
	// Not the API's error body: show the start of it.
	text := OneLine(string(data))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	e.Message = strings.TrimSpace(resp.Status + " " + text)
	return e
}

// Get decodes GET path?query into out (when not nil) and returns the raw answer.
func (c *Client) Get(ctx context.Context, path string, query url.Values, out any) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodGet, path, query, nil, out)
}

// Post sends body to path, decodes the answer into out (when not nil) and returns it raw.
func (c *Client) Post(ctx context.Context, path string, body, out any) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodPost, path, nil, body, out)
}

// List fetches the items of the listing at path, following nextCursor until limit items (0:
// all of them) were read, pageSize (at most protocol.MaxPageSize) at a time.
func (c *Client) List(ctx context.Context, path string, query url.Values, limit, pageSize int) ([]json.RawMessage, error) {
	if pageSize <= 0 || pageSize > protocol.MaxPageSize {
		pageSize = protocol.MaxPageSize
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
		var p protocol.Page[json.RawMessage]
		if _, err := c.Get(ctx, path, q, &p); err != nil {
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
