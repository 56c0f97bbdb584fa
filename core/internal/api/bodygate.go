package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// Waits of the body-reading pools.
const (
	defaultBodySlotWait = time.Second
	// bodyDrainWait is how long the unread rest of a body refused unread (or cut short) may
	// take to arrive before the connection is closed.
	bodyDrainWait = 500 * time.Millisecond
)

// BodyBusyRetryAfter is the Retry-After, in seconds, of a 503 BODY_SLOTS_BUSY.
const BodyBusyRetryAfter = 1

// errBodyBusy is what a request body's Read returns when no slot to read it was free within
// the wait; the request is then answered 503 BODY_SLOTS_BUSY whatever the handler writes.
var errBodyBusy = errors.New("too many request bodies are being read at once")

// bodyPools bounds how many request bodies are read at once: one pool for authenticated
// requests (a valid API key or run token), a separate, smaller one for the rest (registrations,
// compat-mode worker calls without a token), so that clients without credentials cannot take
// the slots of those with them. A slot is taken at a body's first Read, so a request refused
// before its body is read (a wrong key, a bad run token) takes none, and given back when the
// body has been read to its end or failed, or when the handler returns.
type bodyPools struct {
	authenticated, anonymous chan struct{}
	wait                     time.Duration
}

func newBodyPools(authenticated, anonymous int, wait time.Duration) *bodyPools {
	if authenticated <= 0 {
		authenticated = defaults.MaxConcurrentBodies
	}
	if anonymous <= 0 {
		anonymous = defaults.MaxUnauthenticatedBodies
	}
	if wait <= 0 {
		wait = defaultBodySlotWait
	}
	return &bodyPools{authenticated: make(chan struct{}, authenticated), anonymous: make(chan struct{}, anonymous), wait: wait}
}

type gateKey struct{}

// bodyGate is one request's passage through the pools: its body reader and its response
// writer.
type bodyGate struct {
	pools *bodyPools
	ctx   context.Context
	body  io.ReadCloser
	w     http.ResponseWriter

	mu            sync.Mutex
	authenticated bool
	slot          chan struct{} // the pool a slot is held in, nil when none
	done          bool          // the body was read to its end or failed: no slot is taken again
	sawEOF        bool
	busy          bool // no slot was free: the answer is 503
	wrote         bool // the response's header was written
}

// admit routes r's body through the pools and w through the gate. finish must be called when
// the handler has returned.
func (p *bodyPools) admit(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, func()) {
	g := &bodyGate{pools: p, ctx: r.Context(), body: r.Body, w: w}
	r = r.WithContext(context.WithValue(r.Context(), gateKey{}, g))
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = g
	} else {
		g.done, g.sawEOF = true, true
	}
	return g, r, g.finish
}

// markAuthenticated records that r carries a valid credential: its body is read in the
// authenticated pool.
func markAuthenticated(r *http.Request) {
	if g, ok := r.Context().Value(gateKey{}).(*bodyGate); ok {
		g.mu.Lock()
		g.authenticated = true
		g.mu.Unlock()
	}
}

// authenticated marks the requests h serves as authenticated (h runs only once the API key
// was checked).
func authenticated(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		markAuthenticated(r)
		h(w, r)
	}
}

// Read takes a slot at the first read, then reads the body.
func (g *bodyGate) Read(p []byte) (int, error) {
	if err := g.acquire(); err != nil {
		return 0, err
	}
	n, err := g.body.Read(p)
	if err != nil {
		g.mu.Lock()
		g.done, g.sawEOF = true, errors.Is(err, io.EOF)
		g.releaseLocked()
		g.mu.Unlock()
	}
	return n, err
}

// Close closes the body.
func (g *bodyGate) Close() error { return g.body.Close() }

func (g *bodyGate) acquire() error {
	g.mu.Lock()
	if g.busy {
		g.mu.Unlock()
		return errBodyBusy
	}
	if g.slot != nil || g.done {
		g.mu.Unlock()
		return nil
	}
	pool := g.pools.anonymous
	if g.authenticated {
		pool = g.pools.authenticated
	}
	g.mu.Unlock()
	select {
	case pool <- struct{}{}:
	default:
		t := time.NewTimer(g.pools.wait)
		defer t.Stop()
		select {
		case pool <- struct{}{}:
		case <-t.C:
			g.mu.Lock()
			g.busy = true
			g.mu.Unlock()
			return errBodyBusy
		case <-g.ctx.Done():
			return g.ctx.Err()
		}
	}
	g.mu.Lock()
	g.slot = pool
	g.mu.Unlock()
	return nil
}

func (g *bodyGate) releaseLocked() {
	if g.slot != nil {
		<-g.slot
		g.slot = nil
	}
}

// finish gives the slot back and answers 503 for a request refused a slot whose handler wrote
// nothing.
func (g *bodyGate) finish() {
	g.mu.Lock()
	g.releaseLocked()
	g.done = true
	busy, wrote := g.busy, g.wrote
	g.mu.Unlock()
	if busy && !wrote {
		g.WriteHeader(http.StatusServiceUnavailable)
	}
}

// Header is the response's header.
func (g *bodyGate) Header() http.Header { return g.w.Header() }

// WriteHeader writes the response's header. A request refused a body slot is answered
// 503 BODY_SLOTS_BUSY instead of what the handler made of the failed read. A response sent
// before the body was read to its end waits at most bodyDrainWait for the rest (which net/http
// discards), then the connection is closed.
func (g *bodyGate) WriteHeader(status int) {
	g.mu.Lock()
	if g.wrote {
		g.mu.Unlock()
		return
	}
	g.wrote = true
	busy, sawEOF := g.busy, g.sawEOF
	g.mu.Unlock()
	if !sawEOF {
		// net/http reads up to 256 KiB of what is left before it answers (then closes the
		// connection if more remains); a slow client would make that last until the read
		// timeout. The rest must arrive within bodyDrainWait.
		_ = http.NewResponseController(g.w).SetReadDeadline(time.Now().Add(bodyDrainWait))
	}
	if !busy {
		g.w.WriteHeader(status)
		return
	}
	h := g.w.Header()
	for k := range h {
		if k != "Connection" {
			delete(h, k)
		}
	}
	h.Set("Retry-After", strconv.Itoa(BodyBusyRetryAfter))
	writeJSON(g.w, http.StatusServiceUnavailable, protocol.ErrorBody{Code: "BODY_SLOTS_BUSY",
		Error: "the server is reading too many request bodies at once; try again shortly"})
}

// Write writes the response's body; a handler's body after a refused slot is dropped.
func (g *bodyGate) Write(p []byte) (int, error) {
	g.WriteHeader(http.StatusOK)
	g.mu.Lock()
	busy := g.busy
	g.mu.Unlock()
	if busy {
		return len(p), nil
	}
	return g.w.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (g *bodyGate) Unwrap() http.ResponseWriter { return g.w }

// Flush sends buffered data to the client (responses streamed by the handler).
func (g *bodyGate) Flush() {
	if f, ok := g.w.(http.Flusher); ok {
		g.WriteHeader(http.StatusOK)
		f.Flush()
	}
}
