package core_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// GET / points a browser at the dashboard; other methods and unknown paths keep the JSON 404.
func TestRootRedirectsToTheDashboard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, err := http.NewRequest(method, e.url+"/", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusFound, resp.StatusCode, method)
		require.Equal(t, "/ui/", resp.Header.Get("Location"), method)
	}
	// Followed, the redirect ends at the dashboard's page.
	resp, err := http.Get(e.url + "/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))

	for _, c := range []struct{ method, path string }{{"POST", "/"}, {"GET", "/index.html"}, {"GET", "/api/"}} {
		r := e.do(c.method, c.path, nil, "")
		require.Equal(t, http.StatusNotFound, r.Status, "%s %s: %s", c.method, c.path, r.Body)
		require.Equal(t, "ROUTE_NOT_FOUND", r.errorBody(t).Code)
	}
}
