package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// The run token is read on every worker call (heartbeat, callback) and by the worker on every
// dispatch; the general JWT parser spends most of its time on what every token of ours has in
// common (the header, decoded into a map, and reflection). The fast paths below handle the
// tokens SignRun makes: exactly its header, three segments. They accept a token only when the
// general parser would accept it too, with the same claims; anything else (another header, a
// bad signature, an expired token, a missing claim) is left to the general parser, so that
// every refusal and its error stay what they were.

// hs256Header is the first segment of every token sign makes: base64url of
// {"alg":"HS256","typ":"JWT"}, the header golang-jwt writes for HS256.
const hs256Header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// splitOurs returns the payload and signature segments of a token with our header and three
// segments, or ok false.
func splitOurs(tok string) (payload, sig string, ok bool) {
	rest, ok := strings.CutPrefix(tok, hs256Header+".")
	if !ok {
		return "", "", false
	}
	payload, sig, ok = strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return "", "", false
	}
	return payload, sig, true
}

// decodeRunClaims decodes a payload segment as the general parser does (unpadded base64url,
// then json.Unmarshal).
func decodeRunClaims(payload string) (runClaims, bool) {
	var c runClaims
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return c, false
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, false
	}
	return c, true
}

// validAt reports whether the claims pass every check of the general parser at now: sub, iat
// and exp present, exp not passed and iat not in the future (each beyond Leeway).
func (c runClaims) validAt(now time.Time) bool {
	return c.Validate() == nil && now.Before(c.ExpiresAt.Add(Leeway)) && !now.Before(c.IssuedAt.Add(-Leeway))
}

// fastVerifyRun verifies tok under key (a run-token key) when it is one of ours and valid at
// now; ok false leaves the token to the general parser.
func fastVerifyRun(key []byte, tok string, now time.Time) (runClaims, bool) {
	payload, sig, ok := splitOurs(tok)
	if !ok || len(key) != keySize {
		return runClaims{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return runClaims{}, false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(tok[:len(hs256Header)+1+len(payload)]))
	if !hmac.Equal(mac.Sum(nil), got) {
		return runClaims{}, false
	}
	c, ok := decodeRunClaims(payload)
	if !ok || !c.validAt(now) {
		return runClaims{}, false
	}
	return c, true
}

// fastReadRun reads the claims of tok, unverified, when it is one of ours, well formed and
// not expired at now; ok false leaves the token to the general parser.
func fastReadRun(tok string, now time.Time) (runClaims, bool) {
	payload, sig, ok := splitOurs(tok)
	if !ok {
		return runClaims{}, false
	}
	// The general parser decodes the signature segment even when it does not check it.
	if _, err := base64.RawURLEncoding.DecodeString(sig); err != nil {
		return runClaims{}, false
	}
	c, ok := decodeRunClaims(payload)
	if !ok || c.Validate() != nil || !now.Before(c.ExpiresAt.Add(Leeway)) {
		return runClaims{}, false
	}
	return c, true
}
