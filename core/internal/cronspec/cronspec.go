// Package cronspec parses a schedule's cron expression and time zone and computes its slots.
//
// Expressions are those of github.com/robfig/cron/v3 with an optional leading seconds field:
// five fields (minute hour day-of-month month day-of-week), six with seconds first, or a
// descriptor (@yearly, @monthly, @weekly, @daily, @hourly, @every 90s). Slots are computed in
// the schedule's time zone, so daylight saving time changes are handled as that library
// defines: a wall-clock time that a spring-forward change skips does not occur that day (a
// daily 02:30 job in Europe/Berlin does not fire on the day clocks go from 02:00 to 03:00), and
// one that an autumn change repeats occurs twice, once in each offset (two distinct instants,
// so two slots). @every periods under a second are rounded up to one second.
package cronspec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	// The zone database is compiled in: serverless images often have no /usr/share/zoneinfo.
	_ "time/tzdata"
)

// MaxExprBytes bounds a cron expression.
const MaxExprBytes = 200

// MaxTimezoneBytes bounds a time zone name.
const MaxTimezoneBytes = 64

// Error is a refused expression or time zone; Field names which ("cron" or "timezone").
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// Spec is a parsed cron expression in a time zone.
type Spec struct {
	sched cron.Schedule
	loc   *time.Location
}

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse parses expr in the time zone tz (an IANA name such as "Europe/Berlin"; "" is UTC).
// A refusal is an *Error naming the field and what is wrong with it.
func Parse(expr, tz string) (*Spec, error) {
	loc, err := Location(tz)
	if err != nil {
		return nil, err
	}
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, &Error{"cron", "the expression is empty"}
	case len(expr) > MaxExprBytes:
		return nil, &Error{"cron", fmt.Sprintf("the expression is longer than %d bytes", MaxExprBytes)}
	case strings.Contains(expr, "TZ="):
		return nil, &Error{"cron", "a time zone inside the expression is not accepted; set the timezone field"}
	}
	sched, err := parser.Parse(expr)
	if err != nil {
		return nil, &Error{"cron", err.Error()}
	}
	s := &Spec{sched: sched, loc: loc}
	// robfig/cron gives up (the zero time) on an expression with no slot in the next five
	// years, such as 30 February.
	if s.Next(time.Now()).IsZero() {
		return nil, &Error{"cron", "the expression never fires (no slot in the next five years)"}
	}
	return s, nil
}

// Location loads the time zone tz ("" is UTC). "Local" is refused: it would mean the zone of
// whichever machine fires the slot.
func Location(tz string) (*time.Location, error) {
	switch {
	case tz == "" || tz == "UTC":
		return time.UTC, nil
	case len(tz) > MaxTimezoneBytes:
		return nil, &Error{"timezone", fmt.Sprintf("the name is longer than %d bytes", MaxTimezoneBytes)}
	case tz == "Local":
		return nil, &Error{"timezone", `"Local" depends on the machine; name an IANA time zone such as "Europe/Berlin"`}
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, &Error{"timezone", fmt.Sprintf("unknown time zone %q (an IANA name such as \"Europe/Berlin\" is expected)", tz)}
	}
	return loc, nil
}

// Next is the first slot strictly after t (in UTC), or the zero time when there is none within
// five years.
func (s *Spec) Next(t time.Time) time.Time {
	n := s.sched.Next(t.In(s.loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// IsError reports whether err is a refusal of Parse or Location.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
