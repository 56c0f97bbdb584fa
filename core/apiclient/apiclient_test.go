package apiclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/apiclient"
)

func TestDo(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			out, _ := json.Marshal(map[string]string{"auth": r.Header.Get("Authorization"), "type": r.Header.Get("Content-Type"),
				"trace": r.Header.Get("Traceparent"), "body": string(body), "query": r.URL.RawQuery})
			_, _ = w.Write(out)
		case "/proxy":
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		case "/text":
			_, _ = w.Write([]byte("not json"))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no such thing","code":"NOPE","details":{"id":"x"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c, err := apiclient.New(srv.URL+"/", "tok", apiclient.WithHeader(func(_ context.Context, h http.Header) { h.Set("Traceparent", "tp") }))
	require.NoError(t, err)
	require.Equal(t, srv.URL, c.URL(), "no trailing slash")

	var out map[string]string
	_, err = c.Do(ctx, http.MethodPost, "/echo", url.Values{"a": {"1"}}, map[string]int{"n": 1}, &out)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"auth": "Bearer tok", "type": "application/json", "trace": "tp", "body": `{"n":1}`, "query": "a=1"}, out)

	// A json.RawMessage goes as it is, byte for byte (a signed registration).
	_, err = c.WithToken("other").Post(ctx, "/echo", json.RawMessage(`{ "b" : 2 }`), &out)
	require.NoError(t, err)
	require.Equal(t, `{ "b" : 2 }`, out["body"])
	require.Equal(t, "Bearer other", out["auth"])

	// A mutating request says JSON even without a body (the orchestrator answers 415 otherwise);
	// a read does not.
	for method, want := range map[string]string{http.MethodPost: "application/json", http.MethodDelete: "application/json", http.MethodGet: ""} {
		_, err := c.Do(ctx, method, "/echo", nil, nil, &out)
		require.NoError(t, err)
		require.Equal(t, want, out["type"], method)
	}

	// The API's error body.
	_, err = c.Get(ctx, "/missing", nil, &out)
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusNotFound, apiErr.Status)
	require.Equal(t, "NOPE", apiErr.Code)
	require.JSONEq(t, `{"id":"x"}`, string(apiErr.Details))
	require.EqualError(t, err, "no such thing (404 NOPE)")
	require.Equal(t, http.StatusNotFound, apiclient.StatusOf(err))
	apiErr.Hint = "look elsewhere"
	require.EqualError(t, err, "no such thing (404 NOPE); look elsewhere")

	// Another body: the status line and the start of it.
	_, err = c.Get(ctx, "/proxy", nil, nil)
	require.EqualError(t, err, "502 Bad Gateway <html>bad gateway</html> (502)")

	// An answer that is not JSON, or does not decode into out, is an error naming the request.
	_, err = c.Get(ctx, "/text", nil, nil)
	require.ErrorContains(t, err, "GET /text: the answer is not JSON")
	var wrong []string
	_, err = c.Post(ctx, "/echo", map[string]int{"n": 1}, &wrong)
	require.ErrorContains(t, err, "POST /echo: unexpected answer")

	_, err = apiclient.New("localhost:3000", "")
	require.Error(t, err)
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more
	c, err := apiclient.New(srv.URL, "")
	require.NoError(t, err)
	_, err = c.Get(context.Background(), "/health", nil, nil)
	var unreachable *apiclient.UnreachableError
	require.ErrorAs(t, err, &unreachable)
	require.EqualError(t, err, "cannot reach the orchestrator at "+srv.URL+" (connection refused)")
	require.True(t, apiclient.Transient(err))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Get(ctx, "/health", nil, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, apiclient.Transient(err))
}

func TestTransient(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{400: false, 401: false, 404: false, 409: false, 429: true, 500: true, 502: true, 503: true, 504: true} {
		require.Equal(t, want, apiclient.Transient(&apiclient.Error{Status: status}), status)
	}
	require.True(t, apiclient.Transient(context.DeadlineExceeded), "the call's own deadline passed")
	require.False(t, apiclient.Transient(errors.New("POST /x: unexpected answer")))
	require.False(t, apiclient.Transient(nil))
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, apiclient.Backoff(n))
	}
	require.Equal(t, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}, got)
}

func TestRetry(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		status, _ := strconv.Atoi(r.URL.Query().Get("until"))
		if int(n) < status {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"busy","code":"DATABASE_UNAVAILABLE"}`))
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	c, err := apiclient.New(srv.URL, "")
	require.NoError(t, err)
	call := func(until string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.Get(ctx, "/", url.Values{"until": {until}}, nil)
			return err
		}
	}

	// Transient failures are retried, each one reported.
	var retried []int
	require.NoError(t, apiclient.Retry(context.Background(), 5, call("3"), func(n int, err error, wait time.Duration) {
		retried = append(retried, n)
		require.Equal(t, apiclient.Backoff(n), wait)
		require.Equal(t, http.StatusServiceUnavailable, apiclient.StatusOf(err))
	}))
	require.Equal(t, []int{1, 2}, retried)
	require.EqualValues(t, 3, calls.Load())

	// Up to attempts calls.
	calls.Store(0)
	err = apiclient.Retry(context.Background(), 2, call("10"), nil)
	require.Equal(t, http.StatusServiceUnavailable, apiclient.StatusOf(err))
	require.EqualValues(t, 2, calls.Load())

	// A failure that is not transient is returned at once.
	calls.Store(0)
	refused := &apiclient.Error{Status: http.StatusUnauthorized}
	err = apiclient.Retry(context.Background(), 5, func(context.Context) error { calls.Add(1); return refused }, nil)
	require.ErrorIs(t, err, refused)
	require.EqualValues(t, 1, calls.Load())
}

// TestDefaultClientKeepsConnections: a client made without WithHTTPClient keeps the connections
// of concurrent calls for the next ones. Two rounds of 64 concurrent calls, each held until all
// 64 arrived (so each needs a connection of its own): the second round opens no new connection
// (with http.DefaultTransport's 2 idle connections per host it opened 62).
func TestDefaultClientKeepsConnections(t *testing.T) {
	t.Parallel()
	const n = 64
	var opened atomic.Int64
	var arrived atomic.Int64
	var round atomic.Pointer[chan struct{}]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1)%n == 0 {
			close(*round.Load())
		}
		<-*round.Load()
		_, _ = w.Write([]byte(`{}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := apiclient.New(srv.URL, "")
	require.NoError(t, err)
	callAll := func() {
		ch := make(chan struct{})
		round.Store(&ch)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, err := c.Get(context.Background(), "/x", nil, nil); err != nil {
					t.Errorf("call: %v", err) // not require: FailNow belongs to the test's goroutine
				}
			})
		}
		wg.Wait()
	}
	callAll()
	require.Equal(t, int64(n), opened.Load(), "the first round opens a connection per call")
	callAll()
	require.Equal(t, int64(n), opened.Load(), "the second round reuses them")
}
