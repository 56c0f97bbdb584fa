package core

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// Bounds of the automatic MAX_CONNECTIONS (see DefaultMaxConnections).
const (
	maxAutoConnections = 4096
	minConnections     = 64
)

// DefaultMaxConnections is the connection cap of a process whose MAX_CONNECTIONS is unset:
// half its open-file limit (RLIMIT_NOFILE, which Go raises to the hard limit at start-up), at
// most 4096 and at least 64. The other half is left to the database pool, storage, dispatch
// and the connections accepted beyond the cap before they are closed.
func DefaultMaxConnections() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == 0 {
		return 1024
	}
	n := lim.Cur / 2
	if n > maxAutoConnections {
		n = maxAutoConnections
	}
	if n < minConnections {
		n = minConnections
	}
	return int(n)
}

// connLimiter caps the open connections of an http.Server through its ConnState hook. The
// listener keeps accepting (a LimitListener would stop accepting, and /health would hang with
// everyone else); when a new connection makes one too many, the connection that has waited
// longest for a request's headers (a new one that has not sent them yet, or an idle keep-alive
// one) is closed. Connections in a request (StateActive) are not: their number is bounded by the
// body pools and the read timeout. When every connection is in a request, the new one is closed.
//
// So a slow-header client (slowloris) can hold at most the cap, and loses its connections first,
// oldest first, to anyone who connects and sends a request: /health on a fresh connection is
// answered while thousands of slow connections are open.
type connLimiter struct {
	max int

	mu      sync.Mutex
	open    map[net.Conn]*list.Element // every open connection; the element is nil while it is active
	waiting *list.List                 // connections waiting for headers, longest-waiting first
	closing map[net.Conn]bool          // connections closed for being over the cap, until net/http reports them closed
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, open: map[net.Conn]*list.Element{}, waiting: list.New(), closing: map[net.Conn]bool{}}
}

// track is the http.Server's ConnState hook.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	var victim net.Conn
	l.mu.Lock()
	if e := l.open[c]; e != nil {
		l.waiting.Remove(e)
	}
	switch state {
	case http.StateNew, http.StateIdle:
		if l.closing[c] {
			break
		}
		l.open[c] = l.waiting.PushBack(c)
		if state == http.StateNew && len(l.open)-len(l.closing) > l.max {
			// The longest-waiting connection; c itself when no other waits for headers.
			e := l.waiting.Front()
			victim = e.Value.(net.Conn)
			l.waiting.Remove(e)
			l.open[victim] = nil
			l.closing[victim] = true
		}
	case http.StateActive:
		l.open[c] = nil
	case http.StateClosed, http.StateHijacked:
		delete(l.open, c)
		delete(l.closing, c)
	}
	l.mu.Unlock()
	if victim != nil {
		// The connection's goroutine sees its read fail and reports StateClosed.
		_ = victim.Close()
	}
}
