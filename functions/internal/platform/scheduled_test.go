package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

// refusedError is a real error of a connection that PostgreSQL's port refused.
func refusedError(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?connect_timeout=5", testutil.FreePort(t)))
	require.Error(t, err)
	return fmt.Errorf("claim: %w", err)
}

type summary struct {
	Done int `json:"done"`
}

func scheduledFunc(job Job) *Function {
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "path": r.URL.Path})
	})
	return NewScheduled("tick", job, ScheduledOptions{Health: health, Logger: slog.New(slog.DiscardHandler)})
}

func call(t *testing.T, h http.Handler, method, path string) (int, http.Header, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(`{"ignored":true}`)))
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, rec.Result().Header, body
}

func errorBody(t *testing.T, raw []byte) protocol.ErrorBody {
	t.Helper()
	var b protocol.ErrorBody
	require.NoError(t, json.Unmarshal(raw, &b), "%s", raw)
	require.NotEmpty(t, b.Error)
	return b
}

func TestScheduledHTTPFace(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	f := scheduledFunc(func(ctx context.Context) (any, error) { return summary{Done: int(runs.Add(1))}, nil })

	status, hdr, body := call(t, f, "POST", "/")
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	require.JSONEq(t, `{"done":1}`, string(body))

	status, hdr, body = call(t, f, "GET", "/")
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Equal(t, "POST", hdr.Get("Allow"))
	require.Equal(t, "METHOD_NOT_ALLOWED", errorBody(t, body).Code)

	status, _, body = call(t, f, "GET", "/health")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"status":"ok","path":"/health"}`, string(body))

	status, _, body = call(t, f, "POST", "/process")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "ROUTE_NOT_FOUND", errorBody(t, body).Code)
	require.EqualValues(t, 1, runs.Load(), "only POST / runs the job")

	// Mounted under a prefix, as on a server of several functions.
	mounted := http.StripPrefix("/tick", f)
	status, _, body = call(t, mounted, "POST", "/tick")
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.JSONEq(t, `{"done":2}`, string(body))
	status, _, _ = call(t, mounted, "GET", "/tick/health")
	require.Equal(t, http.StatusOK, status)
}

func TestScheduledHTTPFailures(t *testing.T) {
	t.Parallel()
	refused := refusedError(t)
	status, hdr, body := call(t, scheduledFunc(func(context.Context) (any, error) { return nil, refused }), "POST", "/")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "5", hdr.Get("Retry-After"))
	require.Equal(t, "DATABASE_UNAVAILABLE", errorBody(t, body).Code)

	status, _, body = call(t, scheduledFunc(func(context.Context) (any, error) {
		return nil, errors.New("secret cause: relation does not exist")
	}), "POST", "/")
	require.Equal(t, http.StatusInternalServerError, status)
	b := errorBody(t, body)
	require.Equal(t, "INTERNAL", b.Code)
	require.NotContains(t, b.Error, "secret cause", "the cause goes to the logs, not to the caller")
}

func TestScheduledLambdaFace(t *testing.T) {
	t.Parallel()
	f := scheduledFunc(func(context.Context) (any, error) { return summary{Done: 7}, nil })
	for _, payload := range []string{
		`{"version":"0","id":"89d1a02d","detail-type":"Scheduled Event","source":"aws.events","time":"2026-02-03T10:17:00Z","detail":{}}`,
		`{"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler","time":"not a time"}`,
		`{}`, ``, `[1,2,3]`, `"tick"`, `not json at all`,
	} {
		out, err := f.Invoke(context.Background(), []byte(payload))
		require.NoError(t, err, payload)
		require.JSONEq(t, `{"done":7}`, string(out), payload)
	}

	refused := refusedError(t)
	_, err := scheduledFunc(func(context.Context) (any, error) { return nil, refused }).Invoke(context.Background(), []byte(`{}`))
	var du *DatabaseUnavailableError
	require.ErrorAs(t, err, &du)
	require.Equal(t, "tick", du.Function)
	require.ErrorContains(t, err, "tick: the database is unreachable")
	var ce *pgconn.ConnectError
	require.ErrorAs(t, err, &ce, "the cause stays wrapped")

	_, err = scheduledFunc(func(context.Context) (any, error) { return nil, errors.New("boom") }).Invoke(context.Background(), nil)
	var je *JobError
	require.ErrorAs(t, err, &je)
	require.EqualError(t, err, "tick failed: boom")
}
