package core_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// The stored text of a refused dispatch, and of one that got no answer.
const (
	refusedText  = "dispatch refused: the worker's address is not allowed (WORKER_ALLOWED_NETWORKS)"
	noAnswerText = "dispatch failed: the worker could not be reached or did not answer within DISPATCH_TIMEOUT_MS"
)

// noLoopback is the configuration of production: WORKER_ALLOWED_NETWORKS unset.
func noLoopback(c *core.Config) { c.WorkerAllowedNetworks = nil }

// requireRefused waits for run id to fail for good with DISPATCH_REFUSED after one attempt
// (a refused dispatch is not retried, whatever retries the task has), with the generic text
// in the run, its attempt and its DLQ entry, and none of forbidden in them.
func (e *env) requireRefused(id string, forbidden ...string) {
	e.t.Helper()
	r := e.waitStatus(id, protocol.StatusFailed)
	require.Equal(e.t, 1, r.Attempt, "not retried")
	require.Equal(e.t, protocol.CodeDispatchRefused, *r.ErrorCode)
	require.Equal(e.t, refusedText, *r.Error)
	require.Len(e.t, r.PreviousAttempts, 1)
	require.Equal(e.t, protocol.CodeDispatchRefused, r.PreviousAttempts[0].ErrorCode)
	require.Equal(e.t, refusedText, r.PreviousAttempts[0].Error)
	var dlqErr, dlqCode string
	require.NoError(e.t, e.pool.QueryRow(context.Background(), "SELECT error, error_code FROM dlq WHERE task_run_id = $1", id).
		Scan(&dlqErr, &dlqCode))
	require.Equal(e.t, refusedText, dlqErr)
	require.Equal(e.t, protocol.CodeDispatchRefused, dlqCode)
	for _, f := range forbidden {
		require.NotContains(e.t, *r.Error+dlqErr, f)
	}
}

// Cloud metadata and the other always-refused addresses are refused even when every network
// is listed; the dispatch never leaves the process (the guard refuses before connecting, so
// nothing needs to listen there), is not retried, lands in the DLQ with DISPATCH_REFUSED,
// and is counted under reason "refused". Registration logs a warning for each.
func TestDispatchToMetadataIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) {
		c.WorkerAllowedNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	})
	urls := map[string]string{
		"gcp":    "http://169.254.169.254",
		"ecs":    "http://169.254.170.2/v2",
		"mapped": "http://[::ffff:169.254.169.254]:80",
		"aws6":   "http://[fd00:ec2::254]",
		"ali":    "http://100.100.100.200",
		"nat64":  "http://[64:ff9b::a9fe:a9fe]",
		"zero":   "http://0.0.0.0:8080",
		"linkv6": "http://[fe80::1%25lo]:8080",
	}
	var ids []string
	for name, u := range urls {
		e.register("svc-"+name, "1", u, task("t-"+name, withRetries(3, 0)))
		ids = append(ids, e.enqueue(map[string]any{"taskId": "t-" + name}).RunID)
	}
	for _, id := range ids {
		e.requireRefused(id, "169.254", "fd00", "100.100", "0.0.0.0", "fe80")
	}
	m := e.scrape("")
	require.Equal(t, float64(len(urls)), m.get("pipeweave_dispatch_failures_total", "reason", "refused"))
	require.Equal(t, float64(len(urls)), m.sum("pipeweave_dispatch_failures_total"))
	require.Contains(t, e.logs.String(), "refused by the dispatch guard")
}

// Loopback is refused unless WORKER_ALLOWED_NETWORKS lists it, also when the baseUrl names a
// host that resolves to it (localhost): the check is on the address connected to, after DNS.
// The worker receives nothing. A private and a CGNAT address are refused as well.
func TestDispatchToLoopbackAndPrivateNeedsAllowedNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLoopback)
	w := newWorker(t, e.url)
	u, err := url.Parse(w.URL())
	require.NoError(t, err)
	e.register("lit", "1", w.URL(), task("by-ip", withRetries(2, 0)))
	e.register("named", "1", "http://localhost:"+u.Port(), task("by-name", withRetries(2, 0)))
	e.register("private", "1", "http://10.0.0.5:8080", task("ten", withRetries(2, 0)))
	e.register("shared", "1", "http://100.64.0.1:8080", task("cgnat", withRetries(2, 0)))
	for _, taskID := range []string{"by-ip", "by-name", "ten", "cgnat"} {
		id := e.enqueue(map[string]any{"taskId": taskID}).RunID
		e.requireRefused(id, "127.0.0.1", "localhost", u.Port(), "10.0.0.5", "100.64")
	}
	require.Zero(t, w.count(), "a refused dispatch never reaches the worker")

	// The same worker, loopback listed (the test harness's default): dispatched.
	e2 := newEnv(t)
	w2 := newWorker(t, e2.url)
	u2, err := url.Parse(w2.URL())
	require.NoError(t, err)
	e2.register("named", "1", "http://localhost:"+u2.Port(), task("by-name"))
	id := e2.enqueue(map[string]any{"taskId": "by-name"}).RunID
	e2.waitStatus(id, protocol.StatusRunning)
	require.Equal(t, 1, w2.count())
}

// A worker that answers 307 to another server is not followed: the dispatch fails (retried
// like any failed dispatch), the stored error names the status but not the target, and the
// other server receives nothing (the run token in the body goes nowhere else).
func TestDispatchDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(target.Close)
	var redirects atomic.Int32
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects.Add(1)
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	e.register("svc", "1", redirector.URL, task("moved", withRetries(1, 0)))
	id := e.enqueue(map[string]any{"taskId": "moved"}).RunID
	e.waitMoved("both attempts", func() bool {
		e.process()
		return e.run(id).Status == protocol.StatusFailed
	})
	r := e.run(id)
	require.Equal(t, 2, r.Attempt, "a redirect is a failed dispatch, retried")
	require.Equal(t, protocol.CodeDispatchFailed, *r.ErrorCode)
	require.Equal(t, "worker answered 307 Temporary Redirect; redirects are not followed", *r.Error)
	require.NotContains(t, *r.Error, strings.TrimPrefix(target.URL, "http://"))
	require.Equal(t, int32(2), redirects.Load())
	require.Zero(t, hits.Load(), "the redirect target receives nothing")
}

// A dispatch that gets no answer (here: nothing listens, an allowed address) stores a generic
// text: neither the address nor the port nor how the connection failed, so that dispatches are
// no port scanner. It is retried; the cause is in the orchestrator's log.
func TestDispatchConnectionErrorIsGeneric(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	e.register("gone", "1", "http://"+addr, task("unreachable", withRetries(1, 0)))
	id := e.enqueue(map[string]any{"taskId": "unreachable"}).RunID
	e.waitMoved("both attempts", func() bool {
		e.process()
		return e.run(id).Status == protocol.StatusFailed
	})
	r := e.run(id)
	require.Equal(t, 2, r.Attempt, "retried")
	require.Equal(t, protocol.CodeDispatchFailed, *r.ErrorCode)
	require.Equal(t, noAnswerText, *r.Error)
	for _, a := range r.PreviousAttempts {
		require.Equal(t, noAnswerText, a.Error)
	}
	require.Contains(t, e.logs.String(), "connection refused", "the cause is logged")
}

// A service row with a baseUrl that registration refuses today (recorded before the rule) is
// not dispatched to: DISPATCH_REFUSED, no request.
func TestDispatchRefusesAStoredBaseURLWithAQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("old", "1", w.URL(), task("legacy", withRetries(2, 0)))
	_, err := e.pool.Exec(context.Background(), "UPDATE services SET base_url = $1 WHERE id = 'old'", w.URL()+"/x?steal=")
	require.NoError(t, err)
	id := e.enqueue(map[string]any{"taskId": "legacy"}).RunID
	r := e.waitStatus(id, protocol.StatusFailed)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, protocol.CodeDispatchRefused, *r.ErrorCode)
	require.Contains(t, *r.Error, "baseUrl is not allowed")
	require.Zero(t, w.count())
}

// A baseUrl that is not a plain http(s) URL with a host, or that has user info, a query or a
// fragment, is 400 INVALID_BASE_URL naming the field, and nothing is written.
func TestRegistrationRefusesUnsafeBaseURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, u := range []string{
		"http://user:pw@10.0.0.5:8080", "http://user@worker", "https://:pw@worker",
		"http://worker/?x=1", "http://worker?", "http://worker/base?a", "http://worker/#frag", "http://worker#",
		"ftp://worker", "file:///etc/passwd", "javascript:alert(1)", "mailto:ops@example.com", "gopher://worker:70",
		"http:///path", "http://:8080", "//worker/x", "worker:8080", "/tasks", "", "http://worker:99999", "http://worker:0",
		"http://wor ker", "http://worker\n/x", "HTTP:worker",
	} {
		r := e.postReg("svc", protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: u,
			Tasks: []protocol.TaskDefinition{task("t")}})
		require.Equal(t, http.StatusBadRequest, r.Status, "%q: %s", u, r.Body)
		b := r.errorBody(t)
		require.Equal(t, "INVALID_BASE_URL", b.Code, u)
		require.True(t, strings.HasPrefix(b.Error, "baseUrl "), "%q: %s", u, b.Error)
		require.Contains(t, string(r.Body), `"field":"baseUrl"`, u)
	}
	require.Zero(t, e.count("SELECT count(*) FROM services"))
	require.Zero(t, e.count("SELECT count(*) FROM tasks"))

	// Paths, ports, IPv6 and https are fine; registration does not gate on the address (the
	// dispatch guard decides at connect time).
	for i, u := range []string{"http://worker", "https://worker.example.com:8443/base/path", "http://[::1]:8080",
		"http://169.254.169.254"} {
		e.register("ok"+string(rune('a'+i)), "1", u)
	}
}

func TestConfigWorkerAllowedNetworks(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string { return configEnv(map[string]string{"WORKER_ALLOWED_NETWORKS": v}) }
	cfg, err := core.ConfigFromEnv(env(""))
	require.NoError(t, err)
	require.Empty(t, cfg.WorkerAllowedNetworks, "nothing but public addresses by default")
	cfg, err = core.ConfigFromEnv(env(" 10.0.0.0/8, fd00::/8 ,127.0.0.1"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("127.0.0.1/32")}, cfg.WorkerAllowedNetworks)
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.0/8,localhost", "10.1.2.3/8", "any"} {
		_, err := core.ConfigFromEnv(env(bad))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, bad)
		require.Equal(t, "WORKER_ALLOWED_NETWORKS", ce.Var)
		require.NotContains(t, err.Error(), "\n")
	}
}
