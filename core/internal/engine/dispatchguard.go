package engine

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/netguard"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// The texts stored (and shown, and sent back to the worker in previousAttempts) for dispatches
// that failed before the worker answered. They say nothing of the address, the port or how the
// connection failed: a registrant could otherwise use dispatches to scan the networks the
// orchestrator reaches. The cause is in the orchestrator's log (and the dispatch span).
const (
	msgDispatchRefused    = "dispatch refused: the worker's address is not allowed (WORKER_ALLOWED_NETWORKS)"
	msgDispatchBadBaseURL = "dispatch refused: the worker's baseUrl is not allowed (it has user info, a query or a fragment)"
	msgDispatchNoAnswer   = "dispatch failed: the worker could not be reached or did not answer within DISPATCH_TIMEOUT_MS"
)

// newDispatchClient is the HTTP client of dispatches: every connection goes through the
// guard's dialer (which checks each address at connect time, after DNS), no proxy is used (the
// guard would then check the proxy's address, not the worker's), and redirects are not
// followed (a 3xx is the worker's answer, a failed dispatch): following one would re-send the
// body, run token included, to wherever the worker points.
func newDispatchClient(cfg Config, guard *netguard.Policy) *http.Client {
	dialer := guard.Guard(&net.Dialer{Timeout: cfg.DispatchTimeout, KeepAlive: 30 * time.Second})
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       cfg.DispatchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// transportFailure is the result of a dispatch request that got no answer: refused by the
// guard (DISPATCH_REFUSED, not retried: it cannot succeed until the configuration changes), or
// any other failure to connect or to read an answer in time (DISPATCH_FAILED, retried), each
// with a generic stored text; detail, for the log, is the error itself.
func (e *Engine) transportFailure(c Claimed, err error) result {
	if errors.Is(err, netguard.ErrRefused) {
		r := e.failDispatch(c, telemetry.ReasonRefused, msgDispatchRefused)
		r.code, r.final, r.detail = protocol.CodeDispatchRefused, true, err.Error()
		return r
	}
	reason := telemetry.ReasonNetwork
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		reason = telemetry.ReasonTimeout
	}
	r := e.failDispatch(c, reason, msgDispatchNoAnswer)
	r.detail = err.Error()
	return r
}

// badBaseURL is the result of a dispatch to a baseUrl that registration would refuse now
// (recorded before the rule existed): refused without a request.
func (e *Engine) badBaseURL(c Claimed, err error) result {
	r := e.failDispatch(c, telemetry.ReasonRefused, msgDispatchBadBaseURL)
	r.code, r.final, r.detail = protocol.CodeDispatchRefused, true, err.Error()
	return r
}

// checkBaseURL enforces the registration rule of baseUrl: an absolute http or https URL with a
// host, without user info, query or fragment (dispatches go to baseUrl + "/tasks/" + taskId,
// so a "?" or "#" would hand the registrant the rest of the request path). The error names the
// field.
func checkBaseURL(raw string) error {
	bad := func(msg string) error {
		return &Error{Kind: ErrInvalid, Code: "INVALID_BASE_URL", Msg: "baseUrl " + msg,
			Details: map[string]string{"field": "baseUrl"}}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "" || (u.Scheme != "http" && u.Scheme != "https"):
		return bad("must be an absolute http or https URL")
	case u.Hostname() == "":
		return bad("must have a host")
	case !validPort(u.Port()):
		return bad("must have a port between 1 and 65535, if any")
	case u.User != nil:
		return bad("must not contain user info (user:password@)")
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "?"):
		return bad("must not contain a query (?…)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return bad("must not contain a fragment (#…)")
	}
	return nil
}

// validPort reports whether a URL's port is empty or a number in 1–65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// warnIfRefused logs a warning when the host of a registered baseUrl is, or resolves to, an
// address the dispatch guard refuses: its dispatches would fail with DISPATCH_REFUSED. It
// gates nothing (DNS answers change; the guard decides at connect time), and resolves names
// in the background, bounded by a few seconds.
func (e *Engine) warnIfRefused(serviceID, baseURL string) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return
	}
	host := u.Hostname()
	warn := func(err error) {
		e.log.Warn("the baseUrl of a registered service is refused by the dispatch guard: its dispatches will fail with "+
			protocol.CodeDispatchRefused+" unless WORKER_ALLOWED_NETWORKS allows it", "service", serviceID, "baseUrl", baseURL, "err", err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := e.guard.Check(a); err != nil {
			warn(err)
		}
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if err := e.guard.Check(a); err != nil {
				warn(err)
				return
			}
		}
	}()
}
