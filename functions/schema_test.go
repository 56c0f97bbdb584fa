package functions_test

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

// TestFunctionsRefuseToStartOnAMissingSchema starts each function on a database without the
// PipeWeave schema: each exits 1 before serving, with one line naming `pipeweave db migrate`,
// and creates nothing (so a Cloud Run revision deployed before the migration never becomes
// ready and the previous one keeps serving).
func TestFunctionsRefuseToStartOnAMissingSchema(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := testdb.New(t)
	_, err := pool.Exec(ctx, "DROP SCHEMA "+migrate.Schema+" CASCADE")
	require.NoError(t, err)
	url := pool.Config().ConnString()
	for _, name := range functionNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := with(functionEnv(t, url), "PORT", strconv.Itoa(testutil.FreePort(t)), "PIPEWEAVE_API_KEYS", "key-one")
			delete(env, "PIPEWEAVE_INSECURE_NO_AUTH") // which would log its warning first
			p := startProc(t, name, bins[name], nil, env, false)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s kept running on a database without the schema; output:\n%s", name, p.output)
			}
			var exit *exec.ExitError
			require.True(t, errors.As(p.err, &exit), "%s: %v", name, p.err)
			require.Equal(t, 1, exit.ExitCode())
			out := strings.TrimSpace(p.output.String())
			require.Equal(t, name+": the database has no PipeWeave schema: "+migrate.Fix, out, "one line, and nothing before it")
		})
	}
	st, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.False(t, st.Exists, "refusing created nothing")
}
