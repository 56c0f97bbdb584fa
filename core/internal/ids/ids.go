// Package ids makes the identifiers of runs and pipeline runs: a prefix and a ULID, so that ids
// sort by creation time and serve as pagination cursors.
package ids

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Prefixes of the kinds of id.
const (
	TaskRun     = "trun_"
	PipelineRun = "prun_"
	TempUpload  = "tmp_"
)

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix followed by a new ULID in lower case.
func New(prefix string) string {
	mu.Lock()
	id := ulid.MustNew(ulid.Timestamp(time.Now()), entropy)
	mu.Unlock()
	return prefix + strings.ToLower(id.String())
}
