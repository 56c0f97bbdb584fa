package inputschema

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

// checker collects the violations of one validation, in zod's order.
type checker struct {
	errs []ValidationError
	path []string
	// raw is the input as sent, for the order of its top-level keys.
	raw json.RawMessage
}

func (c *checker) add(code, msg string) {
	c.errs = append(c.errs, ValidationError{Field: strings.Join(c.path, "."), Message: msg, Code: code})
}

func (c *checker) push(seg string) { c.path = append(c.path, seg) }
func (c *checker) pop()            { c.path = c.path[:len(c.path)-1] }

// invalidType is zod's invalid_type issue with its default message.
func (c *checker) invalidType(expected string, v any) {
	if isUndef(v) {
		c.add("invalid_type", "Required")
		return
	}
	c.add("invalid_type", "Expected "+expected+", received "+jsType(v))
}

// object validates v as z.object(shape) (strict or stripping unknown keys).
func (c *checker) object(f *form, v any, root bool) {
	obj, ok := v.(map[string]any)
	if !ok {
		c.invalidType("object", v)
		return
	}
	for _, n := range f.fields {
		val, present := obj[n.name]
		if !present {
			val = undef
		}
		hidden := n.showIf != nil && !EvaluateCondition(lookup(obj, n.showIf.field), n.showIf.op, n.showIf.value)
		c.push(n.name)
		c.field(n, val, hidden)
		c.pop()
	}
	if f.strict {
		known := map[string]bool{}
		for _, n := range f.fields {
			known[n.name] = true
		}
		var extra []string
		for _, k := range keyOrder(obj, c.raw, root) {
			if !known[k] {
				extra = append(extra, "'"+k+"'")
			}
		}
		if len(extra) > 0 {
			c.add("unrecognized_keys", "Unrecognized key(s) in object: "+strings.Join(extra, ", "))
		}
	}
}

func lookup(obj map[string]any, key string) any {
	if v, ok := obj[key]; ok {
		return v
	}
	return undef
}

// field validates one field: optional unless required (and shown), a default when absent.
func (c *checker) field(n *node, v any, hidden bool) {
	if !n.required || hidden {
		if isUndef(v) && n.hasDefault && !n.required {
			v = n.def
		}
		if isUndef(v) {
			return
		}
	}
	c.base(n, v)
}

func (c *checker) base(n *node, v any) {
	switch n.typ {
	case TypeString, TypeEmail, TypeURL, TypeTextarea:
		c.str(n, v)
	case TypeNumber, TypeInteger:
		c.number(n, v)
	case TypeBoolean:
		if _, ok := v.(bool); !ok {
			c.invalidType("boolean", v)
		}
	case TypeDate, TypeDatetime:
		if !validDate(v) {
			c.add("invalid_date", "Invalid date")
		}
	case TypeSelect:
		c.choice(n, v)
	case TypeMultiselect:
		arr, ok := v.([]any)
		if !ok {
			c.invalidType("array", v)
			return
		}
		for i, e := range arr {
			c.push(strconv.Itoa(i))
			c.choice(n, e)
			c.pop()
		}
	case TypeFile:
		if _, ok := v.(string); !ok {
			c.invalidType("string", v)
		}
	case TypeArray:
		arr, ok := v.([]any)
		if !ok {
			c.invalidType("array", v)
			return
		}
		if n.items == nil {
			return
		}
		for i, e := range arr {
			c.push(strconv.Itoa(i))
			c.field(n.items, e, false)
			c.pop()
		}
	case TypeObject:
		if n.props != nil {
			c.object(n.props, v, false)
		} else if _, ok := v.(map[string]any); !ok {
			c.invalidType("object", v)
		}
	case TypeJSON:
		// z.unknown(): anything, absent included.
	}
}

func (c *checker) str(n *node, v any) {
	s, ok := v.(string)
	if !ok {
		c.invalidType("string", v)
		return
	}
	if n.typ == TypeEmail && !isEmail(s) {
		c.add("invalid_string", "Invalid email address")
	}
	if n.typ == TypeURL && !isURL(s) {
		c.add("invalid_string", "Invalid URL")
	}
	if n.minLen != nil && float64(utf16Len(s)) < *n.minLen {
		c.add("too_small", "Minimum length is "+jsNumberString(*n.minLen))
	}
	if n.maxLen != nil && float64(utf16Len(s)) > *n.maxLen {
		c.add("too_big", "Maximum length is "+jsNumberString(*n.maxLen))
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		c.add("invalid_string", "Invalid format")
	}
}

func (c *checker) number(n *node, v any) {
	f, ok := asNumber(v)
	if !ok || math.IsNaN(f) {
		c.invalidType("number", v)
		return
	}
	if n.typ == TypeInteger && (math.IsInf(f, 0) || f != math.Trunc(f)) {
		c.add("invalid_type", "Must be an integer")
	}
	if n.min != nil && f < *n.min {
		c.add("too_small", "Minimum value is "+jsNumberString(*n.min))
	}
	if n.max != nil && f > *n.max {
		c.add("too_big", "Maximum value is "+jsNumberString(*n.max))
	}
}

// choice validates one value of a select: z.enum when every option is a string, z.literal
// for a single other value, else a union of literals; anything without options.
func (c *checker) choice(n *node, v any) {
	switch {
	case !n.hasChoices:
	case n.strs != nil:
		s, ok := v.(string)
		if !ok {
			c.invalidType(joinValues(n.strs), v)
			return
		}
		for _, o := range n.strs {
			if o == s {
				return
			}
		}
		c.add("invalid_enum_value", "Invalid enum value. Expected "+joinValues(n.strs)+", received '"+s+"'")
	default:
		for _, o := range n.values {
			if strictEqual(o, v) {
				return
			}
		}
		if len(n.values) == 1 {
			c.add("invalid_literal", "Invalid literal value, expected "+jsonString(n.values[0]))
			return
		}
		c.add("invalid_union", "Invalid input")
	}
}

// joinValues is zod's util.joinValues: strings quoted, joined with " | ".
func joinValues(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	return strings.Join(q, " | ")
}

func jsonString(v any) string {
	if isUndef(v) {
		return "undefined"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return jsString(v)
	}
	return string(b)
}

// keyOrder lists obj's keys in JavaScript's order: integer-like keys ascending, then the
// others as the input listed them (read from raw for the top level; sorted below it, where
// only the fields' own order matters).
func keyOrder(obj map[string]any, raw json.RawMessage, root bool) []string {
	var keys []string
	if root && len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		seen := map[string]bool{}
		if t, err := dec.Token(); err == nil && t == json.Delim('{') {
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					break
				}
				k, _ := t.(string)
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
				var skip json.RawMessage
				if dec.Decode(&skip) != nil {
					break
				}
			}
		}
	}
	if len(keys) != len(obj) {
		keys = keys[:0]
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	var ints, rest []string
	for _, k := range keys {
		if isArrayIndex(k) {
			ints = append(ints, k)
		} else {
			rest = append(rest, k)
		}
	}
	for i := 1; i < len(ints); i++ {
		for j := i; j > 0 && indexLess(ints[j], ints[j-1]); j-- {
			ints[j], ints[j-1] = ints[j-1], ints[j]
		}
	}
	return append(ints, rest...)
}

// EvaluateCondition is upstream's evaluateCondition: whether a watched value (nil for JSON
// null; absent values are never equal to anything present) satisfies operator and value,
// both decoded JSON. eq and ne are JavaScript's === and !== (arrays and objects are never
// equal); gt, lt, gte and lte need two numbers; in and notIn need value to be an array;
// anything else is false.
func EvaluateCondition(watched any, operator string, value any) bool {
	switch operator {
	case "eq":
		return strictEqual(watched, value)
	case "ne":
		return !strictEqual(watched, value)
	case "gt", "lt", "gte", "lte":
		a, ok1 := asNumber(watched)
		b, ok2 := asNumber(value)
		if !ok1 || !ok2 {
			return false
		}
		switch operator {
		case "gt":
			return a > b
		case "lt":
			return a < b
		case "gte":
			return a >= b
		default:
			return a <= b
		}
	case "in", "notIn":
		arr, ok := value.([]any)
		if !ok {
			return false
		}
		found := false
		for _, e := range arr {
			if strictEqual(e, watched) {
				found = true
				break
			}
		}
		return found == (operator == "in")
	}
	return false
}
