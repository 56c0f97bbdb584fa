package platform

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"
)

// seen is what the echo handler saw of a request.
type seen struct {
	Method, Path, RawQuery, Host, RemoteAddr, Body string
	Query                                          map[string][]string
	Header                                         http.Header
	ContentLength                                  int64
	RequestID                                      string
}

// echo answers what it saw as JSON, with two cookies and a repeated header.
func echo(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		s := seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host, RemoteAddr: r.RemoteAddr,
			Body: string(body), Query: r.URL.Query(), Header: r.Header, ContentLength: r.ContentLength}
		if rc, ok := RequestContextV1(r.Context()); ok {
			s.RequestID = rc.RequestID
		}
		if rc, ok := RequestContextV2(r.Context()); ok {
			s.RequestID = rc.RequestID
		}
		http.SetCookie(w, &http.Cookie{Name: "a", Value: "1"})
		http.SetCookie(w, &http.Cookie{Name: "b", Value: "2"})
		w.Header().Add("X-Many", "one")
		w.Header().Add("X-Many", "two")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		w.Header().Set("X-Too-Late", "ignored")
		require.NoError(t, json.NewEncoder(w).Encode(s))
	})
}

func invoke(t *testing.T, h http.Handler, ev any, out any) {
	t.Helper()
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	res, err := NewAPI("api", h).Invoke(context.Background(), raw)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(res, out), "%s", res)
}

func TestRESTEventBecomesARequest(t *testing.T) {
	t.Parallel()
	ev := events.APIGatewayProxyRequest{
		HTTPMethod: "POST",
		Path:       "/api/queue/task",
		Headers:    map[string]string{"Content-Type": "application/json", "Accept": "b"},
		MultiValueHeaders: map[string][]string{"Content-Type": {"application/json"}, "Accept": {"a", "b"},
			"Host": {"api.example.com"}},
		QueryStringParameters:           map[string]string{"tag": "y", "q": "a b"},
		MultiValueQueryStringParameters: map[string][]string{"tag": {"x", "y"}, "q": {"a b"}},
		RequestContext: events.APIGatewayProxyRequestContext{RequestID: "req-1", DomainName: "d.example.com",
			Identity: events.APIGatewayRequestIdentity{SourceIP: "203.0.113.10"}},
		Body: `{"taskId":"t"}`,
	}
	var resp events.APIGatewayProxyResponse
	invoke(t, echo(t), ev, &resp)
	require.Equal(t, http.StatusTeapot, resp.StatusCode)
	require.False(t, resp.IsBase64Encoded)
	require.Equal(t, "application/json", resp.Headers["Content-Type"])
	require.Equal(t, []string{"one", "two"}, resp.MultiValueHeaders["X-Many"])
	require.Equal(t, []string{"a=1", "b=2"}, resp.MultiValueHeaders["Set-Cookie"])
	require.NotContains(t, resp.MultiValueHeaders, "X-Too-Late", "headers set after WriteHeader are not sent")

	var s seen
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &s))
	require.Equal(t, "POST", s.Method)
	require.Equal(t, "/api/queue/task", s.Path)
	require.Equal(t, map[string][]string{"tag": {"x", "y"}, "q": {"a b"}}, s.Query)
	require.Equal(t, []string{"a", "b"}, s.Header.Values("Accept"), "multi-value headers win")
	require.Equal(t, "api.example.com", s.Host)
	require.Equal(t, "203.0.113.10:0", s.RemoteAddr)
	require.Equal(t, `{"taskId":"t"}`, s.Body)
	require.EqualValues(t, len(`{"taskId":"t"}`), s.ContentLength)
	require.Equal(t, "req-1", s.RequestID)

	// Single-value maps only (an HTTP API payload 1.0 or a hand-made event), base64 body.
	ev.MultiValueHeaders, ev.MultiValueQueryStringParameters = nil, nil
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte("\x00\x01binary")), true
	invoke(t, echo(t), ev, &resp)
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &s))
	require.Equal(t, map[string][]string{"tag": {"y"}, "q": {"a b"}}, s.Query)
	require.Equal(t, []string{"b"}, s.Header.Values("Accept"))
	require.Equal(t, "d.example.com", s.Host, "no Host header: the API's domain")
	require.Equal(t, "\x00\x01binary", s.Body)
}

func TestHTTPAPIEventBecomesARequest(t *testing.T) {
	t.Parallel()
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RawPath:        "/api/storage/a%2Fb/c d",
		RawQueryString: "tag=x&tag=y&q=a+b",
		Cookies:        []string{"s=1", "t=2"},
		Headers:        map[string]string{"accept": "a,b", "host": "h.example.com", "content-type": "application/json"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{RequestID: "req-2",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "PUT", SourceIP: "198.51.100.7"}},
		Body:            base64.StdEncoding.EncodeToString([]byte(`{"x":1}`)),
		IsBase64Encoded: true,
	}
	var resp events.APIGatewayV2HTTPResponse
	invoke(t, echo(t), ev, &resp)
	require.Equal(t, http.StatusTeapot, resp.StatusCode)
	require.Equal(t, []string{"a=1", "b=2"}, resp.Cookies, "Set-Cookie becomes cookies")
	require.NotContains(t, resp.Headers, "Set-Cookie")
	require.Equal(t, "one,two", resp.Headers["X-Many"])

	var s seen
	require.NoError(t, json.Unmarshal([]byte(resp.Body), &s))
	require.Equal(t, "PUT", s.Method)
	require.Equal(t, "/api/storage/a/b/c d", s.Path, "rawPath is decoded once")
	require.Equal(t, "tag=x&tag=y&q=a+b", s.RawQuery)
	require.Equal(t, []string{"x", "y"}, s.Query["tag"])
	require.Equal(t, "s=1; t=2", s.Header.Get("Cookie"))
	require.Equal(t, "h.example.com", s.Host)
	require.Equal(t, `{"x":1}`, s.Body)
	require.Equal(t, "req-2", s.RequestID)
}

func TestBinaryResponsesAreBase64Encoded(t *testing.T) {
	t.Parallel()
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	cases := map[string]struct {
		contentType string
		body        []byte
		b64         bool
	}{
		"png":          {"image/png", png, true},
		"octet stream": {"application/octet-stream", []byte("plain bytes"), true},
		"sniffed":      {"", png, true},
		"json":         {"application/json; charset=utf-8", []byte(`{"a":"é"}`), false},
		"problem json": {"application/problem+json", []byte(`{}`), false},
		"text":         {"text/plain", []byte("hello"), false},
		"bad utf-8":    {"text/plain", []byte("\xff\xfe"), true},
		"empty":        {"application/octet-stream", nil, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.contentType != "" {
					w.Header().Set("Content-Type", c.contentType)
				}
				_, _ = w.Write(c.body)
			})
			var v1 events.APIGatewayProxyResponse
			invoke(t, h, events.APIGatewayProxyRequest{HTTPMethod: "GET", Path: "/x"}, &v1)
			var v2 events.APIGatewayV2HTTPResponse
			invoke(t, h, events.APIGatewayV2HTTPRequest{Version: "2.0", RawPath: "/x",
				RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET"}}}, &v2)
			for _, got := range []struct {
				status int
				body   string
				b64    bool
			}{{v1.StatusCode, v1.Body, v1.IsBase64Encoded}, {v2.StatusCode, v2.Body, v2.IsBase64Encoded}} {
				require.Equal(t, http.StatusOK, got.status)
				require.Equal(t, c.b64, got.b64)
				body := []byte(got.body)
				if got.b64 {
					var err error
					body, err = base64.StdEncoding.DecodeString(got.body)
					require.NoError(t, err)
				}
				require.Equal(t, string(c.body), string(body))
			}
		})
	}
}

func TestOtherPayloadsAreNotProxyEvents(t *testing.T) {
	t.Parallel()
	f := NewAPI("api", echo(t))
	for _, payload := range []string{`{}`, `{"version":"0","source":"aws.events","detail-type":"Scheduled Event"}`, `[1,2]`} {
		_, err := f.Invoke(context.Background(), []byte(payload))
		require.ErrorIs(t, err, ErrNotProxyEvent, payload)
	}
	_, err := f.Invoke(context.Background(), []byte(`{"httpMethod":`))
	require.ErrorContains(t, err, "decode the event")
	_, err = f.Invoke(context.Background(), []byte(`{"httpMethod":"POST","path":"/","body":"@@@","isBase64Encoded":true}`))
	require.ErrorContains(t, err, "base64")
	_, err = f.Invoke(context.Background(), []byte(`{"version":"2.0","rawPath":"/"}`))
	require.ErrorIs(t, err, ErrNotProxyEvent, "an HTTP API event without a method")
}
