package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// pipeweave rate-limits put, list and delete; bad input is the server's 400 naming the field,
// or the CLI's own error before anything is sent.
func TestCLIRateLimits(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	require.Equal(t, "no named rate limits (create one: pipeweave rate-limits put KEY LIMIT PERIOD)\n", s.cli("rate-limits", "list"))
	out := s.cli("rate-limits", "put", "email", "100", "1m")
	require.Equal(t, "rate limit email: at most 100 runs per 1m0s (tasks share it with rateLimitKey \"email\")\n", out)
	var r protocol.NamedRateLimit
	s.cliJSON(&r, "rate-limits", "put", "email", "50", "500ms")
	require.Equal(t, 50, r.Limit)
	require.Equal(t, int64(500), r.PeriodMs)
	out = s.cli("rate-limits", "list")
	require.Regexp(t, `^KEY\s+LIMIT\s+PERIOD\s+UPDATED\nemail\s+50\s+500ms\s+\S+\n$`, out)
	var list protocol.RateLimitList
	s.api(http.MethodGet, "/api/rate-limits", nil, &list)
	require.Len(t, list.RateLimits, 1)

	_, _, err := runCmd(t, s.env(), "rate-limits", "put", "email", "0", "1s")
	require.EqualError(t, err, `limit must be between 1 and 2147483647 (400 INVALID_RATE_LIMIT)`)
	_, _, err = runCmd(t, s.env(), "rate-limits", "put", "email", "5", "48h")
	require.EqualError(t, err, `periodMs must be between 1 and 86400000 (a day) (400 INVALID_RATE_LIMIT_PERIOD)`)
	_, _, err = runCmd(t, s.env(), "rate-limits", "put", "email", "five", "1s")
	require.EqualError(t, err, `rate-limits put: LIMIT "five" is not a whole number`)
	_, _, err = runCmd(t, s.env(), "rate-limits", "put", "email", "5", "soon")
	require.EqualError(t, err, `rate-limits put: PERIOD "soon" is not a duration such as 1s, 500ms or 1m`)

	require.Equal(t, "rate limit email deleted\n", s.cli("rate-limits", "delete", "email"))
	_, _, err = runCmd(t, s.env(), "rate-limits", "delete", "email")
	require.EqualError(t, err, `rate limit "email" does not exist (404 RATE_LIMIT_NOT_FOUND)`)
}
