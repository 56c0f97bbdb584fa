package token_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/token"
)

// Test vectors were computed independently with Node.js v20 (no Go involved).
// To regenerate, run the scripts below with `node -e '…'` (or save them as files).
//
// keys.js — HKDF-SHA256 keys:
//
//	const c = require('crypto');
//	const bytes = s => /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : Buffer.from(s, 'utf8');
//	for (const s of ['0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'correct-horse-battery-staple-pipeweave'])
//	  for (const l of ['register', 'run-token', 'storage'])
//	    console.log(l, Buffer.from(c.hkdfSync('sha256', bytes(s), Buffer.alloc(0), 'pipeweave/v1/' + l, 32)).toString('hex'));
//
// sto.js — sealed backend with a fixed nonce:
//
//	const c = require('crypto');
//	const key = Buffer.from(c.hkdfSync('sha256', Buffer.from('correct-horse-battery-staple-pipeweave'), Buffer.alloc(0), 'pipeweave/v1/storage', 32));
//	const nonce = Buffer.from('000102030405060708090a0b', 'hex');
//	const g = c.createCipheriv('aes-256-gcm', key, nonce); g.setAAD(Buffer.from('run_01HX'));
//	const ct = Buffer.concat([g.update('{"id":"default","provider":"s3","endpoint":"http://minio:9000","bucket":"pipeweave","region":"us-east-1","credentials":{"accessKeyId":"ak","secretAccessKey":"sk"}}'), g.final(), g.getAuthTag()]);
//	console.log(Buffer.concat([nonce, ct]).toString('base64url'));
//
// jwt.js — HS256 run and registration tokens (run as `node jwt.js "$(node sto.js)"`):
//
//	const c = require('crypto');
//	const k = l => Buffer.from(c.hkdfSync('sha256', Buffer.from('correct-horse-battery-staple-pipeweave'), Buffer.alloc(0), 'pipeweave/v1/' + l, 32));
//	const b64 = o => Buffer.from(JSON.stringify(o)).toString('base64url');
//	const jwt = (key, claims) => { const m = b64({alg: 'HS256', typ: 'JWT'}) + '.' + b64(claims);
//	  return m + '.' + c.createHmac('sha256', key).update(m).digest('base64url'); };
//	const sto = process.argv[2];
//	console.log(jwt(k('run-token'), {sub: 'run_01HX', tid: 'extract-text', att: 2, lse: 7, iat: 1700000000, exp: 1700000600, sto}));
//
// service.js — protocol v2 per-service keys, key id, and a registration token bound to its body:
//
//	const c = require('crypto');
//	const bytes = s => /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : Buffer.from(s, 'utf8');
//	const hk = (ikm, info, n) => Buffer.from(c.hkdfSync('sha256', ikm, Buffer.alloc(0), info, n || 32));
//	for (const s of ['correct-horse-battery-staple-pipeweave', '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef']) {
//	  const svc = hk(bytes(s), 'pipeweave/v1/service/pdf-processor');
//	  console.log(svc.toString('hex'), hk(svc, 'pipeweave/v1/register').toString('hex'), hk(svc, 'pipeweave/v1/storage').toString('hex'),
//	    hk(bytes(s), 'pipeweave/v1/key-id', 8).toString('hex'));
//	}
//	const svc = hk(bytes('correct-horse-battery-staple-pipeweave'), 'pipeweave/v1/service/pdf-processor');
//	const body = '{"serviceId":"pdf-processor","version":"1.1.0","baseUrl":"http://10.0.0.5:8080","tasks":[{"id":"download","codeHash":"a3f8b2c1d4e5f6a7"}]}';
//	const bsh = c.createHash('sha256').update(body).digest('base64url');
//	const b64 = o => Buffer.from(JSON.stringify(o)).toString('base64url');
//	const jwt = (key, claims) => { const m = b64({alg: 'HS256', typ: 'JWT'}) + '.' + b64(claims);
//	  return m + '.' + c.createHmac('sha256', key).update(m).digest('base64url'); };
//	console.log(bsh, jwt(hk(svc, 'pipeweave/v1/register'), {sub: 'pdf-processor', iat: 1700000000, exp: 1700000300, bsh}));
//	// the sto of sto.js, sealed under K_enc' instead of K_enc
//
// compat.js — Node SDK 1.x storage tokens with a fixed IV:
//
//	const c = require('crypto');
//	const key = s => { const b = Buffer.from(s, 'utf8'); const k = Buffer.alloc(32); for (let i = 0; i < 32; i++) k[i] = b[i % b.length]; return k; };
//	const iv = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaab', 'hex');
//	for (const s of ['pw-secret!', 'abcdefghijklmnopqrstuvwxyz0123456789ABCD']) {
//	  const g = c.createCipheriv('aes-256-gcm', key(s), iv);
//	  const ct = Buffer.concat([g.update('{"id":"default","provider":"s3","bucket":"pipeweave"}'), g.final()]);
//	  console.log(key(s).toString('hex'), iv.toString('base64') + ':' + g.getAuthTag().toString('base64') + ':' + ct.toString('base64'));
//	}
const (
	hexSecret   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	asciiSecret = "correct-horse-battery-staple-pipeweave"

	vecRunID   = "run_01HX"
	vecBackend = `{"id":"default","provider":"s3","endpoint":"http://minio:9000","bucket":"pipeweave","region":"us-east-1","credentials":{"accessKeyId":"ak","secretAccessKey":"sk"}}`
	vecSto     = "AAECAwQFBgcICQoLyj7hh4OFym7asyCIFTXtb42CorMoxY7TfuIbuWw4pIDstI_cozum3PDhJl-a3EJ8RFDqg3hAPloBu_v1UuCHidUxH5CkoCwzJve3En6qWq1OClqJf4-PvHYiYW5M9LXUCQVKRvuY2zZhzxJF0rpqIocQnhBc39KWfca2k_kpN1zFNMS4aSSbNfDiJRwZpxzo5Ipy7euzoVPYfNudzjU1YPLa64eKoJQxcdYnwUyZd1V0UmQ"
	vecRunTok  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJydW5fMDFIWCIsInRpZCI6ImV4dHJhY3QtdGV4dCIsImF0dCI6MiwibHNlIjo3LCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDYwMCwic3RvIjoiQUFFQ0F3UUZCZ2NJQ1FvTHlqN2hoNE9GeW03YXN5Q0lGVFh0YjQyQ29yTW94WTdUZnVJYnVXdzRwSURzdElfY296dW0zUERoSmwtYTNFSjhSRkRxZzNoQVBsb0J1X3YxVXVDSGlkVXhINUNrb0N3ekp2ZTNFbjZxV3ExT0NscUpmNC1QdkhZaVlXNU05TFhVQ1FWS1J2dVkyelpoenhKRjBycHFJb2NRbmhCYzM5S1dmY2Eya19rcE4xekZOTVM0YVNTYk5mRGlKUndacHh6bzVJcHk3ZXV6b1ZQWWZOdWR6alUxWVBMYTY0ZUtvSlF4Y2RZbndVeVpkMVYwVW1RIn0.PWXvUIp-1Xfh1iPiFsd0unDNpBTBkIi7wk4kYJDp1UM"
	// vecV1RegTok is a protocol v1 registration token (master K_reg, no bsh): refused since v2.
	vecV1RegTok = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwZGYtcHJvY2Vzc29yIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAzMDB9.vgK2hZML3FfRxiIjjLQWHaVROzZBLBQng4TKKd1pIlI"
	// vecRegBody, vecBsh and vecRegTok: a v2 registration of pdf-processor under asciiSecret.
	vecRegBody = `{"serviceId":"pdf-processor","version":"1.1.0","baseUrl":"http://10.0.0.5:8080","tasks":[{"id":"download","codeHash":"a3f8b2c1d4e5f6a7"}]}`
	vecBsh     = "dA4ychH1nFbkXvDD4dl7OBN1NOi71eGeJaKy90_soPU"
	vecRegTok  = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwZGYtcHJvY2Vzc29yIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAzMDAsImJzaCI6ImRBNHljaEgxbkZia1h2REQ0ZGw3T0JOMU5PaTcxZUdlSmFLeTkwX3NvUFUifQ.0D0DSeK7WFjxK4BXPsELF4_UHKBVj6vJAwZ_z4CNLp4"
	// vecSvcSto is the sto of vecSto's plaintext and nonce sealed under pdf-processor's K_enc'.
	vecSvcSto = "AAECAwQFBgcICQoLBeQwxi_l6CPbnELwaMtdFd-tRB0c5M17T968ZYf0pkDJH8uF3O4grrdzvVOs00lcTThib0GVlkaDUKpz8MbQGwILM0a6EpJVGrUWgqgDNQBB-ZWm520TWltZOaZxbEVQkqXJGE1aDWHCBNPcTb82JCXurR0M6uxkdHtz0etkr-iJ_Y2sb4O0pomUmJlQtrfZA15sHU7Syn_rnytXEoFWRTh2vQ8kM4S7S7x09eemJ1LSzbE"

	vecCompatPlain = `{"id":"default","provider":"s3","bucket":"pipeweave"}`
)

var (
	vecIat = time.Unix(1700000000, 0).UTC()
	vecRun = token.RunClaims{
		RunID: vecRunID, TaskID: "extract-text", Attempt: 2, Lease: 7,
		IssuedAt: vecIat, ExpiresAt: vecIat.Add(10 * time.Minute), Storage: vecSto,
	}
)

func mustKeys(t *testing.T, secret string) token.Keys {
	t.Helper()
	k, err := token.DeriveKeys(secret)
	require.NoError(t, err)
	return k
}

func TestSecretBytes(t *testing.T) {
	t.Parallel()
	nonHex := strings.Repeat("g", 64)
	for name, tc := range map[string]struct {
		in   string
		want []byte
		err  error
	}{
		"64 hex":            {hexSecret, mustHex(t, hexSecret), nil},
		"64 upper hex":      {strings.ToUpper(hexSecret), mustHex(t, hexSecret), nil},
		"63 hex is UTF-8":   {hexSecret[:63], []byte(hexSecret[:63]), nil},
		"64 non-hex":        {nonHex, []byte(nonHex), nil},
		"32 chars":          {asciiSecret[:32], []byte(asciiSecret[:32]), nil},
		"31 chars":          {asciiSecret[:31], nil, token.ErrWeakSecret},
		"empty":             {"", nil, token.ErrWeakSecret},
		"multibyte 32 byte": {strings.Repeat("é", 16), []byte(strings.Repeat("é", 16)), nil},
	} {
		got, err := token.SecretBytes(tc.in)
		require.ErrorIs(t, err, tc.err, name)
		require.Equal(t, tc.want, got, name)
	}
	_, err := token.DeriveKeys("too short")
	require.ErrorIs(t, err, token.ErrWeakSecret)
	require.NotContains(t, err.Error(), "too short")
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func TestDeriveKeysNodeVectors(t *testing.T) {
	t.Parallel()
	for secret, want := range map[string][3]string{
		hexSecret: {
			"969957749f7f5cf726ac1bd0a8044b53d00852975ae622ceda706df8810d2d99",
			"94de633a80d46c845e089e6d867db69359c7fcbe51c6ded3c3ee4ddead3ed79a",
			"b9bbd287467b9b3ec93fac1ddc47bd4b0e4ee11b5d6841392ffbf06eac1cf5cb",
		},
		asciiSecret: {
			"9a45001790bc81d1a3e88d29af50858ea0e226400dc6bc226f34d82fa82a4f26",
			"f2470615c8fb50c4bee5ab75944e6c4f5ee1c2b2b9d523b72a59ac401f0a3b49",
			"c5fd058f44b1cc04945c07bb8fb809b99d32fb06f906a17a65443093992e22fa",
		},
	} {
		reg, run, sto := token.KeyBytes(mustKeys(t, secret))
		require.Equal(t, want, [3]string{hex.EncodeToString(reg), hex.EncodeToString(run), hex.EncodeToString(sto)}, secret)
	}
}

func TestRunTokenNodeVector(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, asciiSecret)
	got, err := k.VerifyRun(vecRunTok, vecIat.Add(5*time.Minute))
	require.NoError(t, err)
	require.Equal(t, vecRun, got)

	// The claims struct follows the wire order sub,tid,att,lse,iat,exp,sto and
	// golang-jwt marshals the header as {"alg":"HS256","typ":"JWT"}, exactly as
	// JSON.stringify does, so Go's token is byte-identical to Node's (this holds
	// while claim strings contain no <, >, & or U+2028/9, which Go escapes).
	signed, err := k.SignRun(vecRun)
	require.NoError(t, err)
	require.Equal(t, vecRunTok, signed)
}

func TestRegistrationNodeVector(t *testing.T) {
	t.Parallel()
	k := mustSvcKeys(t, asciiSecret, "pdf-processor")
	require.Equal(t, vecBsh, token.BodyHash([]byte(vecRegBody)))
	c, err := k.VerifyRegistration(vecRegTok, vecIat.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, "pdf-processor", c.ServiceID)
	require.Equal(t, vecBsh, c.BodyHash)
	require.NoError(t, c.CheckBody([]byte(vecRegBody)))
	require.ErrorIs(t, c.CheckBody([]byte(vecRegBody+" ")), token.ErrBodyMismatch)

	signed, err := k.SignRegistration("pdf-processor", []byte(vecRegBody), vecIat.Add(999*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, vecRegTok, signed)

	// The v1 token (master K_reg, no bsh) verifies under no key any more.
	_, err = k.VerifyRegistration(vecV1RegTok, vecIat.Add(time.Minute))
	require.ErrorIs(t, err, token.ErrInvalid)
	_, err = mustKeys(t, asciiSecret).VerifyRegistration(vecV1RegTok, vecIat.Add(time.Minute))
	require.ErrorIs(t, err, token.ErrInvalid, "no bsh")
}

func mustSvcKeys(t *testing.T, secret, serviceID string) token.Keys {
	t.Helper()
	svc, err := token.ServiceKey(secret, serviceID)
	require.NoError(t, err)
	k, err := token.ServiceKeys(svc)
	require.NoError(t, err)
	return k
}

func TestOpenBackendNodeVector(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, asciiSecret)
	got, err := k.OpenBackend(vecRunID, vecSto)
	require.NoError(t, err)
	require.JSONEq(t, vecBackend, string(got))
	require.Equal(t, vecBackend, string(got))

	padded := vecSto + strings.Repeat("=", (4-len(vecSto)%4)%4)
	got, err = k.OpenBackend(vecRunID, padded)
	require.NoError(t, err)
	require.Equal(t, vecBackend, string(got))
}

func TestCompatNodeVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ secret, key, tok string }{
		{ // 10 characters: repeated
			"pw-secret!",
			"70772d7365637265742170772d7365637265742170772d736563726574217077",
			"oKGio6Slpqeoqaqr:nCsWFj2AgOUc7eblPgSKgw==:H6zCL2xRlUIRrl7J0XiJGPAL4VjEa46SS8X54V7jDmrjh4MkFUX92NvBUrVRP24i7d3OHTE=",
		},
		{ // 40 characters: cut
			"abcdefghijklmnopqrstuvwxyz0123456789ABCD",
			"6162636465666768696a6b6c6d6e6f707172737475767778797a303132333435",
			"oKGio6Slpqeoqaqr:YCClb77WN8Svi6BRGNGgbQ==:WnLyukqBb+XSHYyeXOdR0ihMg4GoLl8V+QwZJ7kDT6Nr9ceSZDKnOPUxgvQTfrGKuYcHwFQ=",
		},
	} {
		require.Equal(t, tc.key, hex.EncodeToString(token.CompatKey(tc.secret)), tc.secret)
		got, err := token.OpenCompat(tc.secret, tc.tok)
		require.NoError(t, err, tc.secret)
		require.Equal(t, vecCompatPlain, string(got), tc.secret)
	}
	require.Equal(t, []byte(strings.Repeat("é", 16)), token.CompatKey(strings.Repeat("é", 20)))
	require.Nil(t, token.CompatKey(""))
}

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, hexSecret)
	now := time.Now()

	reg, err := k.SignRegistration("svc", []byte("{}"), now)
	require.NoError(t, err)
	rc, err := k.VerifyRegistration(reg, now.Add(4*time.Minute))
	require.NoError(t, err)
	require.Equal(t, "svc", rc.ServiceID)
	require.NoError(t, rc.CheckBody([]byte("{}")))

	sto, err := k.SealBackend("run-1", []byte(vecBackend))
	require.NoError(t, err)
	require.NotContains(t, sto, "=")
	sto2, err := k.SealBackend("run-1", []byte(vecBackend))
	require.NoError(t, err)
	require.NotEqual(t, sto, sto2, "nonce must be random")
	plain, err := k.OpenBackend("run-1", sto)
	require.NoError(t, err)
	require.Equal(t, vecBackend, string(plain))

	c := token.RunClaims{
		RunID: "run-1", TaskID: "t", Attempt: 1, Lease: 3,
		IssuedAt: now.Truncate(time.Second).UTC(), ExpiresAt: now.Add(time.Hour).Truncate(time.Second).UTC(), Storage: sto,
	}
	for _, c := range []token.RunClaims{c, {RunID: "r", IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt}} {
		run, err := k.SignRun(c)
		require.NoError(t, err)
		got, err := k.VerifyRun(run, now)
		require.NoError(t, err)
		require.Equal(t, c, got)
	}

	empty, err := k.SealBackend("run-1", nil)
	require.NoError(t, err)
	plain, err = k.OpenBackend("run-1", empty)
	require.NoError(t, err)
	require.Empty(t, plain)

	for _, secret := range []string{"pw-secret!", hexSecret, "x"} {
		tok, err := token.SealCompat(secret, []byte(vecCompatPlain))
		require.NoError(t, err)
		require.Len(t, strings.Split(tok, ":"), 3)
		plain, err := token.OpenCompat(secret, tok)
		require.NoError(t, err)
		require.Equal(t, vecCompatPlain, string(plain))
	}
}

// signWith signs claims with any method and key, for forging tokens.
func signWith(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, asciiSecret)
	regKey, runKey, _ := token.KeyBytes(k)
	other := mustKeys(t, hexSecret)
	now := vecIat.Add(time.Minute)
	runClaims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": vecRunID, "tid": "x", "att": 1, "lse": 1, "iat": vecIat.Unix(), "exp": vecIat.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	parts := strings.Split(vecRunTok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"lse":7`, `"lse":8`, 1)))
	require.NotEqual(t, parts[1], forged)
	sig := []byte(parts[2])
	sig[5] ^= 1
	otherRun, err := other.SignRun(vecRun)
	require.NoError(t, err)
	regAsRun, err := k.SignRegistration(vecRunID, nil, now)
	require.NoError(t, err)

	for name, tok := range map[string]string{
		"empty":             "",
		"garbage":           "not.a.jwt",
		"two parts":         parts[0] + "." + parts[1],
		"tampered payload":  parts[0] + "." + forged + "." + parts[2],
		"tampered sig":      parts[0] + "." + parts[1] + "." + string(sig),
		"no sig":            parts[0] + "." + parts[1] + ".",
		"alg none":          signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, runClaims(nil)),
		"HS512 right key":   signWith(t, jwt.SigningMethodHS512, runKey, runClaims(nil)),
		"HS384 right key":   signWith(t, jwt.SigningMethodHS384, runKey, runClaims(nil)),
		"register key":      regAsRun,
		"other secret":      otherRun,
		"missing sub":       signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { delete(c, "sub") })),
		"missing iat":       signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { delete(c, "iat") })),
		"missing exp":       signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { delete(c, "exp") })),
		"iat in future":     signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })),
		"string att":        signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { c["att"] = "1" })),
		"padded segments":   vecRunTok + "=",
		"unsigned raw json": base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
	} {
		_, err := k.VerifyRun(tok, now)
		require.ErrorIs(t, err, token.ErrInvalid, name)
		require.NotErrorIs(t, err, token.ErrExpired, name)
	}

	// Leeway: iat up to 30 s in the future is fine.
	_, err = k.VerifyRun(signWith(t, jwt.SigningMethodHS256, runKey, runClaims(func(c jwt.MapClaims) { c["iat"] = now.Add(29 * time.Second).Unix() })), now)
	require.NoError(t, err)

	runAsReg, err := k.SignRun(vecRun)
	require.NoError(t, err)
	otherReg, err := other.SignRegistration("svc", nil, now)
	require.NoError(t, err)
	bsh := token.BodyHash(nil)
	regClaims := jwt.MapClaims{"sub": "svc", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "bsh": bsh}
	for name, tok := range map[string]string{
		"run key":         runAsReg,
		"other secret":    otherReg,
		"alg none":        signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, regClaims),
		"HS512 right key": signWith(t, jwt.SigningMethodHS512, regKey, regClaims),
		"lifetime 10 min": signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "svc", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "bsh": bsh}),
		"empty sub":       signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "bsh": bsh}),
		"missing iat":     signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "svc", "exp": now.Add(time.Minute).Unix(), "bsh": bsh}),
		"missing bsh":     signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "svc", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}),
		"short bsh":       signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "svc", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "bsh": bsh[:42]}),
		"numeric bsh":     signWith(t, jwt.SigningMethodHS256, regKey, jwt.MapClaims{"sub": "svc", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "bsh": 1}),
	} {
		_, err := k.VerifyRegistration(tok, now)
		require.ErrorIs(t, err, token.ErrInvalid, name)
	}
	rc, err := k.VerifyRegistration(signWith(t, jwt.SigningMethodHS256, regKey, regClaims), now)
	require.NoError(t, err)
	require.Equal(t, "svc", rc.ServiceID)
}

func TestExpired(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, asciiSecret)
	exp := vecRun.ExpiresAt

	_, err := k.VerifyRun(vecRunTok, exp.Add(29*time.Second))
	require.NoError(t, err, "within leeway")
	_, err = k.VerifyRun(vecRunTok, exp.Add(31*time.Second))
	require.ErrorIs(t, err, token.ErrExpired)
	require.NotErrorIs(t, err, token.ErrInvalid)

	_, err = mustSvcKeys(t, asciiSecret, "pdf-processor").VerifyRegistration(vecRegTok, vecIat.Add(5*time.Minute+31*time.Second))
	require.ErrorIs(t, err, token.ErrExpired)
	require.NotErrorIs(t, err, token.ErrInvalid)

	// A forged token stays ErrInvalid even when expired.
	_, err = mustKeys(t, hexSecret).VerifyRun(vecRunTok, exp.Add(time.Hour))
	require.ErrorIs(t, err, token.ErrInvalid)
}

func TestOpenBackendRefusals(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, asciiSecret)
	blob, err := base64.RawURLEncoding.DecodeString(vecSto)
	require.NoError(t, err)
	flipped := append([]byte(nil), blob...)
	flipped[20] ^= 1
	for name, tc := range map[string]struct {
		keys       token.Keys
		runID, sto string
	}{
		"other run id":    {k, "run_01HY", vecSto},
		"empty run id":    {k, "", vecSto},
		"other secret":    {mustKeys(t, hexSecret), vecRunID, vecSto},
		"tampered":        {k, vecRunID, base64.RawURLEncoding.EncodeToString(flipped)},
		"truncated":       {k, vecRunID, vecSto[:len(vecSto)-4]},
		"nonce only":      {k, vecRunID, base64.RawURLEncoding.EncodeToString(blob[:12])},
		"empty":           {k, vecRunID, ""},
		"garbage base64":  {k, vecRunID, "!!!not base64!!!"},
		"std base64 '+/'": {k, vecRunID, "ab+/" + vecSto},
	} {
		_, err := tc.keys.OpenBackend(tc.runID, tc.sto)
		require.ErrorIs(t, err, token.ErrInvalid, name)
	}
}

func TestCompatRefusals(t *testing.T) {
	t.Parallel()
	good, err := token.SealCompat("pw-secret!", []byte(vecCompatPlain))
	require.NoError(t, err)
	p := strings.Split(good, ":")
	ct, err := base64.StdEncoding.DecodeString(p[2])
	require.NoError(t, err)
	ct[0] ^= 1
	for name, tc := range map[string]struct{ secret, tok string }{
		"wrong secret":  {"pw-secret?", good},
		"cut secret":    {"pw-secret", good},
		"tampered":      {"pw-secret!", p[0] + ":" + p[1] + ":" + base64.StdEncoding.EncodeToString(ct)},
		"swapped parts": {"pw-secret!", p[1] + ":" + p[0] + ":" + p[2]},
		"two parts":     {"pw-secret!", p[0] + ":" + p[2]},
		"four parts":    {"pw-secret!", good + ":"},
		"bad base64":    {"pw-secret!", p[0] + ":" + p[1] + ":%%%"},
		"short iv":      {"pw-secret!", "oKGio6Slpqeo:" + p[1] + ":" + p[2]},
		"empty":         {"pw-secret!", ""},
		"jwt":           {"pw-secret!", vecRunTok},
	} {
		_, err := token.OpenCompat(tc.secret, tc.tok)
		require.ErrorIs(t, err, token.ErrInvalid, name)
	}
	_, err = token.OpenCompat("", good)
	require.ErrorIs(t, err, token.ErrWeakSecret)
	_, err = token.SealCompat("", nil)
	require.ErrorIs(t, err, token.ErrWeakSecret)
}

func TestZeroKeysFail(t *testing.T) {
	t.Parallel()
	var k token.Keys
	_, err := k.SignRun(vecRun)
	require.Error(t, err)
	_, err = k.SignRegistration("svc", nil, vecIat)
	require.Error(t, err)
	_, err = k.VerifyRun(vecRunTok, vecIat)
	require.Error(t, err)
	_, err = k.VerifyRegistration(vecRegTok, vecIat)
	require.Error(t, err)
	_, err = k.SealBackend(vecRunID, nil)
	require.Error(t, err)
	_, err = k.OpenBackend(vecRunID, vecSto)
	require.Error(t, err)

	k = mustKeys(t, asciiSecret)
	_, err = k.SignRun(token.RunClaims{IssuedAt: vecIat, ExpiresAt: vecIat.Add(time.Hour)})
	require.Error(t, err, "empty run id")
	_, err = k.SignRun(token.RunClaims{RunID: "r"})
	require.Error(t, err, "no times")
	_, err = k.SignRegistration("", nil, vecIat)
	require.Error(t, err, "empty service id")
}

func TestKeysNeverPrinted(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, hexSecret)
	reg, run, sto := token.KeyBytes(k)
	out := fmt.Sprintf("%v %+v %#v %s %x %X %d %q", k, k, k, k, k, k, k, k) +
		fmt.Sprint(k) + fmt.Sprintln(&k) + k.String() + k.GoString() +
		fmt.Sprintf("%v %+v %#v", []token.Keys{k}, struct{ K token.Keys }{k}, map[string]token.Keys{"k": k})
	require.Contains(t, out, "token.Keys{…}")
	lower := strings.ToLower(out)
	for _, key := range [][]byte{reg, run, sto, mustHex(t, hexSecret)} {
		for _, form := range []string{
			hex.EncodeToString(key), hex.EncodeToString(key[:8]),
			base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key),
			strings.ToLower(base64.StdEncoding.EncodeToString(key)[:12]),
			fmt.Sprint(key[:4])[1:], // decimal bytes as %v prints them
		} {
			require.NotContains(t, lower, strings.ToLower(form))
		}
	}
}
