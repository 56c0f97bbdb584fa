package worker_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The SDK links the local storage driver only: a worker binary links the cloud providers'
// SDKs only when it imports their drivers.
func TestSDKLinksNoCloudStorageDriver(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/pipeweave/pipeweave/worker").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/pipeweave/pipeweave/core/storage/local")
	for _, p := range []string{
		"github.com/pipeweave/pipeweave/core/storage/s3", "github.com/pipeweave/pipeweave/core/storage/gcs",
		"github.com/pipeweave/pipeweave/core/storage/minio", "github.com/aws/aws-sdk-go-v2/service/s3",
		"cloud.google.com/go/storage", "github.com/minio/minio-go/v7",
	} {
		require.NotContains(t, deps, p)
	}
}
