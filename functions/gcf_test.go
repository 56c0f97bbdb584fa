package functions_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

// The functions registered with the Functions Framework for Go answer as Cloud Run functions
// would run them.
func TestFunctionsFramework(t *testing.T) {
	t.Parallel()
	skipShort(t)
	bin := filepath.Join(t.TempDir(), "gcf-local")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pipeweave/pipeweave/functions/gcf/cmd/gcf-local").CombinedOutput()
	require.NoError(t, err, "%s", out)
	env := functionEnv(t, testdb.NewURL(t))
	for _, target := range []string{"API", "Process", "HeartbeatSweep", "DLQPurge"} {
		port := testutil.FreePort(t)
		// The Functions Framework ends on SIGTERM without a graceful shutdown of its own.
		p := startProc(t, "gcf-"+target, bin, nil, with(env, "PORT", strconv.Itoa(port), "FUNCTION_TARGET", target), false)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		method, path, want := http.MethodPost, "/", "durationMs"
		if target == "API" {
			method, path, want = http.MethodGet, "/api/queue/status", "pending"
		}
		var status int
		var body []byte
		req, err := http.NewRequest(method, base+path, nil)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			status = resp.StatusCode
			body = make([]byte, 4096)
			n, _ := resp.Body.Read(body)
			body = body[:n]
			return true
		}, 30*time.Second, 10*time.Millisecond, "%s did not start; output:\n%s", target, p.output)
		require.Equal(t, http.StatusOK, status, "%s: %s", target, body)
		require.Contains(t, string(body), want, target)
		_ = p.stop(5 * time.Second)
	}
	_, err = exec.Command(bin).CombinedOutput()
	require.Error(t, err, "no FUNCTION_TARGET")
}
