package browsertest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The schedules page lists each schedule with its next fire times; a schedule's page shows
// its latest handled slots, with the run each fired slot made.
func TestSchedulesPage(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	require.Equal(t, http.StatusCreated, s.api("PUT", "/api/schedules/diamond-nightly",
		map[string]any{"cron": "30 2 * * *", "timezone": "Europe/Berlin", "pipelineId": "diamond", "input": map[string]any{"n": 1}}, nil))
	require.Equal(t, http.StatusCreated, s.api("PUT", "/api/schedules/every-second",
		map[string]any{"cron": "* * * * * *", "taskId": "a", "enabled": true}, nil))

	b := newBrowser(t, s.url)
	b.open("/")
	b.click(`[data-testid="nav-schedules"]`)
	b.count(`[data-testid="schedule-row"]`, 2)
	b.count(`[data-testid="schedule-row"][data-schedule-id="diamond-nightly"] [data-testid="schedule-next-time"]`, 5)
	require.Contains(t, b.text(`[data-testid="schedule-row"][data-schedule-id="diamond-nightly"]`), "Europe/Berlin")
	b.screenshot("schedules")

	// The process function (serverless, as this stack runs) fires the every-second schedule.
	var sched struct {
		NextFireAt time.Time `json:"nextFireAt"`
		LastRunID  string    `json:"lastRunId"`
	}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/schedules/every-second", nil, &sched))
	time.Sleep(time.Until(sched.NextFireAt) + 50*time.Millisecond)
	require.Equal(t, http.StatusOK, s.api("POST", "/api/process", nil, nil))
	require.Equal(t, http.StatusOK, s.api("GET", "/api/schedules/every-second", nil, &sched))
	require.NotEmpty(t, sched.LastRunID)
	b.click(`[data-testid="schedule-row"][data-schedule-id="every-second"] [data-testid="schedule-link"]`)
	b.wait(`[data-testid="schedule-detail"]`)
	b.wait(`[data-testid="schedule-slot"][data-outcome="fired"]`)
	require.Contains(t, b.text(`[data-testid="schedule-slot"][data-outcome="fired"]`), "trun_")
}
