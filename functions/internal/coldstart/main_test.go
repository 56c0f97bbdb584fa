package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// TestColdstartRuns runs the whole measurement, small, on a test database.
func TestColdstartRuns(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the functions and the emulator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"-n", "1", "-tasks", "30", "-rounds", "1", "-database-url", testdb.NewURL(t)}, &out, &errOut)
	require.NoError(t, err, "stderr:\n%s", errOut.String())
	for _, want := range []string{
		"api cold start, Cloud Run style",
		"api cold start, Lambda emulator",
		"heartbeat-sweep cold start, Lambda emulator",
		"process, one invocation over 30 ready tasks",
		"last summary: claimed 30, dispatched 30, failed 0",
		"reproduce: go run ./functions/internal/coldstart -n 1 -tasks 30 -rounds 1",
	} {
		require.Contains(t, out.String(), want)
	}
}

func TestColdstartRefusesBadFlags(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.ErrorContains(t, run(context.Background(), []string{"-n", "0"}, &out, &errOut), "at least 1")
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &errOut))
	require.ErrorContains(t, run(context.Background(), []string{"-bootstraps", t.TempDir()}, &out, &errOut), "bootstrap of api")
}
