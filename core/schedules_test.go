package core_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// putSchedule asks PUT /api/schedules/{id}.
func (e *env) putSchedule(id string, body any) response {
	e.t.Helper()
	return e.do("PUT", "/api/schedules/"+id, body, "")
}

// schedule reads GET /api/schedules/{id}.
func (e *env) schedule(id string) protocol.Schedule {
	e.t.Helper()
	r := e.do("GET", "/api/schedules/"+id, nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	var s protocol.Schedule
	r.json(e.t, &s)
	return s
}

// scheduledRuns counts the runs schedule id made and the distinct slots they name.
func (e *env) scheduledRuns(id string) (runs, slots int) {
	e.t.Helper()
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT schedule_slot) FROM task_runs WHERE schedule_id = $1", id).Scan(&runs, &slots))
	return runs, slots
}

// The schedule routes: create (201), read, list, replace (200), delete; bad definitions are 400
// naming what is wrong and store nothing.
func TestSchedulesAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:9", task("t"))

	r := e.putSchedule("nightly", map[string]any{"cron": "30 2 * * *", "timezone": "Europe/Berlin", "taskId": "t", "input": map[string]any{"x": 1}})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var s protocol.Schedule
	r.json(t, &s)
	require.Equal(t, "nightly", s.ID)
	require.Equal(t, "allow", s.Overlap)
	require.Equal(t, "none", s.CatchUp)
	require.Equal(t, 100, s.CatchUpLimit)
	require.True(t, s.Enabled)
	require.JSONEq(t, `{"x":1}`, string(s.Input))
	require.Len(t, s.NextFireTimes, 5)
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	for _, at := range s.NextFireTimes {
		require.Equal(t, "02:30", at.In(berlin).Format("15:04"), "each fire time is 02:30 in Berlin")
	}
	require.True(t, s.NextFireAt.Equal(s.NextFireTimes[0]))

	r = e.putSchedule("nightly", map[string]any{"cron": "30 2 * * *", "timezone": "Europe/Berlin", "taskId": "t", "overlap": "skip"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	got := e.schedule("nightly")
	require.Equal(t, "skip", got.Overlap)
	require.JSONEq(t, `{}`, string(got.Input))
	require.Empty(t, got.RecentSlots)

	list := e.do("GET", "/api/schedules", nil, "")
	require.Equal(t, http.StatusOK, list.Status)
	var l protocol.ScheduleList
	list.json(t, &l)
	require.Len(t, l.Schedules, 1)
	for _, q := range []string{"limit=0", "limit=-1", "limit=x"} {
		r := e.do("GET", "/api/schedules?"+q, nil, "")
		require.Equal(t, http.StatusBadRequest, r.Status, q)
		require.Equal(t, "INVALID_LIMIT", r.errorBody(t).Code, q)
	}

	for _, c := range []struct {
		body       map[string]any
		code, path string
	}{
		{map[string]any{"cron": "* * * *", "taskId": "t"}, "INVALID_CRON", "cron"},
		{map[string]any{"cron": "0 25 * * *", "taskId": "t"}, "INVALID_CRON", "cron"},
		{map[string]any{"cron": "0 * * * *", "timezone": "Atlantis/Central", "taskId": "t"}, "INVALID_TIMEZONE", "timezone"},
		{map[string]any{"cron": "0 * * * *"}, "INVALID_SCHEDULE_TARGET", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "t", "pipelineId": "svc"}, "INVALID_SCHEDULE_TARGET", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "missing"}, "UNKNOWN_TASK", ""},
		{map[string]any{"cron": "0 * * * *", "pipelineId": "missing"}, "UNKNOWN_PIPELINE", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "t", "overlap": "queue"}, "INVALID_OVERLAP", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "t", "catchUp": "everything"}, "INVALID_CATCH_UP", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "t", "catchUp": "all", "catchUpLimit": 0}, "INVALID_CATCH_UP_LIMIT", ""},
		{map[string]any{"cron": "0 * * * *", "taskId": "t", "catch_up": "all"}, "UNKNOWN_FIELD", ""},
	} {
		r := e.putSchedule("bad", c.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%v: %s", c.body, r.Body)
		body := r.errorBody(t)
		require.Equal(t, c.code, body.Code, "%v: %s", c.body, r.Body)
		if c.path != "" {
			require.Equal(t, map[string]any{"field": c.path}, body.Details)
			require.Contains(t, body.Error, c.path+":")
		}
	}
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/schedules/bad", nil, "").Status, "nothing was stored")

	del := e.do("DELETE", "/api/schedules/nightly", nil, "")
	require.Equal(t, http.StatusOK, del.Status, string(del.Body))
	require.JSONEq(t, `{"deleted":true,"scheduleId":"nightly"}`, string(del.Body))
	again := e.do("DELETE", "/api/schedules/nightly", nil, "")
	require.Equal(t, http.StatusNotFound, again.Status)
	require.Equal(t, "SCHEDULE_NOT_FOUND", again.errorBody(t).Code)
}

// The schedule routes take the API key.
func TestSchedulesNeedAPIKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"key-one"} })
	e.register("svc", "1", "http://127.0.0.1:9", task("t"))
	body := map[string]any{"cron": "0 * * * *", "taskId": "t"}
	for _, key := range []string{"", "wrong"} {
		for _, c := range []struct {
			method, path string
			body         any
		}{{"GET", "/api/schedules", nil}, {"GET", "/api/schedules/s", nil}, {"PUT", "/api/schedules/s", body}, {"DELETE", "/api/schedules/s", nil}} {
			r := e.do(c.method, c.path, c.body, key)
			require.Equal(t, http.StatusUnauthorized, r.Status, "%s %s", c.method, c.path)
		}
	}
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM schedules").Scan(&n))
	require.Zero(t, n)
	require.Equal(t, http.StatusCreated, e.do("PUT", "/api/schedules/s", body, "key-one").Status)
}

// In standalone mode the loop fires each slot of a schedule (every second here) and the worker
// receives its runs, which name the schedule and the slot. The poll interval is an hour: the
// schedule's PUT wakes the firer (NotifySchedules), which otherwise would sleep that long.
func TestScheduleFiredByStandaloneLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode, c.PollInterval = core.ModeStandalone, time.Hour })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	e.register("svc", "1", w.URL(), task("tick"))
	sig := e.orch.LoopSignals()
	e.runLoop()
	// The firer's first pass found nothing: it sleeps until a schedule changes.
	require.Zero(t, sig.FirePass(t))
	r := e.putSchedule("every-second", map[string]any{"cron": "* * * * * *", "taskId": "tick", "input": map[string]any{"n": 1}})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	w.waitDispatches(2)
	ds := w.all()
	run := e.run(ds[0].RunID)
	require.Equal(t, "every-second", run.ScheduleID)
	require.NotNil(t, run.ScheduleSlot)
	require.Zero(t, run.ScheduleSlot.Nanosecond(), "a slot is a whole second")
	s := e.schedule("every-second")
	require.NotEmpty(t, s.RecentSlots)
	// The slot of the first run the worker got is recorded as fired, with that run.
	i := slices.IndexFunc(s.RecentSlots, func(f protocol.ScheduleSlot) bool { return f.RunID == run.ID })
	require.GreaterOrEqual(t, i, 0, "the slot of run %s: %+v", run.ID, s.RecentSlots)
	require.Equal(t, "fired", s.RecentSlots[i].Outcome)
	require.True(t, run.ScheduleSlot.Equal(s.RecentSlots[i].SlotAt))
}

// In serverless mode the process function fires the due slots, then claims their runs in the
// same call.
func TestScheduleFiredByProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("tick"))
	r := e.putSchedule("every-second", map[string]any{"cron": "* * * * * *", "taskId": "tick"})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	next := e.schedule("every-second").NextFireAt
	require.NotNil(t, next)
	time.Sleep(time.Until(*next) + 50*time.Millisecond)
	require.Equal(t, 1, e.process().Claimed)
	w.waitDispatches(1)
	require.Equal(t, "every-second", e.run(w.all()[0].RunID).ScheduleID)
}

// Two standalone instances with their loops and concurrent process calls fire a schedule whose
// every second is a slot (catch-up all): each slot makes exactly one run, with no gap.
func TestScheduleSlotsFireOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	mod := func(c *core.Config) { c.Mode = core.ModeStandalone }
	e := newEnv(t, mod)
	other := newEnvOn(t, e.pool, mod)
	e.register("svc", "1", "http://127.0.0.1:9", task("tick"))
	e.runLoop()
	other.runLoop()
	r := e.putSchedule("every-second", map[string]any{"cron": "* * * * * *", "taskId": "tick", "catchUp": "all"})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	first := *e.schedule("every-second").NextFireAt
	seconds := 3
	if testing.Short() {
		seconds = 2
	}
	stop := first.Add(time.Duration(seconds)*time.Second + 300*time.Millisecond)
	var wg sync.WaitGroup
	for _, inst := range []*env{e, other, e, other} {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := inst.orch.Process(context.Background()); err != nil {
					t.Errorf("process: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Disable it: no slot fires after this.
	r = e.putSchedule("every-second", map[string]any{"cron": "* * * * * *", "taskId": "tick", "catchUp": "all", "enabled": false})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	s := e.schedule("every-second")
	require.NotNil(t, s.LastSlotAt)
	want := int(s.LastSlotAt.Sub(first)/time.Second) + 1
	require.GreaterOrEqual(t, want, seconds)
	runs, slots := e.scheduledRuns("every-second")
	require.Equal(t, want, runs, "one run per slot from %s to %s", first, s.LastSlotAt)
	require.Equal(t, want, slots)
	var total int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs").Scan(&total))
	require.Equal(t, want, total, "no run without its slot")
}
