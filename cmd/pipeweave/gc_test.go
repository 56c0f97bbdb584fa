package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServerGCTarget: the orchestrator commands raise the GC target to serverGCPercent
// unless GOGC is set, which the runtime has applied already and which wins.
func TestServerGCTarget(t *testing.T) {
	t.Parallel()
	var got []int
	set := func(p int) int { got = append(got, p); return 100 }
	gcTarget(func(string) string { return "" }, set)
	require.Equal(t, []int{serverGCPercent}, got)
	got = nil
	gcTarget(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	}, set)
	require.Empty(t, got, "GOGC set: left as the runtime read it")
}
