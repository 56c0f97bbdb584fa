package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signing and reading the run token without reflection: it is signed once per dispatch, and
// read once by the worker and verified once by the orchestrator per callback, and json's
// reflection over the claims was most of each (README, Performance). appendRunPayload writes
// the bytes json.Marshal writes for runClaims, and parseRunPayload reads exactly that layout;
// whatever they cannot write or read byte for byte (a string that JSON escapes, a time the
// NumericDate encoding would write otherwise, any other layout) goes the general way, so
// that tokens and refusals stay what they were.

// plainJSON reports whether json.Marshal writes s as it is between quotes: printable ASCII
// without the characters it escapes (quote, backslash, and <, > and & for HTML).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendRunPayload appends the JSON of c as json.Marshal writes it, or reports false when it
// might write it otherwise.
func appendRunPayload(dst []byte, c *runClaims) ([]byte, bool) {
	if c.IssuedAt == nil || c.ExpiresAt == nil || jwt.TimePrecision != time.Second ||
		!plainJSON(c.Subject) || !plainJSON(c.TaskID) || !plainJSON(c.Storage) {
		return dst, false
	}
	iat, exp := c.IssuedAt.Truncate(time.Second), c.ExpiresAt.Truncate(time.Second)
	dst = append(dst, `{"sub":"`...)
	dst = append(dst, c.Subject...)
	dst = append(dst, `","tid":"`...)
	dst = append(dst, c.TaskID...)
	dst = append(dst, `","att":`...)
	dst = strconv.AppendInt(dst, int64(c.Attempt), 10)
	dst = append(dst, `,"lse":`...)
	dst = strconv.AppendInt(dst, c.Lease, 10)
	dst = append(dst, `,"iat":`...)
	dst = strconv.AppendInt(dst, iat.Unix(), 10)
	dst = append(dst, `,"exp":`...)
	dst = strconv.AppendInt(dst, exp.Unix(), 10)
	if c.Storage != "" {
		dst = append(dst, `,"sto":"`...)
		dst = append(dst, c.Storage...)
		dst = append(dst, '"')
	}
	return append(dst, '}'), true
}

// fastSignRun is sign(key, "run-token", c) for claims appendRunPayload writes; ok false leaves
// c to sign. key must be a run-token key of keySize bytes.
func fastSignRun(key []byte, c *runClaims) (string, bool) {
	if len(key) != keySize || c.Subject == "" {
		return "", false
	}
	var buf [256]byte
	payload, ok := appendRunPayload(buf[:0], c)
	if !ok {
		return "", false
	}
	enc := base64.RawURLEncoding
	n := len(hs256Header) + 1 + enc.EncodedLen(len(payload))
	out := make([]byte, n, n+1+enc.EncodedLen(sha256.Size))
	copy(out, hs256Header)
	out[len(hs256Header)] = '.'
	enc.Encode(out[len(hs256Header)+1:], payload)
	mac := hmac.New(sha256.New, key)
	mac.Write(out)
	var sum [sha256.Size]byte
	out = append(out, '.')
	out = enc.AppendEncode(out, mac.Sum(sum[:0]))
	return string(out), true
}

// parseRunPayload reads a payload in exactly the layout appendRunPayload writes (any claim
// values in it); ok false for any other bytes, which decodeRunClaims leaves to json.Unmarshal.
func parseRunPayload(raw []byte) (wholeRunClaims, bool) {
	var w wholeRunClaims
	p := payloadReader{raw}
	var iat, exp int64
	var att int64
	ok := p.lit(`{"sub":"`) && p.str(&w.Subject) && p.lit(`,"tid":"`) && p.str(&w.TaskID) &&
		p.lit(`,"att":`) && p.int(&att, strconv.IntSize) && p.lit(`,"lse":`) && p.int(&w.Lease, 64) &&
		p.lit(`,"iat":`) && p.int(&iat, 64) && p.lit(`,"exp":`) && p.int(&exp, 64)
	if !ok {
		return wholeRunClaims{}, false
	}
	if p.lit(`,"sto":"`) && (!p.str(&w.Storage) || w.Storage == "") {
		return wholeRunClaims{}, false
	}
	if !p.lit("}") || len(p.b) != 0 {
		return wholeRunClaims{}, false
	}
	w.Attempt, w.IssuedAt, w.ExpiresAt = int(att), &iat, &exp
	return w, true
}

// payloadReader consumes a payload from the front.
type payloadReader struct{ b []byte }

// lit consumes s, if the payload starts with it.
func (p *payloadReader) lit(s string) bool {
	if len(p.b) < len(s) || string(p.b[:len(s)]) != s {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// str consumes a string's plain characters and its closing quote into *s.
func (p *payloadReader) str(s *string) bool {
	for i := 0; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			*s = string(p.b[:i])
			p.b = p.b[i+1:]
			return true
		case c < 0x20 || c >= 0x7f, c == '\\':
			return false
		}
	}
	return false
}

// int consumes a JSON integer (no fraction, no exponent, no leading zero) that fits bits.
func (p *payloadReader) int(n *int64, bits int) bool {
	i := 0
	if i < len(p.b) && p.b[i] == '-' {
		i++
	}
	start := i
	for i < len(p.b) && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == start || (p.b[start] == '0' && i > start+1) {
		return false
	}
	if i < len(p.b) && (p.b[i] == '.' || p.b[i] == 'e' || p.b[i] == 'E') {
		return false
	}
	v, err := strconv.ParseInt(string(p.b[:i]), 10, bits)
	if err != nil {
		return false
	}
	*n = v
	p.b = p.b[i:]
	return true
}

// unmarshalRunPayload decodes a payload's JSON into w: parseRunPayload's reading when the
// payload is in its layout, json.Unmarshal's otherwise.
func unmarshalRunPayload(raw []byte, w *wholeRunClaims) error {
	if fast, ok := parseRunPayload(raw); ok {
		*w = fast
		return nil
	}
	return json.Unmarshal(raw, w)
}
