package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// maintenance status | enter --wait | exit against a real orchestrator: enter waits for the
// run in flight, the work triggered meanwhile waits, exit lets it finish; commands in the
// wrong state fail with the server's 409.
func TestCLIMaintenance(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t, "cli-key")

	out := s.cli("maintenance", "status")
	require.Regexp(t, `(?m)^mode\s+running$`, out)
	require.Regexp(t, `(?m)^in flight\s+0$`, out)
	require.Contains(t, out, "Orchestrator is running normally")

	_, _, err := runCmd(t, s.env(), "maintenance", "exit")
	require.EqualError(t, err, "cannot exit maintenance: the orchestrator is running (409 MAINTENANCE_STATE)")

	// A run whose extract holds: it is in flight when maintenance is requested.
	held := s.trigger("docs", map[string]any{"hold": true})
	s.waitUntil("extract to run", func() bool {
		var st protocol.MaintenanceStatus
		s.api(http.MethodGet, "/api/maintenance", nil, &st)
		return st.RunningTasks == 1
	})
	r := startCmd(t, s.env(), "maintenance", "enter", "--wait", "--poll", "20ms")
	s.waitUntil("the waiting line", func() bool {
		return strings.Contains(r.stdout.String(), "waiting_for_maintenance: waiting for 1 run in flight to finish")
	})
	// Work is still accepted while waiting, and waits.
	waiting := s.trigger("docs", map[string]any{})
	_, _, err = runCmd(t, s.env(), "maintenance", "enter")
	require.EqualError(t, err, "cannot enter maintenance: the orchestrator is already in mode waiting_for_maintenance (409 MAINTENANCE_STATE)")

	s.release()
	select {
	case err = <-r.done:
		r.done <- err
	case <-time.After(time.Minute):
		t.Fatalf("maintenance enter --wait did not return\nstdout:\n%s", r.stdout.String())
	}
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", r.stdout.String(), r.stderr.String())
	require.Contains(t, r.stdout.String(), "maintenance: nothing in flight")

	var st protocol.MaintenanceStatus
	s.cliJSON(&st, "maintenance", "status")
	require.Equal(t, protocol.MaintenanceOn, st.Mode)
	require.True(t, st.CanEnterMaintenance)
	require.Zero(t, st.RunningTasks)
	require.EqualValues(t, 2, st.PendingTasks, "the held run's summarize and the new run's extract wait")
	raw := s.cli("maintenance", "status", "--json")
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &fields))
	for _, k := range []string{"mode", "canEnterMaintenance", "pendingTasks", "runningTasks", "modeChangedAt", "message"} {
		require.Contains(t, fields, k)
	}
	// enter --wait when already in maintenance: the 409, nothing to wait for.
	_, _, err = runCmd(t, s.env(), "maintenance", "enter", "--wait")
	require.ErrorContains(t, err, "already in mode maintenance (409 MAINTENANCE_STATE)")

	out = s.cli("maintenance", "exit")
	require.Regexp(t, `(?m)^mode\s+running$`, out)
	require.Equal(t, protocol.PipelineCompleted, s.waitRun(held).Status)
	require.Equal(t, protocol.PipelineCompleted, s.waitRun(waiting).Status)

	// Straight to maintenance when nothing is in flight; --json prints the status.
	s.cliJSON(&st, "maintenance", "enter", "--wait")
	require.Equal(t, protocol.MaintenanceOn, st.Mode)
	s.cliJSON(&st, "maintenance", "exit")
	require.Equal(t, protocol.MaintenanceOff, st.Mode)

	// Usage errors send nothing.
	_, _, err = runCmd(t, s.env(), "maintenance", "enter", "--poll", "0s", "--wait")
	require.EqualError(t, err, "maintenance enter: --poll must be positive, got 0s")
	_, _, err = runCmd(t, s.env(), "maintenance", "pause")
	require.EqualError(t, err, `unknown maintenance command "pause"`)
	_, _, err = runCmd(t, s.env(), "maintenance", "status", "extra")
	require.ErrorContains(t, err, `unexpected argument "extra"`)
	_, _, err = runCmd(t, map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": s.url}, "maintenance", "status")
	require.ErrorContains(t, err, "(401 UNAUTHORIZED)")
}
