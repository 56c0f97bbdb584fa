package fakes3_test

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/fakes3"
)

// sha256Hasher is the SHA-256 hasher minio-go's signer wants.
type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

// streamingPut builds a PUT of data to bucket/key signed with aws-chunked
// streaming signatures, with tamper applied to the encoded body.
func streamingPut(t *testing.T, srv *fakes3.Server, secret, path string, data []byte, tamper func([]byte)) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL+path, io.NopCloser(bytes.NewReader(data)))
	require.NoError(t, err)
	req = signer.StreamingSignV4(req, srv.AccessKey, secret, "", srv.Region, int64(len(data)), time.Now().UTC(), sha256Hasher{sha256.New()})
	body, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	tamper(body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	return req
}

func TestSignatureChecks(t *testing.T) {
	t.Parallel()
	srv := fakes3.Start(t, fakes3.Options{})
	srv.CreateBucket(t, "b")
	data := bytes.Repeat([]byte("pipeweave "), 10_000) // two 64 KiB chunks
	send := func(req *http.Request) (int, string) {
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}

	status, body := send(streamingPut(t, srv, srv.SecretKey, "/b/ok", data, func([]byte) {}))
	require.Equal(t, http.StatusOK, status, body)

	status, body = send(streamingPut(t, srv, "wrong", "/b/bad-secret", data, func([]byte) {}))
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "SignatureDoesNotMatch")

	// A chunk altered after signing: the seed signature holds, the chunk's
	// does not.
	status, body = send(streamingPut(t, srv, srv.SecretKey, "/b/tampered", data, func(b []byte) {
		i := bytes.Index(b, []byte("pipeweave"))
		b[i] = 'P'
	}))
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "chunk signature")

	// Anonymous requests are refused.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/b/ok", nil)
	require.NoError(t, err)
	status, body = send(req)
	require.Equal(t, http.StatusForbidden, status)
	require.Contains(t, body, "AccessDenied")

	// Only the correctly signed upload reached gofakes3.
	reqs := srv.Requests()
	require.Len(t, reqs, 4)
	require.False(t, reqs[0].Refused)
	require.True(t, reqs[1].Refused && reqs[2].Refused && reqs[3].Refused)
	require.Equal(t, 1, srv.Count(func(r fakes3.Request) bool { return !r.Refused && strings.HasSuffix(r.Path, "/ok") }))
}
