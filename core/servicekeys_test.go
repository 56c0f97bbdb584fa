package core_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// svcKeysFor are the keys a worker of serviceID holds when its service key was derived from
// secret.
func svcKeysFor(t *testing.T, secret, serviceID string) token.Keys {
	t.Helper()
	svc, err := token.ServiceKey(secret, serviceID)
	require.NoError(t, err)
	k, err := token.ServiceKeys(svc)
	require.NoError(t, err)
	return k
}

// registerWith posts a registration signed for signedAs with keys, bound to body.
func registerWith(e *env, keys token.Keys, signedAs string, body protocol.RegisterRequest) response {
	e.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(e.t, err)
	tok, err := keys.SignRegistration(signedAs, raw, time.Now())
	require.NoError(e.t, err)
	return e.do("POST", "/api/register", raw, tok)
}

// serviceRow reads a service's base URL and key id.
func serviceRow(e *env, id string) (baseURL, keyID string) {
	e.t.Helper()
	require.NoError(e.t, e.pool.QueryRow(e.t.Context(), "SELECT base_url, coalesce(key_id, '') FROM services WHERE id = $1", id).Scan(&baseURL, &keyID))
	return baseURL, keyID
}

// A worker holding service A's key can register only A, with the body its token was signed
// for, and cannot open the storage credentials of B's dispatches.
func TestServiceKeyConfinesAWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wa, wb := newWorker(t, e.url), newWorker(t, e.url)
	e.register("svc-a", "1", wa.URL(), task("ta", withRetries(0, 0)))
	e.register("svc-b", "1", wb.URL(), task("tb", withRetries(0, 0)))
	aKeys := svcKeysFor(t, testSecret, "svc-a")
	_, keyID := serviceRow(e, "svc-b")
	wantID, err := token.KeyID(testSecret)
	require.NoError(t, err)
	require.Equal(t, wantID, keyID, "the service records the secret it registered with")

	// A's key, claiming B (sub = svc-b): the signature does not verify under B's key.
	hijack := protocol.RegisterRequest{ServiceID: "svc-b", Version: "2", BaseURL: wa.URL(), Tasks: []protocol.TaskDefinition{task("tb")}}
	r := registerWith(e, aKeys, "svc-b", hijack)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	require.Equal(t, "UNAUTHORIZED", r.errorBody(t).Code)
	// A's key and sub, B's body: the token is genuine but not for that service.
	r = registerWith(e, aKeys, "svc-a", hijack)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	require.Equal(t, "SERVICE_MISMATCH", r.errorBody(t).Code)

	// A token seen on the wire, replayed with another baseUrl: refused, nothing changes.
	body, err := json.Marshal(protocol.RegisterRequest{ServiceID: "svc-b", Version: "1", BaseURL: wb.URL(), Tasks: []protocol.TaskDefinition{task("tb", withRetries(0, 0))}})
	require.NoError(t, err)
	seen := e.regToken("svc-b", body)
	r = e.do("POST", "/api/register", body, seen)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	replayed, err := json.Marshal(protocol.RegisterRequest{ServiceID: "svc-b", Version: "1", BaseURL: "http://attacker.example:8080", Tasks: []protocol.TaskDefinition{task("tb", withRetries(0, 0))}})
	require.NoError(t, err)
	r = e.do("POST", "/api/register", replayed, seen)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	b := r.errorBody(t)
	require.Equal(t, "REGISTRATION_BODY_MISMATCH", b.Code)
	require.Contains(t, b.Error, "bsh")
	// One byte more (white space) is another body too.
	r = e.do("POST", "/api/register", append(body, ' '), seen)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	base, _ := serviceRow(e, "svc-b")
	require.Equal(t, wb.URL(), base, "the refused registrations changed nothing")

	// A real dispatch to B: B's key opens its storage credentials, A's does not.
	id := e.enqueue(map[string]any{"taskId": "tb"}).RunID
	wb.waitDispatches(1)
	d := wb.all()[0]
	claims, err := token.ReadRun(d.StorageToken, time.Now())
	require.NoError(t, err)
	require.Equal(t, id, claims.RunID)
	_, err = aKeys.OpenBackend(id, claims.Storage)
	require.ErrorIs(t, err, token.ErrInvalid, "A cannot open B's credentials")
	_, err = e.keys.OpenBackend(id, claims.Storage)
	require.ErrorIs(t, err, token.ErrInvalid, "nor can the master-derived K_enc of protocol v1")
	plain, err := svcKeysFor(t, testSecret, "svc-b").OpenBackend(id, claims.Storage)
	require.NoError(t, err)
	require.Contains(t, string(plain), `"provider":"local"`)

	// Workers hold no run-token key: the token is signed with the master's K_run, and passing
	// it back still authenticates B's callback.
	_, err = aKeys.VerifyRun(d.StorageToken, time.Now())
	require.Error(t, err)
	status, out := wb.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, string(out))
	require.Equal(t, protocol.StatusCompleted, e.run(id).Status)
}

// Rotation: with the new secret current and the old one previous, a service registered under
// the old secret keeps getting dispatches it can open, its run tokens signed before the
// rotation still complete, and it switches to the new secret when it registers with its new
// key. A secret that is neither is refused.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	const (
		oldSecret = testSecret
		newSecret = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
		stranger  = "a third secret, neither current nor previous, long enough"
	)
	before := newEnv(t)
	w := newWorker(t, before.url)
	before.register("svc", "1", w.URL(), task("t", withRetries(0, 0)))
	inflight := before.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(1)
	d0 := w.all()[0]

	// The rotated orchestrator, on the same database; the worker calls it from now on.
	after := newEnvOn(t, before.pool, func(c *core.Config) { c.SecretKey, c.PreviousSecretKey = newSecret, oldSecret })
	w.orch = after.url
	oldID, err := token.KeyID(oldSecret)
	require.NoError(t, err)
	newID, err := token.KeyID(newSecret)
	require.NoError(t, err)

	// The run token signed before the rotation still completes its run.
	status, out := w.callback(d0, success(d0))
	require.Equal(t, http.StatusOK, status, string(out))
	require.Equal(t, protocol.StatusCompleted, after.run(inflight).Status)

	// New dispatches of the service registered under the old secret: sealed with its old
	// service key, signed with the new K_run.
	id := after.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(2)
	d1 := w.all()[1]
	claims, err := token.ReadRun(d1.StorageToken, time.Now())
	require.NoError(t, err)
	_, err = svcKeysFor(t, oldSecret, "svc").OpenBackend(id, claims.Storage)
	require.NoError(t, err, "the not yet redeployed worker opens it with its old key")
	_, err = svcKeysFor(t, newSecret, "svc").OpenBackend(id, claims.Storage)
	require.ErrorIs(t, err, token.ErrInvalid)
	newRing, err := token.NewKeyring(newSecret, "")
	require.NoError(t, err)
	_, err = newRing.VerifyRun(d1.StorageToken, time.Now())
	require.NoError(t, err, "new run tokens are signed with the current K_run")
	status, out = w.callback(d1, success(d1))
	require.Equal(t, http.StatusOK, status, string(out))

	// The old worker may still register (with its old key); a stranger's key may not.
	reg := protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: w.URL(), Tasks: []protocol.TaskDefinition{task("t", withRetries(0, 0))}}
	r := registerWith(after, svcKeysFor(t, oldSecret, "svc"), "svc", reg)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	_, kid := serviceRow(after, "svc")
	require.Equal(t, oldID, kid)
	require.Equal(t, "previous", serviceSecret(t, after, "svc"), "GET /api/services tells the operator who still has to move")
	r = registerWith(after, svcKeysFor(t, stranger, "svc"), "svc", reg)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	strangerRing, err := token.NewKeyring(stranger, "")
	require.NoError(t, err)
	strangerTok, err := strangerRing.SignRun(claims)
	require.NoError(t, err)
	status, out, err = post(after.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: id}, strangerTok)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, string(out))

	// Redeployed with the new service key: the service switches.
	r = registerWith(after, svcKeysFor(t, newSecret, "svc"), "svc", reg)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	_, kid = serviceRow(after, "svc")
	require.Equal(t, newID, kid)
	require.Equal(t, "current", serviceSecret(t, after, "svc"))
	id = after.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(3)
	d2 := w.all()[2]
	claims, err = token.ReadRun(d2.StorageToken, time.Now())
	require.NoError(t, err)
	_, err = svcKeysFor(t, newSecret, "svc").OpenBackend(id, claims.Storage)
	require.NoError(t, err)
	_, err = svcKeysFor(t, oldSecret, "svc").OpenBackend(id, claims.Storage)
	require.ErrorIs(t, err, token.ErrInvalid)
	status, out = w.callback(d2, success(d2))
	require.Equal(t, http.StatusOK, status, string(out))

	// Once the previous secret is dropped, its tokens and service keys are refused, and a
	// service still recorded under it is sealed under the current secret.
	done := newEnvOn(t, before.pool, func(c *core.Config) { c.SecretKey = newSecret })
	status, out, err = post(done.url+"/api/heartbeat", protocol.HeartbeatRequest{RunID: inflight}, d0.StorageToken)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, string(out))
	r = registerWith(done, svcKeysFor(t, oldSecret, "svc"), "svc", reg)
	require.Equal(t, http.StatusUnauthorized, r.Status, string(r.Body))
	_, err = before.pool.Exec(t.Context(), "UPDATE services SET key_id = $1 WHERE id = 'svc'", oldID)
	require.NoError(t, err)
	w.orch = done.url
	id = done.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(4)
	d3 := w.all()[3]
	claims, err = token.ReadRun(d3.StorageToken, time.Now())
	require.NoError(t, err)
	_, err = svcKeysFor(t, newSecret, "svc").OpenBackend(id, claims.Storage)
	require.NoError(t, err)
}

// PIPEWEAVE_SECRET_KEY_PREVIOUS is read, checked like the current secret, and may not repeat it.
func TestPreviousSecretConfig(t *testing.T) {
	t.Parallel()
	with := func(v string) func(string) string {
		return configEnv(map[string]string{"PIPEWEAVE_SECRET_KEY_PREVIOUS": v})
	}
	cfg, err := core.ConfigFromEnv(with(""))
	require.NoError(t, err)
	require.Empty(t, cfg.PreviousSecretKey)
	cfg, err = core.ConfigFromEnv(with(" another secret that is long enough to use "))
	require.NoError(t, err)
	require.Equal(t, "another secret that is long enough to use", cfg.PreviousSecretKey)
	for _, bad := range []string{"short", testSecret} {
		_, err = core.ConfigFromEnv(with(bad))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce, bad)
		require.Contains(t, err.Error(), "PIPEWEAVE_SECRET_KEY_PREVIOUS")
	}
}

// serviceSecret is the secret field of service id in GET /api/services on e.
func serviceSecret(t *testing.T, e *env, id string) string {
	t.Helper()
	r := e.do("GET", "/api/services", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var list []protocol.Service
	require.NoError(t, json.Unmarshal(r.Body, &list), string(r.Body))
	for _, s := range list {
		if s.ID == id {
			return s.Secret
		}
	}
	t.Fatalf("service %q not listed: %s", id, r.Body)
	return ""
}
