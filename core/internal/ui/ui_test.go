package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/internal/ui"
)

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

// The index page is served for /ui/ and for client-side routes, each file with its content
// type and revalidation headers, and unknown files are 404.
func TestHandler(t *testing.T) {
	t.Parallel()
	h := ui.Handler()

	res, body := get(t, h, "/ui/", nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'self'")
	require.Contains(t, body, `<script type="module" src="/ui/js/app.js">`)
	etag := res.Header.Get("ETag")
	require.NotEmpty(t, etag)

	for _, route := range []string{"/ui/runs/prun_123", "/ui/pipelines", "/ui/dlq"} {
		res, routeBody := get(t, h, route, nil)
		require.Equal(t, http.StatusOK, res.StatusCode, route)
		require.Equal(t, body, routeBody, route)
	}

	for path, ct := range map[string]string{
		"/ui/style.css":             "text/css; charset=utf-8",
		"/ui/js/app.js":             "text/javascript; charset=utf-8",
		"/ui/js/api.js":             "text/javascript; charset=utf-8",
		"/ui/js/pages/run.js":       "text/javascript; charset=utf-8",
		"/ui/js/pages/pipelines.js": "text/javascript; charset=utf-8",
	} {
		res, body := get(t, h, path, nil)
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		require.Equal(t, ct, res.Header.Get("Content-Type"), path)
		require.Equal(t, "no-cache", res.Header.Get("Cache-Control"), path)
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), path)
		require.NotEmpty(t, body, path)
	}

	// Every module the entry point imports is served.
	_, app := get(t, h, "/ui/js/app.js", nil)
	for _, line := range strings.Split(app, "\n") {
		if i := strings.Index(line, "from './"); i >= 0 && strings.HasPrefix(line, "import") {
			mod := strings.TrimSuffix(strings.TrimSpace(line[i+len("from './"):]), "';")
			res, _ := get(t, h, "/ui/js/"+mod, nil)
			require.Equal(t, http.StatusOK, res.StatusCode, "module %s", mod)
		}
	}

	// A matching ETag is a 304.
	res, _ = get(t, h, "/ui/", map[string]string{"If-None-Match": etag})
	require.Equal(t, http.StatusNotModified, res.StatusCode)

	for _, path := range []string{"/ui/nope.js", "/ui/js/missing.js", "/ui/static/index.html.bak", "/ui/favicon.ico"} {
		res, _ := get(t, h, path, nil)
		require.Equal(t, http.StatusNotFound, res.StatusCode, path)
	}

	req := httptest.NewRequest(http.MethodPost, "/ui/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}
