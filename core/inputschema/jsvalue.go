package inputschema

import (
	"encoding/json"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// The validator works on JSON values decoded with json.Decoder.UseNumber: nil, bool,
// json.Number, string, []any and map[string]any. A value that is absent (JavaScript's
// undefined) is the sentinel undef.

type undefinedT struct{}

var undef any = undefinedT{}

func isUndef(v any) bool { _, ok := v.(undefinedT); return ok }

// jsType is zod's name for the parsed type of v (ZodParsedType).
func jsType(v any) string {
	switch x := v.(type) {
	case undefinedT:
		return "undefined"
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if math.IsNaN(num(x)) {
			return "nan"
		}
		return "number"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

// num is the float64 value of a JSON number (±Inf when it overflows, as JSON.parse makes it).
func num(n json.Number) float64 {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return f // ±Inf or 0
		}
		return math.NaN()
	}
	return f
}

// asNumber reports v as a float64 when it is a JSON number.
func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		return num(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// strictEqual is JavaScript's === between two decoded JSON values: primitives compare by
// value; arrays and objects are distinct objects and never equal.
func strictEqual(a, b any) bool {
	if fa, ok := asNumber(a); ok {
		fb, ok := asNumber(b)
		return ok && fa == fb
	}
	switch x := a.(type) {
	case undefinedT:
		return isUndef(b)
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	}
	return false
}

// jsNumberString formats f as JavaScript's String(number) does.
func jsNumberString(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	abs := math.Abs(f)
	if abs >= 1e-7 && abs < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // 1.5e-07, 1e+21
	mant, exp, _ := strings.Cut(s, "e")
	sign := exp[0]
	exp = strings.TrimLeft(exp[1:], "0")
	return mant + "e" + string(sign) + exp
}

// jsString is String(v) for a decoded JSON value.
func jsString(v any) string {
	switch x := v.(type) {
	case undefinedT:
		return "undefined"
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return jsNumberString(num(x))
	case float64:
		return jsNumberString(x)
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			if e != nil && !isUndef(e) {
				parts[i] = jsString(e)
			}
		}
		return strings.Join(parts, ",")
	}
	return "[object Object]"
}

// utf16Len is JavaScript's string length: UTF-16 code units.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// zod's email pattern, /^(?!\.)(?!.*\.\.)([A-Z0-9_'+\-\.]*)[A-Z0-9_+-]@([A-Z0-9][A-Z0-9\-]*\.)+[A-Z]{2,}$/i,
// without its look-aheads, which isEmail checks by hand.
var emailPattern = regexp.MustCompile(`^(?i)[A-Z0-9_'+\-.]*[A-Z0-9_+-]@([A-Z0-9][A-Z0-9\-]*\.)+[A-Z]{2,}$`)

func isEmail(s string) bool {
	return !strings.HasPrefix(s, ".") && !strings.Contains(s, "..") && emailPattern.MatchString(s)
}

var (
	urlScheme      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+\-.]*:`)
	specialSchemes = map[string]bool{"http": true, "https": true, "ws": true, "wss": true, "ftp": true}
)

// isURL approximates `new URL(s)` (the WHATWG URL parser) not throwing: an absolute URL with a
// scheme; for http, https, ws, wss and ftp also a valid host and port.
func isURL(s string) bool {
	s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	m := urlScheme.FindString(s)
	if m == "" {
		return false
	}
	scheme := strings.ToLower(m[:len(m)-1])
	if !specialSchemes[scheme] {
		return true
	}
	rest := strings.TrimLeft(s[len(m):], `/\`)
	if i := strings.IndexAny(rest, `/\?#`); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 || net.ParseIP(rest[1:end]) == nil || !strings.Contains(rest[1:end], ":") {
			return false
		}
		host = rest[:end+1]
		if after := rest[end+1:]; after != "" {
			if !strings.HasPrefix(after, ":") {
				return false
			}
			port = after[1:]
		}
	} else if i := strings.LastIndex(rest, ":"); i >= 0 {
		host, port = rest[:i], rest[i+1:]
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 || strings.ContainsAny(port, "+-") {
			return false
		}
	}
	if host == "" {
		return false
	}
	if strings.HasPrefix(host, "[") {
		return true
	}
	decoded, err := url.PathUnescape(host)
	if err != nil {
		return false
	}
	if strings.ContainsAny(decoded, " \t\n\r#/:<>?@[\\]^|%") || strings.ContainsRune(decoded, 0) {
		return false
	}
	return validIPv4IfNumeric(strings.ToLower(decoded))
}

// validIPv4IfNumeric: a host whose last label is a number must be an IPv4 address, in the
// parser's forms (1 to 4 parts, the last one filling the remaining bytes).
func validIPv4IfNumeric(host string) bool {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	parse := func(p string) (uint64, bool) {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			p, base = p[2:], 16
			if p == "" {
				return 0, true
			}
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		n, err := strconv.ParseUint(p, base, 64)
		return n, err == nil
	}
	if _, numeric := parse(labels[len(labels)-1]); !numeric {
		return true
	}
	if len(labels) > 4 {
		return false
	}
	for i, l := range labels {
		n, ok := parse(l)
		if !ok {
			return false
		}
		if i < len(labels)-1 && n > 255 {
			return false
		}
		if i == len(labels)-1 && n >= 1<<(8*(5-len(labels))) {
			return false
		}
	}
	return true
}

var isoDate = regexp.MustCompile(`^([+-]\d{6}|\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$`)

// dateLayouts are the non-ISO forms a date string may take besides ISO 8601.
var dateLayouts = []string{
	time.RFC1123, time.RFC1123Z, time.RFC822, time.RFC822Z, time.RFC850, time.ANSIC,
	time.UnixDate, time.RubyDate, "Mon Jan 02 2006", "Mon Jan 02 2006 15:04:05 GMT-0700",
	"Mon Jan 02 2006 15:04:05", "January 2, 2006", "Jan 2, 2006", "January 2 2006", "2 January 2006",
	"2006/01/02", "2006/1/2", "2006/01/02 15:04:05", "1/2/2006", "01/02/2006", "2006-1-2",
}

// validDateString approximates Date.parse(s) returning a number: ISO 8601 dates and
// date-times (the form JSON and most clients write), and the common RFC 1123/2822, ANSI C
// and US forms. V8 accepts more (it guesses at almost any text with a year in it).
func validDateString(s string) bool {
	s = strings.TrimSpace(s)
	if m := isoDate.FindStringSubmatch(s); m != nil {
		in := func(v string, lo, hi int) bool {
			if v == "" {
				return true
			}
			n, _ := strconv.Atoi(v)
			return n >= lo && n <= hi
		}
		if m[1] == "-000000" || !in(m[2], 1, 12) || !in(m[3], 1, 31) || !in(m[4], 0, 24) || !in(m[5], 0, 59) || !in(m[6], 0, 59) {
			return false
		}
		return m[4] != "24" || (m[5] == "00" && (m[6] == "" || m[6] == "00"))
	}
	for _, layout := range dateLayouts {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// validDate reports whether `new Date(v)` is a valid date (what z.coerce.date() checks).
func validDate(v any) bool {
	switch x := v.(type) {
	case undefinedT:
		return false
	case nil, bool:
		return true // new Date(null) and new Date(true) are 0 and 1 ms after the epoch
	case json.Number, float64:
		f, _ := asNumber(x)
		return !math.IsNaN(f) && math.Abs(f) <= 8.64e15
	case string:
		return validDateString(x)
	case []any:
		return validDateString(jsString(x)) // String([…]) joins the elements
	}
	return false // "[object Object]"
}

// Undefined stands for an absent value (JavaScript's undefined) where a decoded JSON value is
// expected, as in EvaluateCondition.
var Undefined any = undef
