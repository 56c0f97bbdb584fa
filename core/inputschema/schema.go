// Package inputschema validates task inputs against the schemas a task registers: upstream
// PipeWeave's field-list format (`inputSchema`: {fields: [...], strict?}, the format of
// @pipeweave/shared's input-schema.ts, which the Node.js SDK registers), with the semantics of
// upstream's zod-based input-validator.ts, and a standard JSON Schema (`inputJsonSchema`,
// compiled with santhosh-tekuri/jsonschema/v6).
//
// The orchestrator compiles both at registration and refuses a schema that does not compile;
// the Go worker SDK can compile them the same way before it registers.
//
// Differences from upstream, on purpose or by approximation (docs/api.md lists them too):
//   - showIf: a required field whose showIf condition is false (the form hides it) is not
//     required; upstream's validator ignores showIf and requires it anyway.
//   - pattern: Go's RE2 syntax, not JavaScript's; a pattern Go cannot compile (look-arounds,
//     back-references) is refused at compile time, where upstream skips it with a warning.
//   - date and datetime (zod's z.coerce.date(), that is `new Date(x)`): numbers, null and
//     booleans are dates as in JavaScript; strings must be ISO 8601 or one of the common RFC
//     1123/2822, ANSI C or US forms (V8 guesses at far more).
//   - url approximates `new URL(x)`: a scheme, and for http(s), ws(s) and ftp a valid host.
//   - Defaults are applied only to validate (zod validates a default like a given value);
//     the input is stored as it was sent, as upstream does.
package inputschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// MaxSchemaBytes bounds each schema a task registers.
const MaxSchemaBytes = 256 << 10

// maxDepth bounds the nesting of items and properties.
const maxDepth = 32

// Field types of the field-list format.
const (
	TypeString      = "string"
	TypeNumber      = "number"
	TypeInteger     = "integer"
	TypeBoolean     = "boolean"
	TypeEmail       = "email"
	TypeURL         = "url"
	TypeDate        = "date"
	TypeDatetime    = "datetime"
	TypeSelect      = "select"
	TypeMultiselect = "multiselect"
	TypeTextarea    = "textarea"
	TypeJSON        = "json"
	TypeFile        = "file"
	TypeArray       = "array"
	TypeObject      = "object"
)

var fieldTypes = map[string]bool{
	TypeString: true, TypeNumber: true, TypeInteger: true, TypeBoolean: true, TypeEmail: true,
	TypeURL: true, TypeDate: true, TypeDatetime: true, TypeSelect: true, TypeMultiselect: true,
	TypeTextarea: true, TypeJSON: true, TypeFile: true, TypeArray: true, TypeObject: true,
}

var operators = map[string]bool{"eq": true, "ne": true, "gt": true, "lt": true, "gte": true, "lte": true, "in": true, "notIn": true}

// Schema is a task's input schema in upstream's field-list format.
type Schema struct {
	// Fields are the input object's fields, in order.
	Fields []Field `json:"fields"`
	// Strict refuses keys of the input object that no field names (unrecognized_keys).
	Strict bool `json:"strict,omitempty"`
}

// Field is one field of the input (or of an object field, or an array's items).
type Field struct {
	Name        string          `json:"name"`
	Type        string          `json:"type"`
	Label       string          `json:"label"`
	Description string          `json:"description,omitempty"`
	Required    bool            `json:"required,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"`
	MinLength   *float64        `json:"minLength,omitempty"`
	MaxLength   *float64        `json:"maxLength,omitempty"`
	Min         *float64        `json:"min,omitempty"`
	Max         *float64        `json:"max,omitempty"`
	Pattern     string          `json:"pattern,omitempty"`
	Options     []Option        `json:"options,omitempty"`
	Accept      string          `json:"accept,omitempty"`
	MaxSize     *float64        `json:"maxSize,omitempty"`
	Items       *Field          `json:"items,omitempty"`
	Properties  []Field         `json:"properties,omitempty"`
	ShowIf      *Condition      `json:"showIf,omitempty"`
	Placeholder string          `json:"placeholder,omitempty"`
	HelpText    string          `json:"helpText,omitempty"`
}

// Option is one choice of a select or multiselect field.
type Option struct {
	Label string          `json:"label"`
	Value json.RawMessage `json:"value"`
}

// Condition shows a field only when the sibling field named Field compares to Value.
type Condition struct {
	Field    string          `json:"field"`
	Operator string          `json:"operator"`
	Value    json.RawMessage `json:"value"`
}

// ValidationError is one violation: the dotted path of the value ("" for the input itself),
// a sentence, and a zod issue code (invalid_type, too_small, …) or, for a JSON Schema
// violation, "json_schema_" and the failing keyword.
type ValidationError = protocol.ValidationError

// node is a compiled field.
type node struct {
	name, typ  string
	required   bool
	hasDefault bool
	def        any
	minLen     *float64
	maxLen     *float64
	min, max   *float64
	pattern    *regexp.Regexp
	// choices of a select or multiselect: strs when every value is a string (z.enum), else
	// values (z.literal or a union of literals); both nil without options (z.unknown).
	strs       []string
	values     []any
	hasChoices bool
	items      *node
	props      *form // object with properties; nil: any object (z.record)
	showIf     *cond
}

type cond struct {
	field, op string
	value     any
}

// form is a compiled object of fields.
type form struct {
	fields []*node
	strict bool
}

// decodeValue decodes raw JSON with numbers kept as json.Number; empty raw is undefined.
func decodeValue(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return undef, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// compileForm parses and checks a schema in the field-list format.
func compileForm(raw json.RawMessage) (*form, error) {
	if len(raw) > MaxSchemaBytes {
		return nil, fmt.Errorf("inputSchema is larger than %d bytes", MaxSchemaBytes)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("inputSchema must be an object {fields: [...], strict?}: %w", err)
	}
	if f, ok := probe["fields"]; !ok || bytes.HasPrefix(bytes.TrimSpace(f), []byte("null")) {
		return nil, errors.New("inputSchema.fields is required: an array of fields")
	}
	var s Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	return compileFields(s.Fields, s.Strict, "fields", 0)
}

func compileFields(fields []Field, strict bool, where string, depth int) (*form, error) {
	f := &form{strict: strict}
	seen := map[string]bool{}
	for i := range fields {
		at := fmt.Sprintf("%s[%d]", where, i)
		n, err := compileField(&fields[i], at, depth)
		if err != nil {
			return nil, err
		}
		if seen[n.name] {
			return nil, fmt.Errorf("%s: field name %q is used twice", at, n.name)
		}
		seen[n.name] = true
		f.fields = append(f.fields, n)
	}
	f.fields = jsKeyOrder(f.fields)
	return f, nil
}

// jsKeyOrder orders fields as JavaScript orders an object's keys: integer-like names first,
// ascending, then the others in their order.
func jsKeyOrder(fields []*node) []*node {
	var ints, rest []*node
	for _, n := range fields {
		if isArrayIndex(n.name) {
			ints = append(ints, n)
		} else {
			rest = append(rest, n)
		}
	}
	if len(ints) == 0 {
		return fields
	}
	for i := 1; i < len(ints); i++ {
		for j := i; j > 0 && indexLess(ints[j].name, ints[j-1].name); j-- {
			ints[j], ints[j-1] = ints[j-1], ints[j]
		}
	}
	return append(ints, rest...)
}

func isArrayIndex(s string) bool {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return len(s) < 10 || s < "4294967295"
}

func indexLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func compileField(fd *Field, at string, depth int) (*node, error) {
	if fd.Name == "" && at != "items" && !strings.HasSuffix(at, ".items") {
		return nil, fmt.Errorf("%s: name is required", at)
	}
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", at, maxDepth)
	}
	if fd.Name != "" {
		at = fmt.Sprintf("%s (%s)", at, fd.Name)
	}
	if !fieldTypes[fd.Type] {
		return nil, fmt.Errorf("%s: type %q is not one of string, number, integer, boolean, email, url, date, datetime, select, multiselect, textarea, json, file, array, object", at, fd.Type)
	}
	n := &node{name: fd.Name, typ: fd.Type, required: fd.Required, minLen: fd.MinLength, maxLen: fd.MaxLength, min: fd.Min, max: fd.Max}
	for name, p := range map[string]*float64{"minLength": fd.MinLength, "maxLength": fd.MaxLength, "maxSize": fd.MaxSize} {
		if p != nil && *p < 0 {
			return nil, fmt.Errorf("%s: %s must not be negative", at, name)
		}
	}
	if fd.Default != nil {
		v, err := decodeValue(fd.Default)
		if err != nil {
			return nil, fmt.Errorf("%s: default: %w", at, err)
		}
		n.hasDefault, n.def = !isUndef(v), v
	}
	if fd.Pattern != "" && isStringType(fd.Type) {
		re, err := regexp.Compile(fd.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: pattern %q is not a regular expression Go (RE2 syntax) can compile: %w", at, fd.Pattern, err)
		}
		n.pattern = re
	}
	for i, o := range fd.Options {
		v, err := decodeValue(o.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: options[%d].value: %w", at, i, err)
		}
		n.values = append(n.values, v)
	}
	if len(n.values) > 0 && (fd.Type == TypeSelect || fd.Type == TypeMultiselect) {
		n.hasChoices = true
		allStrings := true
		for _, v := range n.values {
			s, ok := v.(string)
			if !ok {
				allStrings = false
				break
			}
			n.strs = append(n.strs, s)
		}
		if allStrings {
			n.values = nil
		} else {
			n.strs = nil
		}
	}
	if fd.Items != nil && fd.Type == TypeArray {
		it, err := compileField(fd.Items, at+".items", depth+1)
		if err != nil {
			return nil, err
		}
		n.items = it
	}
	if len(fd.Properties) > 0 && fd.Type == TypeObject {
		props, err := compileFields(fd.Properties, false, at+".properties", depth+1)
		if err != nil {
			return nil, err
		}
		n.props = props
	}
	if c := fd.ShowIf; c != nil {
		if c.Field == "" {
			return nil, fmt.Errorf("%s: showIf.field is required", at)
		}
		if !operators[c.Operator] {
			return nil, fmt.Errorf("%s: showIf.operator %q is not one of eq, ne, gt, lt, gte, lte, in, notIn", at, c.Operator)
		}
		v, err := decodeValue(c.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: showIf.value: %w", at, err)
		}
		n.showIf = &cond{field: c.Field, op: c.Operator, value: v}
	}
	return n, nil
}

func isStringType(t string) bool {
	return t == TypeString || t == TypeEmail || t == TypeURL || t == TypeTextarea
}
