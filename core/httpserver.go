package core

import (
	"net/http"
	"time"
)

// MaxHeaderBytes caps the request line and headers of every request to the orchestrator's
// HTTP server (64 KiB; net/http's default is 1 MiB).
const MaxHeaderBytes = 64 << 10

// HTTPServer returns the http.Server every orchestrator process serves h with: headers within
// min(10 s, HTTP_READ_TIMEOUT_MS), the whole request (headers and body) within
// HTTP_READ_TIMEOUT_MS, idle keep-alive connections closed after HTTP_IDLE_TIMEOUT_MS, and
// headers capped at MaxHeaderBytes, so that a slow or idle client cannot hold a connection
// (and its memory) for ever.
func (c Config) HTTPServer(h http.Handler) *http.Server {
	read, idle := c.HTTPReadTimeout, c.HTTPIdleTimeout
	if read <= 0 {
		read = DefaultConfig().HTTPReadTimeout
	}
	if idle <= 0 {
		idle = DefaultConfig().HTTPIdleTimeout
	}
	header := min(10*time.Second, read)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: header,
		ReadTimeout:       read,
		IdleTimeout:       idle,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
