package core

import (
	"net/http"
)

// MaxHeaderBytes caps the request line and headers of every request to the orchestrator's
// HTTP server (64 KiB; net/http's default is 1 MiB).
const MaxHeaderBytes = 64 << 10

// HTTPServer returns the http.Server every orchestrator process serves h with: headers within
// min(HTTP_READ_HEADER_TIMEOUT_MS, HTTP_READ_TIMEOUT_MS), the whole request (headers and body)
// within HTTP_READ_TIMEOUT_MS, idle keep-alive connections closed after HTTP_IDLE_TIMEOUT_MS,
// headers capped at MaxHeaderBytes, and at most MAX_CONNECTIONS open connections (connlimit.go:
// over the cap, the connection that has waited longest for a request's headers is closed), so
// that a slow or idle client cannot hold a connection, a file descriptor or memory for ever.
func (c Config) HTTPServer(h http.Handler) *http.Server {
	def := DefaultConfig()
	read, idle, header := c.HTTPReadTimeout, c.HTTPIdleTimeout, c.HTTPReadHeaderTimeout
	if read <= 0 {
		read = def.HTTPReadTimeout
	}
	if idle <= 0 {
		idle = def.HTTPIdleTimeout
	}
	if header <= 0 {
		header = def.HTTPReadHeaderTimeout
	}
	conns := c.MaxConnections
	if conns <= 0 {
		conns = DefaultMaxConnections()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(header, read),
		ReadTimeout:       read,
		IdleTimeout:       idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnState:         newConnLimiter(conns).track,
	}
}
