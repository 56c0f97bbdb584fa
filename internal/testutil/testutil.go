// Package testutil holds small helpers shared by the tests of several packages.
package testutil

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"

	"github.com/pipeweave/pipeweave/internal/freeport"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use, for output written by server goroutines
// while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (freeport.Get).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Loopback lists the loopback networks (127.0.0.0/8, ::1/128): the WORKER_ALLOWED_NETWORKS
// (core.Config.WorkerAllowedNetworks) of test orchestrators whose workers listen on loopback.
// Do not modify it.
var Loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
