package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pipeweave/pipeweave/core/internal/cronspec"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// The overlap policies: what a slot does while the run of the schedule's previous slot has not
// ended.
const (
	// OverlapAllow fires anyway (the default).
	OverlapAllow = "allow"
	// OverlapSkip records the slot as skipped.
	OverlapSkip = "skip"
	// OverlapCancelPrevious cancels the previous run, then fires.
	OverlapCancelPrevious = "cancel-previous"
)

// The catch-up policies: which of several due slots fire (after downtime, or when the process
// function runs less often than the schedule's slots come).
const (
	// CatchUpNone fires the latest due slot if it is at most MissedGrace old; the others are
	// missed (the default).
	CatchUpNone = "none"
	// CatchUpLatest fires the latest due slot however old; the others are missed.
	CatchUpLatest = "latest"
	// CatchUpAll fires every due slot, oldest first, up to the schedule's catchUpLimit latest
	// ones; older ones are missed.
	CatchUpAll = "all"
)

// MissedGrace is how late a slot may fire under CatchUpNone: slots due longer ago are missed.
// It covers a one-minute process schedule with room to spare.
const MissedGrace = 2 * time.Minute

// Bounds of a schedule.
const (
	// DefaultCatchUpLimit is catchUpLimit when a schedule sets none; MaxCatchUpLimit its largest.
	DefaultCatchUpLimit = 100
	MaxCatchUpLimit     = 1000
	// MaxScheduleInputBytes bounds a schedule's input, which is kept in its row.
	MaxScheduleInputBytes = 256 << 10
	// MaxSchedules bounds how many schedules one page of the list answers.
	MaxSchedules = 1000
	// maxSlotScan bounds the due slots one pass walks through for one schedule: a schedule
	// further behind than that jumps to its next slot after now, counting the rest as missed.
	maxSlotScan = 10_000
	// fireParallelism is how many schedules one pass fires at once (each holds a connection).
	fireParallelism = 4
)

// ScheduleRequest defines a schedule (PUT /api/schedules/{id}).
type ScheduleRequest struct {
	Cron     string
	Timezone string
	// TaskID or PipelineID, exactly one: what a slot fires.
	TaskID     string
	PipelineID string
	// Input is the fixed input of every run (default {}).
	Input        json.RawMessage
	Overlap      string
	CatchUp      string
	CatchUpLimit *int
	// Enabled defaults to true.
	Enabled *bool
}

// Schedule is a schedule as stored, with its state.
type Schedule struct {
	ID           string
	Cron         string
	Timezone     string
	TaskID       string
	PipelineID   string
	Input        json.RawMessage
	Overlap      string
	CatchUp      string
	CatchUpLimit int
	Enabled      bool
	// NextFireAt is the next slot to handle (nil while disabled).
	NextFireAt *time.Time
	// LastRunID is the run the last fired slot made, LastSlotAt that slot, LastFiredAt when.
	LastRunID   string
	LastSlotAt  *time.Time
	LastFiredAt *time.Time
	// MissedSlots counts due slots the catch-up policy passed over; LastMissedAt is the latest.
	MissedSlots  int64
	LastMissedAt *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// NextFireTimes are NextFireAt and the slots after it, up to five.
	NextFireTimes []time.Time
	// RecentSlots are the latest handled slots, newest first (GetSchedule only).
	RecentSlots []ScheduleFire
}

// ScheduleFire is one handled slot of a schedule.
type ScheduleFire struct {
	SlotAt  time.Time
	Outcome string
	RunID   string
	Error   string
	FiredAt time.Time
}

// FireSummary counts what one FireSchedules pass did.
type FireSummary struct {
	// Fired slots made a run; Skipped ones did not (overlap skip); Failed ones could not make
	// one (the target is gone or refuses the input); Missed ones were passed over (catch-up).
	Fired, Skipped, Failed, Missed int
	// Schedules is how many due schedules the pass read (its limit: more may be due).
	Schedules int
}

func scheduleOf(r dbsqlc.Schedule) Schedule {
	s := Schedule{ID: r.ID, Cron: r.Cron, Timezone: r.Timezone, TaskID: deref(r.TaskID), PipelineID: deref(r.PipelineID),
		Input: json.RawMessage(r.Input), Overlap: r.Overlap, CatchUp: r.CatchUp, CatchUpLimit: r.CatchUpLimit, Enabled: r.Enabled,
		NextFireAt: r.NextFireAt, LastRunID: deref(r.LastRunID), LastSlotAt: r.LastSlotAt, LastFiredAt: r.LastFiredAt,
		MissedSlots: r.MissedSlots, LastMissedAt: r.LastMissedAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		NextFireTimes: []time.Time{}}
	if spec, err := cronspec.Parse(r.Cron, r.Timezone); err == nil && r.NextFireAt != nil {
		for t := *r.NextFireAt; len(s.NextFireTimes) < 5 && !t.IsZero(); t = spec.Next(t) {
			s.NextFireTimes = append(s.NextFireTimes, t)
		}
	}
	return s
}

// clock is the time schedules are computed at: Config.Now when set, else this machine's clock.
func (e *Engine) clock() time.Time {
	if e.cfg.Now != nil {
		return e.cfg.Now()
	}
	return time.Now()
}

// PutSchedule creates or replaces schedule id and reports whether it created it. A schedule
// replaced with the same cron, time zone and enabled state keeps its next slot; otherwise the
// next slot is the first after now (slots missed while it was disabled do not fire).
func (e *Engine) PutSchedule(ctx context.Context, id string, req ScheduleRequest) (Schedule, bool, error) {
	p, spec, err := e.validateSchedule(ctx, id, req)
	if err != nil {
		return Schedule{}, false, err
	}
	var out dbsqlc.Schedule
	created := false
	err = e.db.InTx(ctx, func(tx dbtx) error {
		old, err := queries.LockSchedule(ctx, tx, id)
		switch {
		case errors.Is(err, database.ErrNotFound):
			created = true
		case err != nil:
			return fmt.Errorf("read schedule %s: %w", id, err)
		}
		if p.Enabled {
			if !created && old.Enabled && old.Cron == p.Cron && old.Timezone == p.Timezone && old.NextFireAt != nil {
				p.NextFireAt = old.NextFireAt
			} else {
				next := spec.Next(e.clock())
				p.NextFireAt = &next
			}
		}
		out, err = queries.UpsertSchedule(ctx, tx, p)
		if err != nil {
			return fmt.Errorf("save schedule %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Schedule{}, false, err
	}
	if p.Enabled {
		// Every instance's schedule firer learns of the new next slot.
		if err := queries.NotifySchedules(ctx, e.db); err != nil {
			e.log.Warn("could not notify the loops of a schedule", "schedule", id, "err", err)
		}
	}
	return scheduleOf(out), created, nil
}

// validateSchedule checks req and builds the row that stores it (without its next slot).
func (e *Engine) validateSchedule(ctx context.Context, id string, req ScheduleRequest) (dbsqlc.UpsertScheduleParams, *cronspec.Spec, error) {
	var none dbsqlc.UpsertScheduleParams
	if !idPattern.MatchString(id) {
		return none, nil, invalid("INVALID_SCHEDULE_ID", "schedule id %q must be 1-128 letters, digits, '.', '_' or '-'", id)
	}
	spec, err := cronspec.Parse(req.Cron, req.Timezone)
	var cerr *cronspec.Error
	if errors.As(err, &cerr) {
		code := "INVALID_CRON"
		if cerr.Field == "timezone" {
			code = "INVALID_TIMEZONE"
		}
		ierr := invalid(code, "%s", cerr.Error())
		ierr.Details = map[string]any{"field": cerr.Field}
		return none, nil, ierr
	}
	if err != nil {
		return none, nil, err
	}
	p := dbsqlc.UpsertScheduleParams{ID: id, Cron: strings.TrimSpace(req.Cron), Timezone: req.Timezone, Overlap: req.Overlap,
		CatchUp: req.CatchUp, CatchUpLimit: DefaultCatchUpLimit, Enabled: req.Enabled == nil || *req.Enabled}
	if p.Timezone == "" {
		p.Timezone = "UTC"
	}
	switch p.Overlap {
	case "":
		p.Overlap = OverlapAllow
	case OverlapAllow, OverlapSkip, OverlapCancelPrevious:
	default:
		return none, nil, invalid("INVALID_OVERLAP", "overlap must be %s, %s or %s", OverlapAllow, OverlapSkip, OverlapCancelPrevious)
	}
	switch p.CatchUp {
	case "":
		p.CatchUp = CatchUpNone
	case CatchUpNone, CatchUpLatest, CatchUpAll:
	default:
		return none, nil, invalid("INVALID_CATCH_UP", "catchUp must be %s, %s or %s", CatchUpNone, CatchUpLatest, CatchUpAll)
	}
	if req.CatchUpLimit != nil {
		if *req.CatchUpLimit < 1 || *req.CatchUpLimit > MaxCatchUpLimit {
			return none, nil, invalid("INVALID_CATCH_UP_LIMIT", "catchUpLimit must be 1 to %d", MaxCatchUpLimit)
		}
		p.CatchUpLimit = *req.CatchUpLimit
	}
	p.Input = nullJSON(req.Input)
	if p.Input == nil {
		p.Input = []byte("{}")
	}
	if len(p.Input) > MaxScheduleInputBytes {
		return none, nil, invalid("INPUT_TOO_LARGE", "a schedule's input must be at most %d bytes (it is kept in the schedule)", MaxScheduleInputBytes)
	}
	switch {
	case (req.TaskID == "") == (req.PipelineID == ""):
		return none, nil, invalid("INVALID_SCHEDULE_TARGET", "a schedule names exactly one of taskId and pipelineId")
	case req.TaskID != "":
		tasks, _, err := e.activeTasks(ctx, e.db)
		if err != nil {
			return none, nil, err
		}
		if _, ok := tasks[req.TaskID]; !ok {
			return none, nil, invalid("UNKNOWN_TASK", "taskId %q names no registered task", req.TaskID)
		}
		p.TaskID = &req.TaskID
	default:
		if _, err := e.readPipeline(ctx, req.PipelineID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return none, nil, invalid("UNKNOWN_PIPELINE", "pipelineId %q names no pipeline", req.PipelineID)
			}
			return none, nil, err
		}
		p.PipelineID = &req.PipelineID
	}
	return p, spec, nil
}

// recentSlots is how many handled slots GetSchedule answers.
const recentSlots = 20

// GetSchedule reads schedule id with its latest handled slots.
func (e *Engine) GetSchedule(ctx context.Context, id string) (Schedule, error) {
	r, err := queries.GetSchedule(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return Schedule{}, notFound("SCHEDULE_NOT_FOUND", "schedule %q not found", id)
	}
	if err != nil {
		return Schedule{}, fmt.Errorf("read schedule %s: %w", id, err)
	}
	s := scheduleOf(r)
	rows, err := queries.ScheduleFires(ctx, e.db, dbsqlc.ScheduleFiresParams{ID: id, Max: recentSlots})
	if err != nil {
		return Schedule{}, fmt.Errorf("read the slots of schedule %s: %w", id, err)
	}
	s.RecentSlots = make([]ScheduleFire, len(rows))
	for i, r := range rows {
		s.RecentSlots[i] = ScheduleFire{SlotAt: r.SlotAt, Outcome: r.Outcome, RunID: deref(r.RunID), Error: deref(r.Error), FiredAt: r.FiredAt}
	}
	return s, nil
}

// ScheduleList is a page of schedules in id order; NextCursor, when not empty, asks for the
// next page.
type ScheduleList struct {
	Schedules  []Schedule
	NextCursor string
}

// Schedules lists the schedules in id order after cursor (an id; "" from the first), at most
// limit of them (0 or more than MaxSchedules: MaxSchedules).
func (e *Engine) Schedules(ctx context.Context, cursor string, limit int) (ScheduleList, error) {
	if limit <= 0 || limit > MaxSchedules {
		limit = MaxSchedules
	}
	rows, err := queries.ListSchedules(ctx, e.db, dbsqlc.ListSchedulesParams{After: cursor, Max: limit + 1})
	if err != nil {
		return ScheduleList{}, fmt.Errorf("list schedules: %w", err)
	}
	var out ScheduleList
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = rows[limit-1].ID
	}
	out.Schedules = make([]Schedule, len(rows))
	for i, r := range rows {
		out.Schedules[i] = scheduleOf(r)
	}
	return out, nil
}

// DeleteSchedule deletes schedule id and the record of its slots; the runs it made stay.
func (e *Engine) DeleteSchedule(ctx context.Context, id string) error {
	n, err := queries.DeleteSchedule(ctx, e.db, id)
	if err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	if n == 0 {
		return notFound("SCHEDULE_NOT_FOUND", "schedule %q not found", id)
	}
	return nil
}

// NextScheduleWait is how long until the soonest slot of any enabled schedule (0 when one is
// due); ok is false when no schedule is enabled.
func (e *Engine) NextScheduleWait(ctx context.Context) (time.Duration, bool, error) {
	now := e.clock()
	row, err := queries.NextScheduleWait(ctx, e.db, &now)
	if err != nil {
		return 0, false, fmt.Errorf("read the next slot: %w", err)
	}
	if row.Enabled == 0 {
		return 0, false, nil
	}
	return max(0, time.Duration(row.WaitMs)*time.Millisecond), true, nil
}

// errSlotTaken: another transaction handled the slot, or a PUT moved the schedule on.
var errSlotTaken = errors.New("the slot was handled elsewhere")

// FireSchedules handles the due slots of at most limit schedules, as their catch-up and overlap
// policies say. Each slot is handled once across every instance: its transaction takes the
// schedule's row only while the row still names that slot, records the slot (unique per
// schedule and slot) and makes the run, all or nothing. A schedule another instance is firing
// is passed over.
func (e *Engine) FireSchedules(ctx context.Context, limit int) (FireSummary, error) {
	var sum FireSummary
	now := e.clock()
	rows, err := queries.DueSchedules(ctx, e.db, dbsqlc.DueSchedulesParams{Now: &now, Max: limit})
	if err != nil {
		return sum, fmt.Errorf("read due schedules: %w", err)
	}
	sum.Schedules = len(rows)
	// Schedules fire side by side (their slots in order): a second when twenty schedules fire is
	// twenty transactions, which one after the other would make the last slot wait for the
	// nineteen commits before it.
	var mu sync.Mutex
	var firstErr error
	var g errgroup.Group
	g.SetLimit(fireParallelism)
	for _, r := range rows {
		g.Go(func() error {
			var one FireSummary
			err := e.fireSchedule(ctx, r, now, &one)
			mu.Lock()
			defer mu.Unlock()
			sum.Fired, sum.Skipped, sum.Failed, sum.Missed = sum.Fired+one.Fired, sum.Skipped+one.Skipped, sum.Failed+one.Failed, sum.Missed+one.Missed
			if err != nil && !errors.Is(err, errSlotTaken) {
				e.log.Warn("firing a schedule failed; the next pass tries again", "schedule", r.ID, "err", err)
				if firstErr == nil {
					firstErr = err
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	m := e.metrics
	m.ScheduleSlots.WithLabelValues("fired").Add(float64(sum.Fired))
	m.ScheduleSlots.WithLabelValues("skipped").Add(float64(sum.Skipped))
	m.ScheduleSlots.WithLabelValues("failed").Add(float64(sum.Failed))
	m.ScheduleSlots.WithLabelValues("missed").Add(float64(sum.Missed))
	return sum, firstErr
}

// fireSchedule handles the due slots of one schedule.
func (e *Engine) fireSchedule(ctx context.Context, r dbsqlc.DueSchedulesRow, now time.Time, sum *FireSummary) error {
	spec, err := cronspec.Parse(r.Cron, r.Timezone)
	if err != nil {
		return fmt.Errorf("schedule %s: stored expression: %w", r.ID, err)
	}
	// The due slots, oldest first, and the first slot after now.
	var due []time.Time
	next := *r.NextFireAt
	behind := false
	for !next.After(now) && !next.IsZero() {
		if len(due) == maxSlotScan {
			behind = true
			next = spec.Next(now)
			break
		}
		due = append(due, next)
		next = spec.Next(next)
	}
	if next.IsZero() {
		// No slot within five years (robfig/cron's horizon): look again in a day.
		next = now.Add(24 * time.Hour)
	}
	// A schedule more than maxSlotScan slots behind fires none of them (which the latest is,
	// is not known without walking them all): they are missed, and it moves on.
	var fire []time.Time
	if !behind {
		switch r.CatchUp {
		case CatchUpAll:
			fire = due[max(0, len(due)-r.CatchUpLimit):]
		case CatchUpLatest:
			fire = due[len(due)-1:]
		default:
			if now.Sub(due[len(due)-1]) <= MissedGrace {
				fire = due[len(due)-1:]
			}
		}
	}
	missed := len(due) - len(fire)
	var lastMissed *time.Time
	if missed > 0 {
		lastMissed = &due[missed-1]
	}
	expected := *r.NextFireAt
	if len(fire) == 0 {
		// Every due slot is missed: move past them.
		err := e.db.InTx(ctx, func(tx dbtx) error {
			if err := takeSlot(ctx, tx, r.ID, expected); err != nil {
				return err
			}
			return advance(ctx, tx, r.ID, expected, next, nil, missed, lastMissed)
		})
		if err == nil {
			sum.Missed += missed
		}
		return err
	}
	lastRun := deref(r.LastRunID)
	for i, slot := range fire {
		after := next
		if i+1 < len(fire) {
			after = fire[i+1]
		}
		m, lm := 0, (*time.Time)(nil)
		if i == 0 {
			m, lm = missed, lastMissed
		}
		runID, outcome, err := e.fireSlot(ctx, r, expected, slot, after, lastRun, m, lm)
		if err != nil {
			return err
		}
		if i == 0 {
			sum.Missed += missed
		}
		switch outcome {
		case "fired":
			sum.Fired++
			lastRun = runID
			e.metrics.ScheduleLag.Observe(max(0, e.clock().Sub(slot)).Seconds())
		case "skipped":
			sum.Skipped++
		default:
			sum.Failed++
		}
		expected = after
	}
	return nil
}

// takeSlot locks schedule id while its next slot is still slot; errSlotTaken when another
// transaction holds the row or moved it on.
func takeSlot(ctx context.Context, tx dbtx, id string, slot time.Time) error {
	_, err := queries.TakeScheduleSlot(ctx, tx, dbsqlc.TakeScheduleSlotParams{ID: id, SlotAt: &slot})
	if errors.Is(err, database.ErrNotFound) {
		return errSlotTaken
	}
	if err != nil {
		return fmt.Errorf("take schedule %s: %w", id, err)
	}
	return nil
}

// advance moves schedule id past slot (recorded with outcome by the caller) to next, counting
// the missed slots before it; missed slots raise the schedule.missed webhook event in the same
// transaction.
func advance(ctx context.Context, tx dbtx, id string, slot, next time.Time, runID *string, missed int, lastMissed *time.Time) error {
	if err := queries.AdvanceSchedule(ctx, tx, dbsqlc.AdvanceScheduleParams{ID: id, NextFireAt: &next, RunID: runID, SlotAt: &slot,
		Missed: int64(missed), LastMissedAt: lastMissed}); err != nil {
		return fmt.Errorf("advance schedule %s: %w", id, err)
	}
	if missed > 0 {
		if _, err := EmitWebhookEvent(ctx, tx, protocol.EventScheduleMissed, scheduleMissed{ScheduleID: id, MissedSlots: missed,
			LastMissedAt: *lastMissed, NextFireAt: next}); err != nil {
			return err
		}
	}
	return nil
}

// scheduleMissed is the data of a schedule.missed webhook event: how many due slots one pass
// of the schedule's catch-up policy passed over, the latest of them, and the schedule's next
// slot to handle.
type scheduleMissed struct {
	ScheduleID   string    `json:"scheduleId"`
	MissedSlots  int       `json:"missedSlots"`
	LastMissedAt time.Time `json:"lastMissedAt"`
	NextFireAt   time.Time `json:"nextFireAt"`
}

// fireSlot handles one slot of schedule r: expected is the schedule's next slot as this pass
// read it, which the transaction checks; slot is the slot to fire (later than expected when the
// slots between are missed), after the next slot once this one is handled. It returns the run
// made and the outcome (fired, skipped or failed).
func (e *Engine) fireSlot(ctx context.Context, r dbsqlc.DueSchedulesRow, expected, slot, after time.Time, lastRun string, missed int, lastMissed *time.Time) (string, string, error) {
	// handle takes the slot, records how it was handled (with the run it made, or why it
	// failed) and moves the schedule on, in tx; mark, when set, names the slot on the run.
	handle := func(ctx context.Context, tx dbtx, outcome string, runID, why *string, mark func(context.Context, dbtx) error) error {
		if err := takeSlot(ctx, tx, r.ID, expected); err != nil {
			return err
		}
		n, err := queries.RecordScheduleFire(ctx, tx, dbsqlc.RecordScheduleFireParams{ID: r.ID, SlotAt: slot, Outcome: outcome, RunID: runID, Error: why})
		if err != nil {
			return fmt.Errorf("record slot of schedule %s: %w", r.ID, err)
		}
		if n == 0 {
			return errSlotTaken
		}
		if mark != nil {
			if err := mark(ctx, tx); err != nil {
				return fmt.Errorf("name the schedule of run %s: %w", *runID, err)
			}
		}
		return advance(ctx, tx, r.ID, slot, after, runID, missed, lastMissed)
	}
	// record handles the slot without a run: skipped, or failed with why.
	record := func(outcome string, why *string) (string, string, error) {
		err := e.db.InTx(ctx, func(tx dbtx) error { return handle(ctx, tx, outcome, nil, why, nil) })
		return "", outcome, err
	}
	if lastRun != "" && r.Overlap != OverlapAllow {
		active, err := queries.ScheduleRunActive(ctx, e.db, lastRun)
		if err != nil {
			return "", "", fmt.Errorf("read run %s: %w", lastRun, err)
		}
		if active != nil && *active {
			if r.Overlap == OverlapSkip {
				return record("skipped", nil)
			}
			if err := e.cancelScheduledRun(ctx, lastRun); err != nil {
				return "", "", err
			}
		}
	}
	// within runs in the run's transaction: the slot is handled there with the run, or the run
	// is rolled back.
	within := func(ctx context.Context, tx dbtx, runID string) error {
		return handle(ctx, tx, "fired", &runID, nil, func(ctx context.Context, tx dbtx) error {
			if r.TaskID != nil {
				return queries.MarkRunScheduled(ctx, tx, dbsqlc.MarkRunScheduledParams{ScheduleID: &r.ID, SlotAt: &slot, ID: runID})
			}
			return queries.MarkPipelineRunScheduled(ctx, tx, dbsqlc.MarkPipelineRunScheduledParams{ScheduleID: &r.ID, SlotAt: &slot, ID: runID})
		})
	}
	var runID string
	var err error
	if r.TaskID != nil {
		var res []EnqueueResult
		res, _, err = e.enqueue(ctx, []EnqueueRequest{{TaskID: *r.TaskID, Input: r.Input}},
			func(ctx context.Context, tx dbtx, ids []string) error { return within(ctx, tx, ids[0]) })
		if err == nil {
			runID = res[0].RunID
		}
	} else {
		var res TriggerResult
		res, err = e.trigger(ctx, *r.PipelineID, TriggerRequest{Input: r.Input}, within)
		if err == nil {
			runID = res.PipelineRunID
		}
	}
	var refused *Error
	switch {
	case err == nil:
		return runID, "fired", nil
	case errors.As(err, &refused) && (errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound)):
		// The target is gone or refuses the input: the slot failed, and the schedule moves on.
		why := refused.Code + ": " + refused.Msg
		return record("failed", &why)
	default:
		return "", "", err
	}
}

// cancelScheduledRun cancels the run of a schedule's previous slot (overlap cancel-previous);
// a run that ended meanwhile is left as it is.
func (e *Engine) cancelScheduledRun(ctx context.Context, id string) error {
	var err error
	if strings.HasPrefix(id, "prun_") {
		_, err = e.CancelPipelineRun(ctx, id)
	} else {
		_, err = e.CancelRun(ctx, id)
	}
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("cancel the previous run %s: %w", id, err)
	}
	return nil
}
