package storage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

// The local backend as upstream's README and .env.example write it: endpoint file:// and a
// bucket, both accepted and ignored (objects live at basePath/key).
func TestLocalBackendUpstreamForm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, endpoint := range []string{"", "file://", "file:///var/lib/pipeweave"} {
		cfgs, err := storage.ParseConfigs(`[{"id":"primary","provider":"local","endpoint":"` + endpoint +
			`","bucket":"data","credentials":{"basePath":"` + dir + `"},"isDefault":true}]`)
		require.NoError(t, err, endpoint)
		require.Equal(t, "data", cfgs[0].Bucket)
		b, err := storage.Open(t.Context(), cfgs[0])
		require.NoError(t, err)
		require.NoError(t, storage.PutBytes(t.Context(), b, "runs/x/output.json", []byte(`{}`), "application/json"))
		require.FileExists(t, dir+"/runs/x/output.json")
		require.NoDirExists(t, dir+"/data")
	}
	for _, endpoint := range []string{"http://localhost:9000", "s3://bucket", "./storage", "::"} {
		_, err := storage.ParseConfigs(`[{"id":"primary","provider":"local","endpoint":"` + endpoint +
			`","credentials":{"basePath":"` + dir + `"}}]`)
		require.ErrorContains(t, err, `storage backend "primary": endpoint must be empty or a file:// URL for provider local`, endpoint)
	}
	// Other providers keep the http(s) rule.
	_, err := storage.ParseConfigs(`[{"id":"m","provider":"minio","endpoint":"file://","bucket":"b","credentials":{"accessKey":"a","secretKey":"s"}}]`)
	require.ErrorContains(t, err, "endpoint must be an http:// or https:// URL")
}

// RedactedEndpoint shows an endpoint as configured, without a URL password.
func TestRedactedEndpoint(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                     "",
		"file://":                              "file://",
		"https://s3.amazonaws.com":             "https://s3.amazonaws.com",
		"http://user:hunter2@minio:9000/x":     "http://user:xxxxx@minio:9000/x",
		"http://user@minio:9000":               "http://user@minio:9000",
		"http://[::1]:namedport/not a url\x7f": "[redacted]",
	} {
		require.Equal(t, want, storage.Config{Endpoint: in}.RedactedEndpoint(), in)
	}
}
