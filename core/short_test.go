package core_test

import "testing"

// rounds is how many times a race test repeats its race: full in the full run (scripts/test,
// CI), at most 3 under -short (scripts/test --short), which still runs every assertion of a
// round but gives a rare interleaving fewer chances to show up.
func rounds(full int) int {
	if testing.Short() {
		return min(full, 3)
	}
	return full
}
