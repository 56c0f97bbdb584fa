package fakegcs_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	_ "github.com/pipeweave/pipeweave/core/storage/gcs"
	"github.com/pipeweave/pipeweave/internal/fakegcs"
)

// send does req and returns the status and the body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestGateAndTokenEndpoint(t *testing.T) {
	t.Parallel()
	srv := fakegcs.Start(t)
	srv.CreateBucket(t, "b")
	get := func(token string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/storage/v1/b/b", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(t, req)
	}

	status, _ := get("")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = get("wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body := get(fakegcs.AccessToken)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `"name":"b"`)
	require.EqualValues(t, 1, srv.Authorized())
	require.EqualValues(t, 2, srv.Unauthorized())
	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	require.False(t, reqs[0].Authorized || reqs[1].Authorized)
	require.True(t, reqs[2].Authorized)
	require.Equal(t, "/storage/v1/b/b", reqs[2].Path)

	// Grants that are not a JWT-bearer assertion signed by the key are refused.
	for _, form := range []url.Values{
		{"grant_type": {"client_credentials"}},
		{"grant_type": {fakegcs.JWTBearerGrant}, "assertion": {"a.b.c"}},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.TokenURL, strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		status, body := send(t, req)
		require.Equal(t, http.StatusBadRequest, status)
		require.Contains(t, body, "invalid_grant")
	}
	accepted, refused := srv.Grants()
	require.Empty(t, accepted)
	require.Len(t, refused, 2)
}

func TestConfigAuthenticatesThroughTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	srv := fakegcs.Start(t)
	srv.CreateBucket(t, "data")
	cfg := srv.Config("gcs", "data")
	require.NoError(t, cfg.Validate())
	b, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })

	require.NoError(t, storage.PutBytes(t.Context(), b, "k/v.txt", []byte("hello"), ""))
	obj, err := srv.Emulator().GetObject("data", "k/v.txt")
	require.NoError(t, err)
	require.Equal(t, "hello", string(obj.Content))

	accepted, refused := srv.Grants()
	require.Empty(t, refused)
	require.Len(t, accepted, 1)
	require.Equal(t, fakegcs.ClientEmail, accepted[0].Claims["iss"])
	require.Positive(t, srv.Authorized())
	require.Zero(t, srv.Unauthorized())

	// A refusing token endpoint stops every API request.
	srv.SetTokenStatus(http.StatusForbidden)
	other, err := storage.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, other.Close()) })
	before := srv.Authorized()
	_, err = storage.ReadAll(t.Context(), other, "k/v.txt")
	require.Error(t, err)
	require.Equal(t, before, srv.Authorized())
}
