package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGetGivesDistinctBindablePortsBelowTheEphemeralRange: every port can be listened on,
// none repeats, and none is in the range the kernel gives outgoing connections.
func TestGetGivesDistinctBindablePortsBelowTheEphemeralRange(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 100 {
		port, err := Get()
		require.NoError(t, err)
		require.False(t, seen[port], "port %d handed out twice", port)
		seen[port] = true
		require.GreaterOrEqual(t, port, lowest)
		require.Less(t, port, ephemeralLow())
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		require.NoError(t, err)
		require.NoError(t, ln.Close())
	}
}
