package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// wholeRunClaims are runClaims with iat and exp read as whole seconds: jwt.NumericDate's
// UnmarshalJSON runs a json.Unmarshal of its own for each date, half of the fast path's time.
type wholeRunClaims struct {
	Subject   string `json:"sub"`
	TaskID    string `json:"tid"`
	Attempt   int    `json:"att"`
	Lease     int64  `json:"lse"`
	IssuedAt  *int64 `json:"iat"`
	ExpiresAt *int64 `json:"exp"`
	Storage   string `json:"sto,omitempty"`
}

// exactSeconds bounds the seconds that NumericDate's float64 reading keeps exact (2^53).
const exactSeconds = 1 << 53

// date is a whole-second NumericDate as the general parser reads seconds s; ok false when it
// might read them otherwise (beyond 2^53, where a float64 rounds).
func date(s *int64) (*jwt.NumericDate, bool) {
	if s == nil {
		return nil, true
	}
	if *s > exactSeconds || *s < -exactSeconds {
		return nil, false
	}
	return jwt.NewNumericDate(time.Unix(*s, 0)), true
}

// decodeRunClaims decodes a payload segment as the general parser does (unpadded base64url,
// then json.Unmarshal), when its iat and exp are JSON integers; ok false leaves any other
// payload (fractional or quoted times among them, which the parser reads) to the parser.
func decodeRunClaims(payload string) (runClaims, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return runClaims{}, false
	}
	var w wholeRunClaims
	if err := unmarshalRunPayload(raw, &w); err != nil {
		return runClaims{}, false
	}
	iat, ok1 := date(w.IssuedAt)
	exp, ok2 := date(w.ExpiresAt)
	if !ok1 || !ok2 {
		return runClaims{}, false
	}
	return runClaims{Subject: w.Subject, TaskID: w.TaskID, Attempt: w.Attempt, Lease: w.Lease,
		window: window{IssuedAt: iat, ExpiresAt: exp}, Storage: w.Storage}, true
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
