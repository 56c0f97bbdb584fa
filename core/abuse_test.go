package core_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/internal/testorch"
	sdk "github.com/pipeweave/pipeweave/worker"
)

const abuseKey = "abuse-test-api-key"

// serveAbuse starts an orchestrator with an API key and a registered task "noop", served
// through core's own HTTP server (Config.HTTPServer) on a loopback port; it returns the
// orchestrator and the address.
func serveAbuse(t *testing.T, configure func(*core.Config)) (*testorch.Orchestrator, string) {
	t.Helper()
	o := testorch.Start(t, testorch.Options{Configure: func(c *core.Config) {
		c.APIKeys = []string{abuseKey}
		configure(c)
	}})
	w := o.Worker(t, "abuse")
	require.NoError(t, w.Register("noop", sdk.Options{}, func(*sdk.Context) (any, error) { return nil, nil }))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
	return o, serveHTTP(t, o)
}

// serveHTTP serves o through core's own HTTP server (Config.HTTPServer) on a loopback port
// until the test ends, and returns the address.
func serveHTTP(t *testing.T, o *testorch.Orchestrator) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- o.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-served)
	})
	return ln.Addr().String()
}

// freshRequest sends one request on a new connection and returns its status, headers and body.
func freshRequest(t *testing.T, addr, method, path, key, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	// A generous guard only: a hanging server fails the test instead of blocking it.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
	return resp.StatusCode, resp.Header, sb.String()
}

// slowBody is a request whose body is sent one byte at a time, far slower than the server
// reads it: the answer it got (nil when the connection was closed without one) and whether
// its body was complete by then.
type slowBody struct {
	conn     net.Conn
	answered chan *answer
	stop     chan struct{}
	done     chan struct{}
	complete atomic.Bool
}

func startSlowBody(t *testing.T, addr, path, key string) *slowBody {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	const size = 100000
	_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n{", path, auth, size)
	require.NoError(t, err)
	s := &slowBody{conn: conn, answered: make(chan *answer, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			s.answered <- nil
			return
		}
		var e struct{ Code string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		_ = resp.Body.Close()
		s.answered <- &answer{Status: resp.StatusCode, Header: resp.Header, Code: e.Code, Close: resp.Close}
	}()
	go func() {
		defer close(s.done)
		for sent := 1; sent < size; sent++ {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
		s.complete.Store(true)
	}()
	t.Cleanup(func() {
		close(s.stop)
		_ = conn.Close()
		<-s.done
	})
	return s
}

// answer is the response to a slow body: its status, headers, error code, and whether the
// server closes the connection after it.
type answer struct {
	Status int
	Header http.Header
	Code   string
	Close  bool
}

// result waits (with a generous guard) for the answer to s; nil when the connection was closed
// without one.
func (s *slowBody) result(t *testing.T) *answer {
	t.Helper()
	select {
	case resp := <-s.answered:
		require.False(t, s.complete.Load(), "the slow body was read to its end")
		return resp
	case <-time.After(60 * time.Second):
		t.Fatal("a slow body was neither answered nor cut off")
		return nil
	}
}

// Many slow-header connections (slowloris), four times MAX_CONNECTIONS, are held open: the
// server keeps accepting, closes the longest-waiting ones to stay within the cap, and /health
// and an authenticated enqueue on fresh connections are answered. (Issue 10: ~21,000 idle
// connections exhausted the process's descriptors and /health timed out.)
func TestSlowConnectionsAreCappedAndHealthAnswers(t *testing.T) {
	t.Parallel()
	const maxConns, slow = 50, 200
	o, addr := serveAbuse(t, func(c *core.Config) {
		c.MaxConnections = maxConns
		// Longer than the test: the cap, not the header timeout, closes the slow connections.
		c.HTTPReadHeaderTimeout = 2 * time.Minute
		c.HTTPReadTimeout = 2 * time.Minute
	})

	var closed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range slow {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		// Half a request line, and nothing more until the server gives up on the connection.
		_, err = fmt.Fprintf(conn, "GET /health?slow=%d HTT", i)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			_, _ = conn.Read(buf) // returns when the server closes the connection
			closed.Add(1)
		}()
		go func() {
			<-stop
			_ = conn.Close()
		}()
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	// Every connection beyond the cap was closed by the server: at most maxConns stay open.
	require.Eventually(t, func() bool { return closed.Load() >= slow-maxConns }, 30*time.Second, 10*time.Millisecond,
		"the server closed %d of %d slow connections", closed.Load(), slow)

	status, _, body := freshRequest(t, addr, "GET", "/health", "", "")
	require.Equal(t, http.StatusOK, status, body)
	// The fresh connection pushed out one more slow one (the longest-waiting), not the other
	// way round.
	require.Eventually(t, func() bool { return closed.Load() >= slow-maxConns+1 }, 30*time.Second, 10*time.Millisecond,
		"the server closed %d of %d slow connections", closed.Load(), slow)
	status, _, body = freshRequest(t, addr, "POST", "/api/queue/task", abuseKey, `{"taskId":"noop","input":{}}`)
	require.Equal(t, http.StatusCreated, status, body)
	var runs int
	require.NoError(t, o.Pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs").Scan(&runs))
	require.Equal(t, 1, runs)
}

// Slow bodies without credentials take slots only from their own small pool: once it is full
// the next one is answered 503 BODY_SLOTS_BUSY with Retry-After, an authenticated enqueue is
// still served, and the slow bodies are cut off by HTTP_READ_TIMEOUT_MS. A request refused
// before its body is read (no API key) takes no slot, is answered at once, and its connection
// is closed rather than read on. The authenticated pool is bounded the same way.
func TestBodyPoolsKeepUnauthenticatedBodiesApart(t *testing.T) {
	t.Parallel()
	const anon, authed = 2, 3
	o, addr := serveAbuse(t, func(c *core.Config) {
		c.MaxUnauthenticatedBodies = anon
		c.MaxConcurrentBodies = authed
		c.HTTPReadTimeout = 4 * time.Second
		// Node SDK 1.x workers register without a token: in compat mode such a registration's
		// body is read without any credential (elsewhere a tokenless one is refused unread).
		c.Compat = core.CompatNodeSDKv1
	})

	// Tokenless registrations (compat mode) are read without a credential: the
	// unauthenticated pool.
	var regs []*slowBody
	for range 4 * anon {
		regs = append(regs, startSlowBody(t, addr, "/api/register", ""))
	}
	// Without the API key: refused unread, at once, and the connection is not kept.
	noKey := startSlowBody(t, addr, "/api/queue/batch", "")
	resp := noKey.result(t)
	require.NotNil(t, resp)
	require.Equal(t, http.StatusUnauthorized, resp.Status)
	require.True(t, resp.Close, "a response before the body was read closes the connection")

	// The registrations beyond the pool are refused once the pool is full.
	busy := 0
	var cut []*answer
	for _, s := range regs {
		resp := s.result(t)
		if resp != nil && resp.Status == http.StatusServiceUnavailable {
			busy++
			require.Equal(t, "BODY_SLOTS_BUSY", resp.Code)
			require.Equal(t, "1", resp.Header.Get("Retry-After"))
			require.True(t, resp.Close)
			if busy == 1 {
				// While slow registrations fill their pool, an authenticated request is served.
				status, _, body := freshRequest(t, addr, "POST", "/api/queue/task", abuseKey, `{"taskId":"noop","input":{}}`)
				require.Equal(t, http.StatusCreated, status, body)
			}
			continue
		}
		cut = append(cut, resp)
	}
	require.GreaterOrEqual(t, busy, 1, "no slow registration was refused a slot")
	require.LessOrEqual(t, len(cut), 4*anon-1)
	for _, resp := range cut {
		// Cut off by the read timeout: a 4xx answer, or the connection closed.
		if resp != nil {
			require.GreaterOrEqual(t, resp.Status, 400)
			require.Less(t, resp.Status, 500)
		}
	}

	// The authenticated pool has its own bound: slow authenticated bodies beyond it get 503.
	var enq []*slowBody
	for range 3 * authed {
		enq = append(enq, startSlowBody(t, addr, "/api/queue/task", abuseKey))
	}
	busy = 0
	for _, s := range enq {
		if resp := s.result(t); resp != nil && resp.Status == http.StatusServiceUnavailable {
			busy++
			require.Equal(t, "BODY_SLOTS_BUSY", resp.Code)
			require.Equal(t, "1", resp.Header.Get("Retry-After"))
		}
	}
	require.GreaterOrEqual(t, busy, 1, "no slow authenticated body was refused a slot")

	// Nothing was written by the refused requests, and the server still serves.
	var runs, services int
	require.NoError(t, o.Pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs").Scan(&runs))
	require.Equal(t, 1, runs)
	require.NoError(t, o.Pool.QueryRow(context.Background(), "SELECT count(*) FROM services").Scan(&services))
	require.Equal(t, 1, services)
	status, _, body := freshRequest(t, addr, "GET", "/health", "", "")
	require.Equal(t, http.StatusOK, status, body)
}

// TestConfigAbuseLimits reads MAX_CONNECTIONS, MAX_CONCURRENT_BODIES,
// MAX_UNAUTHENTICATED_BODIES and HTTP_READ_HEADER_TIMEOUT_MS: defaults, set values, refused ones.
func TestConfigAbuseLimits(t *testing.T) {
	t.Parallel()
	env := configEnv
	cfg, err := core.ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Zero(t, cfg.MaxConnections, "automatic")
	require.Equal(t, 128, cfg.MaxConcurrentBodies)
	require.Equal(t, 16, cfg.MaxUnauthenticatedBodies)
	require.Equal(t, 10*time.Second, cfg.HTTPReadHeaderTimeout)
	srv := cfg.HTTPServer(nil)
	require.Equal(t, 10*time.Second, srv.ReadHeaderTimeout)
	require.NotNil(t, srv.ConnState)
	auto := core.DefaultMaxConnections()
	require.GreaterOrEqual(t, auto, 64)
	require.LessOrEqual(t, auto, 4096)

	cfg, err = core.ConfigFromEnv(env(map[string]string{"MAX_CONNECTIONS": "300", "MAX_CONCURRENT_BODIES": "200",
		"MAX_UNAUTHENTICATED_BODIES": "4", "HTTP_READ_HEADER_TIMEOUT_MS": "2000", "HTTP_READ_TIMEOUT_MS": "1500"}))
	require.NoError(t, err)
	require.Equal(t, 300, cfg.MaxConnections)
	require.Equal(t, 200, cfg.MaxConcurrentBodies)
	require.Equal(t, 4, cfg.MaxUnauthenticatedBodies)
	require.Equal(t, 2*time.Second, cfg.HTTPReadHeaderTimeout)
	// The header timeout is never longer than the read timeout.
	require.Equal(t, 1500*time.Millisecond, cfg.HTTPServer(nil).ReadHeaderTimeout)

	for _, over := range []map[string]string{
		{"MAX_CONNECTIONS": "-1"},
		{"MAX_CONNECTIONS": "x"},
		// Smaller than the body pools plus headroom: every connection could be in a request.
		{"MAX_CONNECTIONS": "207"},
		{"MAX_CONCURRENT_BODIES": "0"},
		{"MAX_UNAUTHENTICATED_BODIES": "0"},
		{"HTTP_READ_HEADER_TIMEOUT_MS": "99"},
	} {
		_, err := core.ConfigFromEnv(env(over))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, "%v", over)
		for name := range over {
			require.Equal(t, name, ce.Var)
		}
	}
	// At the limit: 128 + 16 + 64.
	_, err = core.ConfigFromEnv(env(map[string]string{"MAX_CONNECTIONS": "208"}))
	require.NoError(t, err)
}
