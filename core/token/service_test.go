package token_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/token"
)

// The per-service known-answer vectors of docs/protocol.md ("Test vectors"), computed with
// Node.js (service.js in token_test.go).
func TestServiceKeyNodeVectors(t *testing.T) {
	t.Parallel()
	for secret, want := range map[string][4]string{
		asciiSecret: {
			"ac6141ca892a3fdcf33ff046db7efe90e2c3007b94990c1049c6468ba7486803",
			"252e7d022804a94c4747031c0a792bed6add2b9e9ce3da8a164d7fddd812f43c",
			"7cf1796333a18cd1558abb3f2640b010b5b2928b7d12f9a18aade68ee451257b",
			"d6e4daaca5cdb37a",
		},
		hexSecret: {
			"89e46502f27cfb8b3798b4f27db75414be74962c48d7d86525efe106371f2500",
			"d919140cd29ad15e76a8a60745aa6fd819d25994b71218f4069c2631fdd896a9",
			"a432f57e32bcc789f67cd63d1320db1b2350926c4d74f2d741597476d4c7e22c",
			"6d723b19f3b2d6d9",
		},
	} {
		svc, err := token.ServiceKey(secret, "pdf-processor")
		require.NoError(t, err)
		require.Equal(t, want[0], hex.EncodeToString(svc), secret)
		parsed, err := token.ParseServiceKey(strings.ToUpper(want[0]) + "\n")
		require.NoError(t, err)
		require.Equal(t, svc, parsed)
		k, err := token.ServiceKeys(svc)
		require.NoError(t, err)
		reg, run, sto := token.KeyBytes(k)
		require.Equal(t, want[1], hex.EncodeToString(reg), secret)
		require.Equal(t, want[2], hex.EncodeToString(sto), secret)
		require.Nil(t, run, "a worker has no run-token key")
		id, err := token.KeyID(secret)
		require.NoError(t, err)
		require.Equal(t, want[3], id)
	}
	// The sealed backend vector, under the service's K_enc'.
	plain, err := mustSvcKeys(t, asciiSecret, "pdf-processor").OpenBackend(vecRunID, vecSvcSto)
	require.NoError(t, err)
	require.Equal(t, vecBackend, string(plain))
	_, err = mustKeys(t, asciiSecret).OpenBackend(vecRunID, vecSvcSto)
	require.ErrorIs(t, err, token.ErrInvalid, "the master K_enc does not open it")

	// Another service's key differs.
	other, err := token.ServiceKey(asciiSecret, "pdf-processor2")
	require.NoError(t, err)
	require.NotEqual(t, "ac6141ca892a3fdcf33ff046db7efe90e2c3007b94990c1049c6468ba7486803", hex.EncodeToString(other))

	for _, bad := range []string{"", "abc", strings.Repeat("g", 64), strings.Repeat("a", 63), strings.Repeat("a", 66)} {
		_, err := token.ParseServiceKey(bad)
		require.Error(t, err, bad)
	}
	_, err = token.ServiceKey("short", "svc")
	require.ErrorIs(t, err, token.ErrWeakSecret)
	_, err = token.ServiceKey(asciiSecret, "")
	require.Error(t, err)
	_, err = token.ServiceKeys([]byte("short"))
	require.Error(t, err)
}

func svcKeys(t *testing.T, secret, serviceID string) token.Keys {
	return mustSvcKeys(t, secret, serviceID)
}

// The keyring verifies a registration under the service key its sub names, from the current
// or the previous secret, and nothing else.
func TestKeyringRegistration(t *testing.T) {
	t.Parallel()
	const third = "a third secret that is neither current nor previous"
	ring, err := token.NewKeyring(hexSecret, asciiSecret)
	require.NoError(t, err)
	curID, err := token.KeyID(hexSecret)
	require.NoError(t, err)
	prevID, err := token.KeyID(asciiSecret)
	require.NoError(t, err)
	require.Equal(t, curID, ring.CurrentKeyID())
	now := time.Now()
	body := []byte(`{"serviceId":"a"}`)

	for secret, wantID := range map[string]string{hexSecret: curID, asciiSecret: prevID} {
		tok, err := svcKeys(t, secret, "a").SignRegistration("a", body, now)
		require.NoError(t, err)
		c, err := ring.VerifyRegistration(tok, now)
		require.NoError(t, err)
		require.Equal(t, "a", c.ServiceID)
		require.Equal(t, wantID, c.KeyID)
		require.NoError(t, c.CheckBody(body))
		require.ErrorIs(t, c.CheckBody([]byte(`{"serviceId":"a","baseUrl":"http://evil"}`)), token.ErrBodyMismatch)
	}

	aKeys := svcKeys(t, hexSecret, "a")
	regKeyA, _, _ := token.KeyBytes(aKeys)
	asB := func(key []byte) string {
		return signWith(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "b", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "bsh": token.BodyHash(body)})
	}
	master := mustKeys(t, hexSecret)
	masterReg, _, _ := token.KeyBytes(master)
	thirdTok, err := svcKeys(t, third, "a").SignRegistration("a", body, now)
	require.NoError(t, err)
	masterTok, err := master.SignRegistration("a", body, now)
	require.NoError(t, err)
	for name, tok := range map[string]string{
		"A's key claiming B":           asB(regKeyA),
		"master K_reg with bsh":        masterTok,
		"master K_reg, v1 (no bsh)":    signWith(t, jwt.SigningMethodHS256, masterReg, jwt.MapClaims{"sub": "a", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}),
		"neither current nor previous": thirdTok,
		"garbage":                      "x.y.z",
		"empty":                        "",
		"no sub":                       signWith(t, jwt.SigningMethodHS256, regKeyA, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "bsh": token.BodyHash(body)}),
	} {
		_, err := ring.VerifyRegistration(tok, now)
		require.ErrorIs(t, err, token.ErrInvalid, name)
	}
	expired, err := aKeys.SignRegistration("a", body, now.Add(-time.Hour))
	require.NoError(t, err)
	_, err = ring.VerifyRegistration(expired, now)
	require.ErrorIs(t, err, token.ErrExpired)

	// Without a previous secret, the old one's service keys are refused.
	single, err := token.NewKeyring(hexSecret, "")
	require.NoError(t, err)
	old, err := svcKeys(t, asciiSecret, "a").SignRegistration("a", body, now)
	require.NoError(t, err)
	_, err = single.VerifyRegistration(old, now)
	require.ErrorIs(t, err, token.ErrInvalid)

	_, err = token.NewKeyring(hexSecret, hexSecret)
	require.Error(t, err, "previous = current")
	_, err = token.NewKeyring(hexSecret, "short")
	require.ErrorIs(t, err, token.ErrWeakSecret)
	_, err = token.NewKeyringAnyLength("short", "")
	require.NoError(t, err)
}

// Run tokens: signed under the current secret, verified under either; sealed for one service,
// opened only with that service's key; read by workers without the run-token key.
func TestKeyringRunTokens(t *testing.T) {
	t.Parallel()
	now := time.Now()
	oldRing, err := token.NewKeyring(asciiSecret, "")
	require.NoError(t, err)
	ring, err := token.NewKeyring(hexSecret, asciiSecret)
	require.NoError(t, err)
	prevID, err := token.KeyID(asciiSecret)
	require.NoError(t, err)

	sto, err := ring.SealBackend(prevID, "a", "run-1", []byte(vecBackend))
	require.NoError(t, err)
	c := token.RunClaims{RunID: "run-1", TaskID: "t", Attempt: 1, Lease: 2,
		IssuedAt: now.Truncate(time.Second).UTC(), ExpiresAt: now.Add(time.Hour).Truncate(time.Second).UTC(), Storage: sto}
	tok, err := ring.SignRun(c)
	require.NoError(t, err)
	before, err := oldRing.SignRun(c)
	require.NoError(t, err)
	for _, tk := range []string{tok, before} {
		got, err := ring.VerifyRun(tk, now)
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
	_, err = oldRing.VerifyRun(tok, now)
	require.ErrorIs(t, err, token.ErrInvalid, "new tokens are signed with the current secret")
	third, err := token.NewKeyring("a third secret that is neither current nor previous", "")
	require.NoError(t, err)
	thirdTok, err := third.SignRun(c)
	require.NoError(t, err)
	_, err = ring.VerifyRun(thirdTok, now)
	require.ErrorIs(t, err, token.ErrInvalid)
	expired := c
	expired.IssuedAt, expired.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	expTok, err := oldRing.SignRun(expired)
	require.NoError(t, err)
	_, err = ring.VerifyRun(expTok, now)
	require.ErrorIs(t, err, token.ErrExpired)

	// A worker reads the claims unverified and opens sto with its own service key: service A
	// under the secret it registered with opens it; A under the other secret, and B, do not.
	got, err := token.ReadRun(tok, now)
	require.NoError(t, err)
	require.Equal(t, c, got)
	plain, err := svcKeys(t, asciiSecret, "a").OpenBackend("run-1", got.Storage)
	require.NoError(t, err)
	require.Equal(t, vecBackend, string(plain))
	_, err = svcKeys(t, hexSecret, "a").OpenBackend("run-1", got.Storage)
	require.ErrorIs(t, err, token.ErrInvalid)
	_, err = svcKeys(t, asciiSecret, "b").OpenBackend("run-1", got.Storage)
	require.ErrorIs(t, err, token.ErrInvalid)
	// An unknown key id (a secret no longer configured) seals under the current secret.
	cur, err := ring.SealBackend("0000000000000000", "a", "run-1", []byte(vecBackend))
	require.NoError(t, err)
	_, err = svcKeys(t, hexSecret, "a").OpenBackend("run-1", cur)
	require.NoError(t, err)
	// Sealers are kept per secret and service: B's, made after A's, opens only with B's key,
	// and A's again (from the cache) still only with A's.
	forB, err := ring.SealBackend(ring.CurrentKeyID(), "b", "run-1", []byte(vecBackend))
	require.NoError(t, err)
	_, err = svcKeys(t, hexSecret, "b").OpenBackend("run-1", forB)
	require.NoError(t, err)
	_, err = svcKeys(t, hexSecret, "a").OpenBackend("run-1", forB)
	require.ErrorIs(t, err, token.ErrInvalid)
	again, err := ring.SealBackend(ring.CurrentKeyID(), "a", "run-1", []byte(vecBackend))
	require.NoError(t, err)
	_, err = svcKeys(t, hexSecret, "a").OpenBackend("run-1", again)
	require.NoError(t, err)
	_, err = svcKeys(t, hexSecret, "b").OpenBackend("run-1", again)
	require.ErrorIs(t, err, token.ErrInvalid)

	// Workers cannot sign or verify run tokens.
	w := svcKeys(t, hexSecret, "a")
	_, err = w.SignRun(c)
	require.Error(t, err)
	_, err = w.VerifyRun(tok, now)
	require.Error(t, err)

	_, err = token.ReadRun(expTok, now)
	require.ErrorIs(t, err, token.ErrExpired)
	for name, bad := range map[string]string{
		"garbage":  "x.y.z",
		"empty":    "",
		"alg none": signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "r", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}),
		"no sub":   signWith(t, jwt.SigningMethodHS256, []byte("k"), jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}),
		"no exp":   signWith(t, jwt.SigningMethodHS256, []byte("k"), jwt.MapClaims{"sub": "r", "iat": now.Unix()}),
	} {
		_, err := token.ReadRun(bad, now)
		require.ErrorIs(t, err, token.ErrInvalid, name)
	}

	out := fmt.Sprintf("%v %+v %#v %x %s", ring, ring, ring, ring, ring)
	require.NotContains(t, out, hex.EncodeToString(mustHex(t, hexSecret))[:16])
	require.Contains(t, out, "token.Keyring{…}")
	var nilRing *token.Keyring
	_, err = nilRing.SignRun(c)
	require.Error(t, err)
}
