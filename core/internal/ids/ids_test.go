package ids

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/stretchr/testify/require"
)

// After sorts after its argument, also after an id made "in the future" (another instance's
// clock ahead), and keeps the prefix.
func TestAfter(t *testing.T) {
	t.Parallel()
	id := New(PipelineRun)
	next := After(id)
	require.Greater(t, next, id)
	require.True(t, strings.HasPrefix(next, PipelineRun))
	require.Len(t, next, len(id))
	future := PipelineRun + strings.ToLower(ulid.MustNew(ulid.Timestamp(time.Now().Add(time.Hour)), rand.Reader).String())
	require.Greater(t, After(future), future)
	require.Equal(t, "x_notaulid", After("x_notaulid"))
}
