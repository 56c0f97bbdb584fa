package platform

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// NewAPI makes a function of an HTTP handler. Its HTTP face is h; its Lambda face takes API
// Gateway proxy events, both REST API (and HTTP API payload 1.0) events and HTTP API payload
// 2.0 events, told apart by their "version" field, serves each through h and answers the
// matching proxy response. Bodies that are not text are base64-encoded both ways.
func NewAPI(name string, h http.Handler) *Function {
	return &Function{name: name, http: h, invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
		return serveAPIGateway(ctx, h, payload)
	}}
}

type requestContextKey struct{}

// RequestContextV1 returns the requestContext of the REST API event that the request came
// from, under Lambda.
func RequestContextV1(ctx context.Context) (events.APIGatewayProxyRequestContext, bool) {
	rc, ok := ctx.Value(requestContextKey{}).(events.APIGatewayProxyRequestContext)
	return rc, ok
}

// RequestContextV2 returns the requestContext of the HTTP API (payload 2.0) event that the
// request came from, under Lambda.
func RequestContextV2(ctx context.Context) (events.APIGatewayV2HTTPRequestContext, bool) {
	rc, ok := ctx.Value(requestContextKey{}).(events.APIGatewayV2HTTPRequestContext)
	return rc, ok
}

// ErrNotProxyEvent is returned for a payload that is no API Gateway proxy event.
var ErrNotProxyEvent = errors.New("not an API Gateway proxy event: expected a REST API event (with httpMethod) or an HTTP API event with \"version\": \"2.0\"")

func serveAPIGateway(ctx context.Context, h http.Handler, payload []byte) ([]byte, error) {
	var probe struct {
		Version    string `json:"version"`
		HTTPMethod string `json:"httpMethod"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, fmt.Errorf("%w (got a JSON %s)", ErrNotProxyEvent, typ.Value)
		}
		return nil, fmt.Errorf("decode the event: %w", err)
	}
	switch {
	case probe.Version == "2.0":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("decode the HTTP API event: %w", err)
		}
		req, err := requestV2(ctx, &ev)
		if err != nil {
			return nil, err
		}
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		return marshal(rec.responseV2())
	case probe.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("decode the REST API event: %w", err)
		}
		req, err := requestV1(ctx, &ev)
		if err != nil {
			return nil, err
		}
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		return marshal(rec.responseV1())
	default:
		return nil, ErrNotProxyEvent
	}
}

func marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode the response: %w", err)
	}
	return raw, nil
}

// requestV1 turns a REST API event into a request. Its path and query parameters arrive
// decoded; multi-value headers and query parameters win over their single-value copies.
func requestV1(ctx context.Context, ev *events.APIGatewayProxyRequest) (*http.Request, error) {
	q := url.Values{}
	if len(ev.MultiValueQueryStringParameters) > 0 {
		for k, vs := range ev.MultiValueQueryStringParameters {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
	} else {
		for k, v := range ev.QueryStringParameters {
			q.Set(k, v)
		}
	}
	u := &url.URL{Path: ev.Path, RawQuery: q.Encode()}
	header := http.Header{}
	if len(ev.MultiValueHeaders) > 0 {
		for k, vs := range ev.MultiValueHeaders {
			for _, v := range vs {
				header.Add(k, v)
			}
		}
	} else {
		for k, v := range ev.Headers {
			header.Set(k, v)
		}
	}
	host := ev.RequestContext.DomainName
	ctx = context.WithValue(ctx, requestContextKey{}, ev.RequestContext)
	return newRequest(ctx, ev.HTTPMethod, u, header, host, ev.RequestContext.Identity.SourceIP, ev.Body, ev.IsBase64Encoded)
}

// requestV2 turns an HTTP API (payload 2.0) event into a request: rawPath and rawQueryString
// as sent, cookies back into one Cookie header.
func requestV2(ctx context.Context, ev *events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	u, err := url.ParseRequestURI(path)
	if err != nil || u.RawQuery != "" {
		u = &url.URL{Path: path}
	}
	u.RawQuery = ev.RawQueryString
	header := http.Header{}
	for k, v := range ev.Headers {
		header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	ctx = context.WithValue(ctx, requestContextKey{}, ev.RequestContext)
	return newRequest(ctx, ev.RequestContext.HTTP.Method, u, header, ev.RequestContext.DomainName,
		ev.RequestContext.HTTP.SourceIP, ev.Body, ev.IsBase64Encoded)
}

func newRequest(ctx context.Context, method string, u *url.URL, header http.Header, domain, sourceIP, body string, b64 bool) (*http.Request, error) {
	if method == "" {
		return nil, fmt.Errorf("%w: no HTTP method", ErrNotProxyEvent)
	}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	raw := []byte(body)
	if b64 {
		var err error
		if raw, err = base64.StdEncoding.DecodeString(body); err != nil {
			return nil, fmt.Errorf("decode the base64 body of the event: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "/", bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("build the request: %w", err)
	}
	if len(raw) == 0 {
		req.Body = http.NoBody
	}
	req.URL = u
	req.RequestURI = u.RequestURI()
	req.Header = header
	req.Host = header.Get("Host")
	if req.Host == "" {
		req.Host = domain
	}
	req.ContentLength = int64(len(raw))
	if sourceIP != "" {
		req.RemoteAddr = sourceIP + ":0"
	}
	return req, nil
}

// recorder is the http.ResponseWriter a handler writes a proxy response to.
type recorder struct {
	header http.Header
	sent   http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.sent != nil {
		return
	}
	r.status = status
	r.sent = r.header.Clone()
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.sent == nil {
		r.WriteHeader(http.StatusOK)
	}
	return r.body.Write(p)
}

// Flush makes the recorder an http.Flusher; the whole response is sent at the end anyway.
func (r *recorder) Flush() {}

// result is the status, headers and encoded body of the response.
func (r *recorder) result() (int, http.Header, string, bool) {
	if r.sent == nil {
		r.WriteHeader(http.StatusOK)
	}
	h := r.sent
	body := r.body.Bytes()
	if h.Get("Content-Type") == "" && len(body) > 0 {
		h.Set("Content-Type", http.DetectContentType(body))
	}
	if len(body) > 0 && h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if len(body) > 0 && (!textual(h.Get("Content-Type")) || !utf8.Valid(body)) {
		return r.status, h, base64.StdEncoding.EncodeToString(body), true
	}
	return r.status, h, string(body), false
}

func (r *recorder) responseV1() events.APIGatewayProxyResponse {
	status, h, body, b64 := r.result()
	single := make(map[string]string, len(h))
	for k, vs := range h {
		single[k] = vs[len(vs)-1]
	}
	return events.APIGatewayProxyResponse{StatusCode: status, Headers: single, MultiValueHeaders: map[string][]string(h),
		Body: body, IsBase64Encoded: b64}
}

func (r *recorder) responseV2() events.APIGatewayV2HTTPResponse {
	status, h, body, b64 := r.result()
	cookies := h.Values("Set-Cookie")
	h.Del("Set-Cookie")
	joined := make(map[string]string, len(h))
	for k, vs := range h {
		joined[k] = strings.Join(vs, ",")
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: joined, Cookies: cookies, Body: body, IsBase64Encoded: b64}
}

// textual reports whether a body of this content type travels as text rather than base64.
func textual(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/javascript", "application/x-ndjson",
		"application/x-www-form-urlencoded", "application/yaml":
		return true
	}
	return false
}
