package httpjson_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/httpjson"
)

func TestCall(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"auth":"` + r.Header.Get("Authorization") + `","type":"` + r.Header.Get("Content-Type") + `","body":` + string(body) + `}`))
		case "/type":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"type":"` + r.Header.Get("Content-Type") + `"}`))
		default:
			http.Error(w, `{"error":"no such thing","code":"NOPE"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	var out struct {
		Auth, Type string
		Body       map[string]int
	}
	require.NoError(t, httpjson.Call(ctx, srv.Client(), http.MethodPost, srv.URL+"/echo", "tok", map[string]int{"n": 1}, &out))
	require.Equal(t, "Bearer tok", out.Auth)
	require.Equal(t, "application/json", out.Type)
	require.Equal(t, map[string]int{"n": 1}, out.Body)

	err := httpjson.Call(ctx, srv.Client(), http.MethodGet, srv.URL+"/missing", "", nil, &out)
	var status *httpjson.StatusError
	require.True(t, errors.As(err, &status), "%v", err)
	require.Equal(t, http.StatusNotFound, status.Status)
	require.JSONEq(t, `{"error":"no such thing","code":"NOPE"}`, string(status.Body))
	require.Contains(t, err.Error(), "GET "+srv.URL+"/missing answered 404 Not Found")

	// A mutating request says JSON even without a body (the orchestrator answers 415 otherwise);
	// a read does not.
	for method, want := range map[string]string{http.MethodPost: "application/json", http.MethodDelete: "application/json", http.MethodGet: ""} {
		var got struct{ Type string }
		require.NoError(t, httpjson.Call(ctx, srv.Client(), method, srv.URL+"/type", "", nil, &got))
		require.Equal(t, want, got.Type, method)
	}

	// An answer that does not decode into out is an error naming the request.
	var wrong []string
	err = httpjson.Call(ctx, srv.Client(), http.MethodPost, srv.URL+"/echo", "", map[string]int{"n": 1}, &wrong)
	require.ErrorContains(t, err, "unexpected answer")
}
