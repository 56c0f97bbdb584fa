package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// pipeweave schedules put, list, get and delete against a real orchestrator, whose process
// function fires the schedule; a bad expression is the server's 400 naming the field.
func TestCLISchedules(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	var put protocol.Schedule
	s.cliJSON(&put, "schedules", "put", "every-second", "--cron", "* * * * * *", "--task", "summarize", "--input", `{"n":1}`, "--overlap", "skip")
	require.Equal(t, "skip", put.Overlap)
	require.JSONEq(t, `{"n":1}`, string(put.Input))
	require.Len(t, put.NextFireTimes, 5)

	// The process function (serverless, as this stack runs) fires it; its run completes.
	var got protocol.Schedule
	s.waitUntil("a fired slot", func() bool {
		s.api(http.MethodPost, "/api/process", nil, nil)
		s.api(http.MethodGet, "/api/schedules/every-second", nil, &got)
		return got.LastRunID != ""
	})
	run := s.waitTaskRun(got.LastRunID)
	require.Equal(t, protocol.StatusCompleted, run.Status)
	require.Equal(t, "every-second", run.ScheduleID)

	out := s.cli("schedules", "list")
	require.Regexp(t, `(?m)^SCHEDULE\s+FIRES\s+CRON\s+TIMEZONE\s+NEXT\s+LAST RUN\s+MISSED\n`, out)
	require.Regexp(t, `(?m)^every-second\s+task summarize\s+\* \* \* \* \* \*\s+UTC\s+`, out)
	out = s.cli("schedules", "get", "every-second")
	require.Regexp(t, `^schedule every-second: task summarize on "\* \* \* \* \* \*" \(UTC\)\n  overlap skip, catch-up none, input \{"n":1\}\n  next `, out)
	require.Contains(t, out, " fired trun_")

	out = s.cli("schedules", "put", "every-second", "--cron", "0 3 * * *", "--timezone", "Asia/Tokyo", "--task", "summarize", "--disabled")
	require.Contains(t, out, "disabled: no slot fires")

	_, _, err := runCmd(t, s.env(), "schedules", "put", "bad", "--cron", "0 24 * * *", "--task", "summarize")
	require.ErrorContains(t, err, "(400 INVALID_CRON)")
	_, _, err = runCmd(t, s.env(), "schedules", "put", "bad", "--cron", "0 * * * *", "--task", "summarize", "--input", "{")
	require.EqualError(t, err, "schedules put: --input is not valid JSON")

	require.Equal(t, "schedule every-second deleted; the runs it made stay\n", s.cli("schedules", "delete", "every-second"))
	_, _, err = runCmd(t, s.env(), "schedules", "get", "every-second")
	require.EqualError(t, err, `schedule "every-second" not found (404 SCHEDULE_NOT_FOUND)`)
	require.Equal(t, "no schedules\n", s.cli("schedules", "list"))
	require.JSONEq(t, `{"schedules": []}`, s.cli("schedules", "list", "--json"))
}
