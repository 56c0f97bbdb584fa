package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A run's row says "cancelled" once: the CANCELLED code that only repeats the status is left out.
func TestRunErrorTextDoesNotRepeatTheStatus(t *testing.T) {
	t.Parallel()
	s := func(v string) *string { return &v }
	require.Equal(t, "the pipeline run was cancelled", runErrorText("cancelled", s("CANCELLED"), s("the pipeline run was cancelled")))
	require.Equal(t, "TIMEOUT: no heartbeat", runErrorText("failed", s("TIMEOUT"), s("no heartbeat")))
	require.Equal(t, "CANCELLED", runErrorText("cancelled", s("CANCELLED"), nil), "a bare code stays")
	require.Equal(t, "", runErrorText("completed", nil, nil))
}
