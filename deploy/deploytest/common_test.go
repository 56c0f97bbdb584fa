package deploytest

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// function is one deployed function as every platform names it.
type function struct {
	logicalID string // AWS::Serverless::Function in template.yaml, Makefile target build-<logicalID>
	dir       string // functions/<dir>; also the binary's name in the Cloud Run image
	service   string // Cloud Run service
	schedule  string // EventBridge schedule expression; "" for the API
	cron      string // Cloud Scheduler schedule (unix cron), the same times as schedule
}

// functions are the four functions of the design (shared/design.md: functions/*).
var functions = []function{
	{logicalID: "ApiFunction", dir: "api", service: "pipeweave-api"},
	{logicalID: "ProcessFunction", dir: "process", service: "pipeweave-process", schedule: "rate(1 minute)", cron: "* * * * *"},
	{logicalID: "HeartbeatSweepFunction", dir: "heartbeat-sweep", service: "pipeweave-heartbeat-sweep", schedule: "rate(1 minute)", cron: "* * * * *"},
	{logicalID: "DlqPurgeFunction", dir: "dlq-purge", service: "pipeweave-dlq-purge", schedule: "cron(0 3 * * ? *)", cron: "0 3 * * *"},
}

// dispatchTimeoutMs is the default DISPATCH_TIMEOUT_MS (README.md, Configuration): a process
// batch may still wait this long for its last dispatch after its time budget.
const dispatchTimeoutMs = 10000

// repoRoot is the directory of go.mod, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "expected the module root two levels above deploy/deploytest")
	return root
}

// readRepoFile returns the content of a file given relative to the repository root.
func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	require.NoError(t, err)
	return string(b)
}

// goarch maps a Lambda architecture to GOARCH.
var goarch = map[string]string{"x86_64": "amd64", "arm64": "arm64"}

// requireMainPackage fails unless pkg ("./functions/api", "./cmd/pipeweave") is a directory of
// the repository holding a main package when built for linux/arch with CGO off.
func requireMainPackage(t *testing.T, pkg, arch string) {
	t.Helper()
	require.True(t, strings.HasPrefix(pkg, "./"), "package %q must be a path relative to the module root", pkg)
	dir := filepath.Join(repoRoot(t), filepath.FromSlash(strings.TrimPrefix(pkg, "./")))
	info, err := os.Stat(dir)
	require.NoError(t, err, "%s is built for a deployed function but does not exist", pkg)
	require.True(t, info.IsDir(), "%s is not a directory", pkg)
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "linux", arch, false
	ctx.BuildTags = []string{"lambda.norpc"}
	p, err := ctx.ImportDir(dir, 0)
	require.NoError(t, err, "%s has no Go package for linux/%s", pkg, arch)
	require.Equal(t, "main", p.Name, "%s must hold a main package, it holds package %s", pkg, p.Name)
}
