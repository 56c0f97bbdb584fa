package cronspec_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/internal/cronspec"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// slots lists the slots of spec after from, n of them.
func slots(spec *cronspec.Spec, from time.Time, n int) []time.Time {
	var out []time.Time
	for t := from; len(out) < n; {
		t = spec.Next(t)
		out = append(out, t)
	}
	return out
}

func TestSlotsInATimeZone(t *testing.T) {
	t.Parallel()
	spec, err := cronspec.Parse("0 9 * * 1-5", "America/New_York")
	require.NoError(t, err)
	// Friday 2026-12-04 09:00 EST is 14:00 UTC; the next is Monday.
	require.Equal(t, []time.Time{utc("2026-12-04T14:00:00Z"), utc("2026-12-07T14:00:00Z")}, slots(spec, utc("2026-12-03T15:00:00Z"), 2))

	// Six fields: seconds first.
	spec, err = cronspec.Parse("*/15 * * * * *", "")
	require.NoError(t, err)
	require.Equal(t, []time.Time{utc("2026-12-03T10:00:15Z"), utc("2026-12-03T10:00:30Z")}, slots(spec, utc("2026-12-03T10:00:00Z"), 2))

	spec, err = cronspec.Parse("@every 90s", "UTC")
	require.NoError(t, err)
	require.Equal(t, utc("2026-12-03T10:01:30Z"), spec.Next(utc("2026-12-03T10:00:00Z")))
}

// Daylight saving time, as robfig/cron defines it: a wall-clock time skipped by the spring change
// does not occur that day; one repeated by the autumn change occurs in both offsets.
func TestSlotsAcrossDaylightSavingChanges(t *testing.T) {
	t.Parallel()
	daily, err := cronspec.Parse("30 2 * * *", "Europe/Berlin")
	require.NoError(t, err)
	// 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
	require.Equal(t, []time.Time{
		utc("2026-03-28T01:30:00Z"), // 02:30 CET
		utc("2026-03-30T00:30:00Z"), // 02:30 CEST, the 29th skipped
	}, slots(daily, utc("2026-03-27T12:00:00Z"), 2))
	// 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice, and both
	// are slots.
	require.Equal(t, []time.Time{
		utc("2026-10-24T00:30:00Z"), // 02:30 CEST
		utc("2026-10-25T00:30:00Z"), // the first 02:30 (CEST)
		utc("2026-10-25T01:30:00Z"), // the second 02:30 (CET)
		utc("2026-10-26T01:30:00Z"), // 02:30 CET
	}, slots(daily, utc("2026-10-23T12:00:00Z"), 4))

	// An hourly schedule keeps firing every real hour across both changes.
	hourly, err := cronspec.Parse("0 * * * *", "Europe/Berlin")
	require.NoError(t, err)
	got := slots(hourly, utc("2026-03-28T23:30:00Z"), 4)
	require.Equal(t, []time.Time{utc("2026-03-29T00:00:00Z"), utc("2026-03-29T01:00:00Z"), utc("2026-03-29T02:00:00Z"), utc("2026-03-29T03:00:00Z")}, got)
}

func TestParseRefusals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ expr, tz, field, contains string }{
		{"", "", "cron", "empty"},
		{"* * *", "", "cron", "expected 5 to 6 fields"},
		{"61 * * * *", "", "cron", "above maximum"},
		{"* * * * * * *", "", "cron", "fields"},
		{"0 0 30 2 *", "", "cron", "never fires"},
		{"CRON_TZ=Asia/Tokyo 0 * * * *", "", "cron", "timezone field"},
		{"@sometimes", "", "cron", "unrecognized descriptor"},
		{"0 * * * *", "Mars/Olympus", "timezone", "unknown time zone"},
		{"0 * * * *", "Local", "timezone", "IANA"},
	} {
		_, err := cronspec.Parse(c.expr, c.tz)
		require.Error(t, err, c.expr)
		var e *cronspec.Error
		require.ErrorAs(t, err, &e, c.expr)
		require.Equal(t, c.field, e.Field, c.expr)
		require.Contains(t, e.Msg, c.contains, c.expr)
	}
}
