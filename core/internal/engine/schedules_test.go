package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// at sets the harness clock to t.
func (h *harness) at(t time.Time) {
	h.clock.Advance(time.Until(t) - time.Duration(h.clock.offset.Load()))
}

// putSchedule puts schedule id and fails the test on an error.
func (h *harness) putSchedule(t *testing.T, id string, req ScheduleRequest) Schedule {
	t.Helper()
	s, _, err := h.eng.PutSchedule(context.Background(), id, req)
	require.NoError(t, err)
	return s
}

// fire runs one FireSchedules pass.
func (h *harness) fire(t *testing.T) FireSummary {
	t.Helper()
	s, err := h.eng.FireSchedules(context.Background(), 100)
	require.NoError(t, err)
	return s
}

// scheduled lists (slot, outcome, run) of schedule id's handled slots, oldest first, and checks
// that each fired slot's run names the schedule and the slot.
func (h *harness) scheduled(t *testing.T, id string) []string {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT f.slot_at, f.outcome, coalesce(f.run_id, ''),
		coalesce(r.schedule_id, p.schedule_id, ''), coalesce(r.schedule_slot, p.schedule_slot)
		FROM schedule_fires f LEFT JOIN task_runs r ON r.id = f.run_id LEFT JOIN pipeline_runs p ON p.id = f.run_id
		WHERE f.schedule_id = $1 ORDER BY f.slot_at`, id)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var slot time.Time
		var outcome, run, runSchedule string
		var runSlot *time.Time
		require.NoError(t, rows.Scan(&slot, &outcome, &run, &runSchedule, &runSlot))
		if outcome == "fired" {
			require.Equal(t, id, runSchedule, "run %s names its schedule", run)
			require.NotNil(t, runSlot)
			require.True(t, slot.Equal(*runSlot), "run %s names its slot", run)
		}
		out = append(out, slot.UTC().Format("01-02T15:04:05")+" "+outcome)
	}
	require.NoError(t, rows.Err())
	return out
}

// requireTime checks that got is the instant want (RFC 3339).
func requireTime(t *testing.T, want string, got time.Time) {
	t.Helper()
	require.True(t, utcTime(want).Equal(got), "want %s, got %s", want, got.UTC())
}

func utcTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// A slot fires once, when it is due, and the schedule moves to its next slot; the run records
// the schedule and the slot.
func TestScheduleFiresDueSlotOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{InlineMax: 1 << 10})
	h.register(t, []protocol.TaskDefinition{{ID: "report"}})
	h.at(utcTime("2026-12-03T10:00:30Z"))
	s := h.putSchedule(t, "hourly", ScheduleRequest{Cron: "0 * * * *", TaskID: "report", Input: json.RawMessage(`{"kind":"hourly"}`)})
	requireTime(t, "2026-12-03T11:00:00Z", *s.NextFireAt)
	require.Len(t, s.NextFireTimes, 5)
	requireTime(t, "2026-12-03T15:00:00Z", s.NextFireTimes[4])

	require.Equal(t, FireSummary{}, h.fire(t), "nothing is due")
	h.at(utcTime("2026-12-03T11:00:01Z"))
	require.Equal(t, FireSummary{Fired: 1, Schedules: 1}, h.fire(t))
	require.Equal(t, FireSummary{}, h.fire(t), "the slot fired already")
	require.Equal(t, []string{"12-03T11:00:00 fired"}, h.scheduled(t, "hourly"))

	got, err := h.eng.GetSchedule(context.Background(), "hourly")
	require.NoError(t, err)
	requireTime(t, "2026-12-03T12:00:00Z", *got.NextFireAt)
	requireTime(t, "2026-12-03T11:00:00Z", *got.LastSlotAt)
	require.Len(t, got.RecentSlots, 1)
	run, err := h.eng.GetRun(context.Background(), got.LastRunID)
	require.NoError(t, err)
	require.Equal(t, "report", run.TaskID)
	require.Equal(t, "hourly", run.ScheduleID)
	requireTime(t, "2026-12-03T11:00:00Z", *run.ScheduleSlot)
	require.Equal(t, protocol.StatusPending, run.Status)
	var input []byte
	require.NoError(t, h.pool.QueryRow(context.Background(), "SELECT input FROM task_runs WHERE id = $1", got.LastRunID).Scan(&input))
	require.JSONEq(t, `{"kind":"hourly"}`, string(input))

	// Replacing it with the same expression keeps its next slot; a new expression starts from now.
	s = h.putSchedule(t, "hourly", ScheduleRequest{Cron: "0 * * * *", TaskID: "report", Overlap: OverlapSkip})
	requireTime(t, "2026-12-03T12:00:00Z", *s.NextFireAt)
	require.Equal(t, OverlapSkip, s.Overlap)
	s = h.putSchedule(t, "hourly", ScheduleRequest{Cron: "30 * * * *", TaskID: "report"})
	requireTime(t, "2026-12-03T11:30:00Z", *s.NextFireAt)
	// Disabled: no next slot, nothing fires.
	s = h.putSchedule(t, "hourly", ScheduleRequest{Cron: "30 * * * *", TaskID: "report", Enabled: ptr(false)})
	require.Nil(t, s.NextFireAt)
	require.Empty(t, s.NextFireTimes)
	h.at(utcTime("2026-12-03T11:30:01Z"))
	require.Equal(t, FireSummary{}, h.fire(t))
	require.Len(t, h.scheduled(t, "hourly"), 1)
}

// Slots across daylight saving time changes in Europe/Berlin fire as robfig/cron defines them:
// 02:30 on the day of the spring change does not exist and does not fire; on the day of the
// autumn change it exists twice and fires twice.
func TestScheduleAcrossDaylightSavingChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "nightly"}})
	h.at(utcTime("2026-03-27T12:00:00Z"))
	h.putSchedule(t, "spring", ScheduleRequest{Cron: "30 2 * * *", Timezone: "Europe/Berlin", TaskID: "nightly"})
	for _, now := range []string{"2026-03-28T01:30:01Z", "2026-03-29T01:30:01Z", "2026-03-30T00:30:01Z"} {
		h.at(utcTime(now))
		h.fire(t)
	}
	require.Equal(t, []string{"03-28T01:30:00 fired", "03-30T00:30:00 fired"}, h.scheduled(t, "spring"))

	require.NoError(t, h.eng.DeleteSchedule(context.Background(), "spring"))
	h.at(utcTime("2026-10-24T12:00:00Z"))
	h.putSchedule(t, "autumn", ScheduleRequest{Cron: "30 2 * * *", Timezone: "Europe/Berlin", TaskID: "nightly"})
	for _, now := range []string{"2026-10-25T00:30:01Z", "2026-10-25T01:30:01Z", "2026-10-26T01:30:01Z"} {
		h.at(utcTime(now))
		require.Equal(t, 1, h.fire(t).Fired, now)
	}
	require.Equal(t, []string{"10-25T00:30:00 fired", "10-25T01:30:00 fired", "10-26T01:30:00 fired"}, h.scheduled(t, "autumn"))
}

// After downtime: none fires the latest slot only when it is at most MissedGrace old, latest
// fires it however old, all fires up to catchUpLimit of the latest due slots, oldest first; the
// others count as missed.
func TestScheduleCatchUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.at(utcTime("2026-12-03T09:59:00Z"))
	h.putSchedule(t, "none", ScheduleRequest{Cron: "0 * * * *", TaskID: "t"})
	h.putSchedule(t, "latest", ScheduleRequest{Cron: "0 * * * *", TaskID: "t", CatchUp: CatchUpLatest})
	h.putSchedule(t, "all", ScheduleRequest{Cron: "0 * * * *", TaskID: "t", CatchUp: CatchUpAll, CatchUpLimit: ptr(3)})
	h.putSchedule(t, "recent", ScheduleRequest{Cron: "*/10 * * * *", TaskID: "t"})
	// A webhook wants schedule.missed.
	h.exec(t, `INSERT INTO webhooks (id, url, events, secret) VALUES ('w', 'http://127.0.0.1:9/', ARRAY['schedule.missed'], 'whsec_x')`)
	// Down from 09:59 to 15:05: slots 10:00 … 15:00 (six) are due; 15:00 is 5 min old.
	h.at(utcTime("2026-12-03T15:05:00Z"))
	sum := h.fire(t)
	require.Equal(t, FireSummary{Fired: 1 + 3 + 0, Missed: 6 + 5 + 3 + 31, Schedules: 4}, sum,
		"none: 0 fired, 6 missed; latest: 1 and 5; all: 3 and 3; recent (10:00 … 15:00 every 10 min, 31 slots, none within 2 min): 0 and 31")
	require.Empty(t, h.scheduled(t, "none"))
	require.Equal(t, []string{"12-03T15:00:00 fired"}, h.scheduled(t, "latest"))
	require.Equal(t, []string{"12-03T13:00:00 fired", "12-03T14:00:00 fired", "12-03T15:00:00 fired"}, h.scheduled(t, "all"))
	for id, missed := range map[string]int64{"none": 6, "latest": 5, "all": 3, "recent": 31} {
		s, err := h.eng.GetSchedule(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, missed, s.MissedSlots, id)
		next := "2026-12-03T16:00:00Z"
		if id == "recent" {
			next = "2026-12-03T15:10:00Z"
		}
		requireTime(t, next, *s.NextFireAt)
	}
	// Each schedule's missed slots raised one schedule.missed event, in the pass's transaction.
	rows, err := h.pool.Query(context.Background(), `SELECT payload FROM webhook_deliveries WHERE event = 'schedule.missed'`)
	require.NoError(t, err)
	missedEvents := map[string]int{}
	for rows.Next() {
		var payload string
		require.NoError(t, rows.Scan(&payload))
		var body struct {
			Type string `json:"type"`
			Data struct {
				ScheduleID   string    `json:"scheduleId"`
				MissedSlots  int       `json:"missedSlots"`
				LastMissedAt time.Time `json:"lastMissedAt"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(payload), &body))
		require.Equal(t, "schedule.missed", body.Type)
		missedEvents[body.Data.ScheduleID] = body.Data.MissedSlots
		if body.Data.ScheduleID == "none" {
			requireTime(t, "2026-12-03T15:00:00Z", body.Data.LastMissedAt)
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]int{"none": 6, "latest": 5, "all": 3, "recent": 31}, missedEvents)

	// A slot within the grace fires under none.
	h.at(utcTime("2026-12-03T16:01:00Z"))
	h.fire(t)
	require.Equal(t, []string{"12-03T16:00:00 fired"}, h.scheduled(t, "none"))
}

// Overlap: skip passes over a slot while the previous run is active, cancel-previous cancels it
// and fires, allow fires anyway.
func TestScheduleOverlap(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.at(utcTime("2026-12-03T09:59:30Z"))
	for _, o := range []string{OverlapAllow, OverlapSkip, OverlapCancelPrevious} {
		h.putSchedule(t, o, ScheduleRequest{Cron: "* * * * *", TaskID: "t", Overlap: o})
	}
	// A webhook wants the cancellations: their events name the schedule and the slot.
	h.exec(t, `INSERT INTO webhooks (id, url, events, secret) VALUES ('w', 'http://127.0.0.1:9/', ARRAY['task_run.cancelled'], 'whsec_x')`)
	h.at(utcTime("2026-12-03T10:00:01Z"))
	require.Equal(t, 3, h.fire(t).Fired)
	first := map[string]string{}
	for _, o := range []string{OverlapAllow, OverlapSkip, OverlapCancelPrevious} {
		s, err := h.eng.GetSchedule(context.Background(), o)
		require.NoError(t, err)
		first[o] = s.LastRunID
	}
	// The first runs are still pending (nothing claims them here).
	h.at(utcTime("2026-12-03T10:01:01Z"))
	require.Equal(t, FireSummary{Fired: 2, Skipped: 1, Schedules: 3}, h.fire(t))
	require.Equal(t, []string{"12-03T10:00:00 fired", "12-03T10:01:00 fired"}, h.scheduled(t, OverlapAllow))
	require.Equal(t, []string{"12-03T10:00:00 fired", "12-03T10:01:00 skipped"}, h.scheduled(t, OverlapSkip))
	require.Equal(t, []string{"12-03T10:00:00 fired", "12-03T10:01:00 fired"}, h.scheduled(t, OverlapCancelPrevious))
	require.Equal(t, "pending", h.run(t, first[OverlapAllow]).Status)
	require.Equal(t, "pending", h.run(t, first[OverlapSkip]).Status)
	require.Equal(t, "cancelled", h.run(t, first[OverlapCancelPrevious]).Status)
	var payload string
	require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT payload FROM webhook_deliveries WHERE event = 'task_run.cancelled'`).Scan(&payload))
	var ev struct {
		Data struct {
			RunID        string    `json:"runId"`
			ScheduleID   string    `json:"scheduleId"`
			ScheduleSlot time.Time `json:"scheduleSlot"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(payload), &ev))
	require.Equal(t, first[OverlapCancelPrevious], ev.Data.RunID)
	require.Equal(t, OverlapCancelPrevious, ev.Data.ScheduleID)
	requireTime(t, "2026-12-03T10:00:00Z", ev.Data.ScheduleSlot)

	// Once the previous run has ended, skip fires again.
	_, err := h.eng.CancelRun(context.Background(), first[OverlapSkip])
	require.NoError(t, err)
	h.at(utcTime("2026-12-03T10:02:01Z"))
	require.Equal(t, FireSummary{Fired: 3, Schedules: 3}, h.fire(t))
	require.Equal(t, []string{"12-03T10:00:00 fired", "12-03T10:01:00 skipped", "12-03T10:02:00 fired"}, h.scheduled(t, OverlapSkip))
}

// A pipeline schedule triggers the pipeline; a slot whose target is gone fails (recorded with
// why) and the schedule moves on.
func TestSchedulePipelineAndFailedSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b"}}, {ID: "b"}},
		protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}})
	h.at(utcTime("2026-12-03T09:59:30Z"))
	h.putSchedule(t, "pipe", ScheduleRequest{Cron: "* * * * *", PipelineID: "p", Input: json.RawMessage(`{"x":1}`)})
	h.putSchedule(t, "gone", ScheduleRequest{Cron: "* * * * *", TaskID: "b"})
	h.at(utcTime("2026-12-03T10:00:01Z"))
	require.Equal(t, 2, h.fire(t).Fired)
	s, err := h.eng.GetSchedule(context.Background(), "pipe")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s.LastRunID, "prun_"), s.LastRunID)
	prun, err := h.eng.GetPipelineRun(context.Background(), s.LastRunID)
	require.NoError(t, err)
	require.Equal(t, "pipe", prun.ScheduleID)
	requireTime(t, "2026-12-03T10:00:00Z", *prun.ScheduleSlot)
	require.Equal(t, 1, h.count(t, "SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND status = 'pending'", s.LastRunID))

	require.NoError(t, h.eng.DeleteSchedule(context.Background(), "pipe"))
	h.exec(t, "UPDATE tasks SET removed_in_version = 2 WHERE id = 'b'")
	h.at(utcTime("2026-12-03T10:01:01Z"))
	sum := h.fire(t)
	require.Equal(t, 1, sum.Failed, "%+v", sum)
	require.Equal(t, []string{"12-03T10:00:00 fired", "12-03T10:01:00 failed"}, h.scheduled(t, "gone"))
	got, err := h.eng.GetSchedule(context.Background(), "gone")
	require.NoError(t, err)
	require.Equal(t, "failed", got.RecentSlots[0].Outcome)
	require.NotEmpty(t, got.RecentSlots[0].Error)
	requireTime(t, "2026-12-03T10:02:00Z", *got.NextFireAt)
}

// Bad definitions are refused with a code naming what is wrong, and nothing is stored.
func TestScheduleRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	ok := ScheduleRequest{Cron: "* * * * *", TaskID: "t"}
	for _, c := range []struct {
		id   string
		mod  func(*ScheduleRequest)
		code string
	}{
		{"bad id!", func(*ScheduleRequest) {}, "INVALID_SCHEDULE_ID"},
		{"s", func(r *ScheduleRequest) { r.Cron = "61 * * * *" }, "INVALID_CRON"},
		{"s", func(r *ScheduleRequest) { r.Cron = "" }, "INVALID_CRON"},
		{"s", func(r *ScheduleRequest) { r.Timezone = "Nowhere/Town" }, "INVALID_TIMEZONE"},
		{"s", func(r *ScheduleRequest) { r.PipelineID = "p" }, "INVALID_SCHEDULE_TARGET"},
		{"s", func(r *ScheduleRequest) { r.TaskID = "" }, "INVALID_SCHEDULE_TARGET"},
		{"s", func(r *ScheduleRequest) { r.TaskID = "nope" }, "UNKNOWN_TASK"},
		{"s", func(r *ScheduleRequest) { r.TaskID, r.PipelineID = "", "nope" }, "UNKNOWN_PIPELINE"},
		{"s", func(r *ScheduleRequest) { r.Overlap = "queue" }, "INVALID_OVERLAP"},
		{"s", func(r *ScheduleRequest) { r.CatchUp = "some" }, "INVALID_CATCH_UP"},
		{"s", func(r *ScheduleRequest) { r.CatchUpLimit = ptr(0) }, "INVALID_CATCH_UP_LIMIT"},
		{"s", func(r *ScheduleRequest) { r.CatchUpLimit = ptr(MaxCatchUpLimit + 1) }, "INVALID_CATCH_UP_LIMIT"},
		{"s", func(r *ScheduleRequest) {
			r.Input = json.RawMessage(`"` + strings.Repeat("x", MaxScheduleInputBytes) + `"`)
		}, "INPUT_TOO_LARGE"},
	} {
		req := ok
		c.mod(&req)
		_, _, err := h.eng.PutSchedule(context.Background(), c.id, req)
		var e *Error
		require.ErrorAs(t, err, &e, c.code)
		require.ErrorIs(t, err, ErrInvalid, c.code)
		require.Equal(t, c.code, e.Code)
	}
	require.Zero(t, h.count(t, "SELECT count(*) FROM schedules"))
	_, err := h.eng.GetSchedule(context.Background(), "s")
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, h.eng.DeleteSchedule(context.Background(), "s"), ErrNotFound)

	// The list pages in id order.
	for _, id := range []string{"c", "a", "b"} {
		h.putSchedule(t, id, ok)
	}
	var ids []string
	pages := 0
	for cursor := ""; ; pages++ {
		l, err := h.eng.Schedules(context.Background(), cursor, 2)
		require.NoError(t, err)
		for _, s := range l.Schedules {
			ids = append(ids, s.ID)
		}
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	require.Equal(t, []string{"a", "b", "c"}, ids)
	require.Equal(t, 1, pages, "two pages: a, b then c")
}

// Two engines and several goroutines fire a schedule whose every second is a slot: each slot
// makes exactly one run, and no run is made without its slot's record.
func TestScheduleSlotsFireOnceAcrossEngines(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	keys, err := token.NewKeyring(strings.Repeat("s", 32), "")
	require.NoError(t, err)
	other, err := New(h.pool, keys, h.eng.storage, Config{Now: h.clock.Now}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(other.Close)
	start := utcTime("2026-12-03T10:00:00.5Z")
	h.at(start)
	h.putSchedule(t, "every-second", ScheduleRequest{Cron: "* * * * * *", TaskID: "t", CatchUp: CatchUpAll})
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	end := start
	for round := 1; round <= rounds; round++ {
		// Sometimes one slot is due, sometimes several.
		end = end.Add(time.Duration(1+round%3) * time.Second)
		h.at(end)
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := range 6 {
			eng := h.eng
			if i%2 == 1 {
				eng = other
			}
			wg.Go(func() {
				_, err := eng.FireSchedules(context.Background(), 10)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	// Every second from 10:00:01 up to the last round's time is a slot that fired once.
	slots := int(end.Sub(start.Truncate(time.Second)) / time.Second)
	require.Equal(t, slots, h.count(t, "SELECT count(*) FROM schedule_fires WHERE outcome = 'fired'"))
	require.Equal(t, slots, h.count(t, "SELECT count(*) FROM task_runs WHERE schedule_id = 'every-second'"))
	require.Equal(t, slots, h.count(t, "SELECT count(*) FROM task_runs"), "no run without its slot")
	require.Equal(t, slots, h.count(t, "SELECT count(DISTINCT schedule_slot) FROM task_runs"))
}
