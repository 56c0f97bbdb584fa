package storage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

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
