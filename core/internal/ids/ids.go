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

// After returns an id with id's prefix that sorts after id: a new ULID of the millisecond after
// id's (id itself when it is no prefixed ULID, which New never makes).
func After(id string) string {
	i := strings.IndexByte(id, '_')
	u, err := ulid.ParseStrict(strings.ToUpper(id[i+1:]))
	if err != nil {
		return id
	}
	mu.Lock()
	next := ulid.MustNew(u.Time()+1, entropy)
	mu.Unlock()
	return id[:i+1] + strings.ToLower(next.String())
}
