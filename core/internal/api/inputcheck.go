package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Input rules (docs/api.md, "Input rules"): every string that can reach PostgreSQL is valid
// UTF-8 without NUL (text and jsonb refuse both), and every number fits a float64 (jsonb's
// numeric refuses 1e999999; workers parse numbers as doubles). The request body is checked in
// one pass over its raw bytes after it decoded, the path and the query before routing.

// inputProblem is a value that breaks an input rule: the code, the field (a JSON path such as
// "metadata.s" or "tasks[1].input", or "path" / "query parameter x") and the reason.
type inputProblem struct {
	code, field, reason string
}

func (p *inputProblem) message() string {
	return fmt.Sprintf("%s: %s", p.field, p.reason)
}

// write answers the request with the problem as a 400.
func (p *inputProblem) write(w http.ResponseWriter) {
	writeErr(w, http.StatusBadRequest, p.code, p.message(), map[string]string{"field": p.field})
}

// checkText reports why s is not acceptable text, or "".
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character"
	}
	return ""
}

// checkURL checks the request's path and query parameters (names and values).
func checkURL(u *url.URL) *inputProblem {
	if why := checkText(u.Path); why != "" {
		return &inputProblem{"INVALID_TEXT", "path", why}
	}
	if u.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return &inputProblem{"INVALID_TEXT", "query", "not a valid query string"}
	}
	for k, vs := range q {
		if why := checkText(k); why != "" {
			return &inputProblem{"INVALID_TEXT", "query parameter name", why}
		}
		for _, v := range vs {
			if why := checkText(v); why != "" {
				return &inputProblem{"INVALID_TEXT", "query parameter " + k, why}
			}
		}
	}
	return nil
}

// checkJSON checks a syntactically valid JSON text (as encoding/json accepted it) against the
// input rules: strings (keys too) valid UTF-8 without NUL, escaped or raw, and without an
// unpaired UTF-16 surrogate escape; numbers within float64's range. It returns the first
// problem, naming its place, or nil.
func checkJSON(data []byte) *inputProblem {
	if utf8.Valid(data) && !hasEscapeOrBigNumber(data) {
		return nil // the common case: one cheap pass
	}
	c := jsonChecker{data: data}
	c.value()
	return c.problem
}

// hasEscapeOrBigNumber reports whether data might hold a bad escape or an out-of-range number:
// a `\u` escape, or an exponent or a long digit run (conservatively, outside strings too).
func hasEscapeOrBigNumber(data []byte) bool {
	run := 0
	for i, b := range data {
		switch {
		case b >= '0' && b <= '9':
			run++
			if run > 300 {
				return true
			}
			continue
		case b == 'u' && i > 0 && data[i-1] == '\\':
			return true
		case (b == 'e' || b == 'E') && i > 0 && data[i-1] >= '0' && data[i-1] <= '9':
			return true
		}
		run = 0
	}
	return false
}

// jsonChecker walks valid JSON, keeping the path to the current value for error messages.
type jsonChecker struct {
	data    []byte
	pos     int
	path    []pathSeg
	problem *inputProblem
}

// pathSeg is one step of the path: an object key (data[start:end]) or an array index
// (start < 0, index in end). The path is spelt out only on failure.
type pathSeg struct{ start, end int }

func (c *jsonChecker) fail(code, reason string) {
	if c.problem != nil {
		return
	}
	var b strings.Builder
	for _, seg := range c.path {
		if seg.start < 0 {
			b.WriteString("[" + strconv.Itoa(seg.end) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		key := string(c.data[seg.start:seg.end])
		if len(key) > 64 {
			key = key[:64] + "…"
		}
		b.WriteString(strings.ToValidUTF8(key, "\uFFFD"))
	}
	field := b.String()
	if field == "" {
		field = "body"
	}
	c.problem = &inputProblem{code, field, reason}
}

func (c *jsonChecker) skipSpace() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *jsonChecker) value() {
	c.skipSpace()
	if c.problem != nil || c.pos >= len(c.data) {
		return
	}
	switch b := c.data[c.pos]; {
	case b == '{':
		c.pos++
		c.skipSpace()
		if c.pos < len(c.data) && c.data[c.pos] == '}' {
			c.pos++
			return
		}
		for c.problem == nil && c.pos < len(c.data) {
			c.skipSpace()
			start := c.pos + 1
			end := c.str()
			c.path = append(c.path, pathSeg{start, end})
			c.skipSpace()
			c.pos++ // ':'
			c.value()
			c.path = c.path[:len(c.path)-1]
			c.skipSpace()
			if c.pos >= len(c.data) || c.data[c.pos] != ',' {
				c.pos++ // '}'
				return
			}
			c.pos++
		}
	case b == '[':
		c.pos++
		c.skipSpace()
		if c.pos < len(c.data) && c.data[c.pos] == ']' {
			c.pos++
			return
		}
		for i := 0; c.problem == nil && c.pos < len(c.data); i++ {
			c.path = append(c.path, pathSeg{-1, i})
			c.value()
			c.path = c.path[:len(c.path)-1]
			c.skipSpace()
			if c.pos >= len(c.data) || c.data[c.pos] != ',' {
				c.pos++ // ']'
				return
			}
			c.pos++
		}
	case b == '"':
		c.str()
	case b == '-' || (b >= '0' && b <= '9'):
		c.number()
	default: // true, false, null
		for c.pos < len(c.data) && c.data[c.pos] >= 'a' && c.data[c.pos] <= 'z' {
			c.pos++
		}
	}
}

// str checks the string at pos and returns the end of its raw content (the closing quote).
func (c *jsonChecker) str() int {
	c.pos++ // opening quote
	start := c.pos
	for c.pos < len(c.data) {
		b := c.data[c.pos]
		switch {
		case b == '"':
			end := c.pos
			c.pos++
			if !utf8.Valid(c.data[start:end]) {
				c.fail("INVALID_TEXT", "a string is not valid UTF-8")
			}
			return end
		case b == '\\':
			if c.pos+1 < len(c.data) && c.data[c.pos+1] == 'u' {
				r := hex4(c.data, c.pos+2)
				switch {
				case r == 0:
					c.fail("INVALID_TEXT", `a string contains a NUL character (\u0000)`)
				case r >= 0xD800 && r <= 0xDBFF:
					// A high surrogate must be followed by a low one.
					if c.pos+7 < len(c.data) && c.data[c.pos+6] == '\\' && c.data[c.pos+7] == 'u' {
						if lo := hex4(c.data, c.pos+8); lo >= 0xDC00 && lo <= 0xDFFF {
							c.pos += 12
							continue
						}
					}
					c.fail("INVALID_TEXT", "a string contains an unpaired UTF-16 surrogate escape")
				case r >= 0xDC00 && r <= 0xDFFF:
					c.fail("INVALID_TEXT", "a string contains an unpaired UTF-16 surrogate escape")
				}
				c.pos += 6
				continue
			}
			c.pos += 2
		default:
			c.pos++
		}
	}
	return c.pos
}

// hex4 reads the 4 hex digits at data[i:], or -1.
func hex4(data []byte, i int) int {
	if i+4 > len(data) {
		return -1
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	if err != nil {
		return -1
	}
	return int(n)
}

func (c *jsonChecker) number() {
	start := c.pos
	for c.pos < len(c.data) {
		b := c.data[c.pos]
		if (b >= '0' && b <= '9') || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E' {
			c.pos++
			continue
		}
		break
	}
	if !numberInRange(string(c.data[start:c.pos])) {
		c.fail("INVALID_NUMBER", "a number is out of range (it must fit a 64-bit floating-point number)")
	}
}

// numberInRange reports whether the JSON number s is a finite float64 that is not a non-zero
// value rounded to zero.
func numberInRange(s string) bool {
	if len(s) <= 15 && !strings.ContainsAny(s, "eE") {
		return true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false
	}
	if f == 0 {
		mant, _, _ := strings.Cut(strings.ToLower(s), "e")
		return strings.Trim(mant, "-+.0") == ""
	}
	return true
}
