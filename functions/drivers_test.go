package functions_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cloudPackages are packages only the cloud storage drivers bring in.
var cloudPackages = []string{
	"github.com/pipeweave/pipeweave/core/storage/s3",
	"github.com/pipeweave/pipeweave/core/storage/gcs",
	"github.com/pipeweave/pipeweave/core/storage/minio",
	"github.com/aws/aws-sdk-go-v2/service/s3",
	"cloud.google.com/go/storage",
	"github.com/minio/minio-go/v7",
}

// deps lists the packages pkg links when built as a Lambda bootstrap with the extra build tags.
func deps(t *testing.T, pkg string, tags ...string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-tags", strings.Join(append([]string{"lambda.norpc"}, tags...), ","), pkg)
	cmd.Env = append(cmd.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	out, err := cmd.Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// Each function links the storage drivers it needs: heartbeat-sweep none, the others those
// of core/storage/drivers, all four by default and fewer with the pipeweave_no_* tags.
func TestFunctionsLinkOnlyTheirStorageDrivers(t *testing.T) {
	t.Parallel()
	sweep := deps(t, "github.com/pipeweave/pipeweave/functions/heartbeat-sweep")
	for _, p := range append(cloudPackages, "github.com/pipeweave/pipeweave/core/storage/local") {
		require.NotContains(t, sweep, p, "heartbeat-sweep never touches storage")
	}
	for _, name := range []string{"api", "process", "dlq-purge"} {
		all := deps(t, "github.com/pipeweave/pipeweave/functions/"+name)
		for _, p := range cloudPackages[:3] {
			require.Contains(t, all, p, "%s links every driver by default", name)
		}
	}
	some := deps(t, "github.com/pipeweave/pipeweave/functions/api", "pipeweave_no_gcs", "pipeweave_no_minio")
	require.Contains(t, some, "github.com/pipeweave/pipeweave/core/storage/local")
	require.Contains(t, some, "github.com/pipeweave/pipeweave/core/storage/s3")
	require.False(t, slices.ContainsFunc(some, func(p string) bool {
		return strings.HasPrefix(p, "cloud.google.com/go/storage") || strings.HasPrefix(p, "github.com/minio/") ||
			strings.HasSuffix(p, "core/storage/gcs") || strings.HasSuffix(p, "core/storage/minio")
	}), "STORAGE_DRIVERS=local,aws-s3 leaves gcs and minio out")
}
