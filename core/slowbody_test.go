package core_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// A client sending its body one byte at a time, slower than HTTP_READ_TIMEOUT_MS allows, is cut
// off: the server answers or closes the connection before the body is complete, and nothing is
// written. (Issue 10: a chunked body at 1 byte per 10 s was accepted after 150 s.)
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	o := testorch.Start(t, testorch.Options{Configure: func(c *core.Config) { c.HTTPReadTimeout = 300 * time.Millisecond }})
	addr := serveHTTP(t, o)

	for _, path := range []string{"/api/queue/task", "/api/callback/run-x", "/api/heartbeat"} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		const size = 2000 // far more bytes than the timeout lets through at this pace
		_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, size)
		require.NoError(t, err)
		answered := make(chan *http.Response, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				resp = nil // the connection was closed without an answer
			}
			answered <- resp
		}()
		sent, cut := 1, false
		var resp *http.Response
		for sent < size && !cut {
			select {
			case resp = <-answered:
				cut = true
			case <-time.After(20 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					cut = true
					resp = <-answered
				} else {
					sent++
				}
			}
		}
		require.True(t, cut, "%s: the server read the whole slow body", path)
		require.Less(t, sent, size)
		if resp != nil {
			require.GreaterOrEqual(t, resp.StatusCode, 400, "%s: a cut-off body is refused", path)
		}
		_ = conn.Close()
	}
	var runs int
	require.NoError(t, o.Pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs").Scan(&runs))
	require.Zero(t, runs)
	// The server still serves.
	resp, err := http.Get("http://" + addr + "/health")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
