package inputschema_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pipeweave/pipeweave/core/inputschema"
)

// The fuzz targets feed arbitrary schema bytes to Compile and arbitrary inputs to Validate
// against fixed schemas. Properties: no panic; every violation is well formed (a code and a
// message, and it encodes as JSON); validation is deterministic. Without -fuzz the seeds (the
// zod cases plus hostile inputs) run as a normal test.

// fuzzFormSchema uses every field type, showIf, nesting and strict mode.
const fuzzFormSchema = `{"strict": true, "fields": [
 {"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 1, "maxLength": 20, "pattern": "^[a-z ]+$"},
 {"name": "note", "type": "textarea", "label": "Note"},
 {"name": "count", "type": "integer", "label": "Count", "min": 0, "max": 100, "default": 1},
 {"name": "ratio", "type": "number", "label": "Ratio", "min": -1.5, "max": 1.5},
 {"name": "on", "type": "boolean", "label": "On"},
 {"name": "when", "type": "date", "label": "When"},
 {"name": "at", "type": "datetime", "label": "At"},
 {"name": "mail", "type": "email", "label": "Mail", "showIf": {"field": "on", "operator": "eq", "value": true}},
 {"name": "site", "type": "url", "label": "Site", "showIf": {"field": "count", "operator": "gt", "value": 3}},
 {"name": "doc", "type": "file", "label": "Doc"},
 {"name": "meta", "type": "json", "label": "Meta"},
 {"name": "kind", "type": "select", "label": "Kind", "required": true, "options": [{"label": "A", "value": "a"}, {"label": "One", "value": 1}]},
 {"name": "tags", "type": "multiselect", "label": "Tags", "options": [{"label": "X", "value": "x"}, {"label": "Y", "value": "y"}]},
 {"name": "list", "type": "array", "label": "List", "items": {"type": "object", "properties": [{"name": "k", "type": "string", "required": true}]}},
 {"name": "obj", "type": "object", "label": "Obj", "properties": [{"name": "deep", "type": "array", "items": {"type": "number"}}]}
]}`

// fuzzJSONSchema is a standard JSON Schema with the common keywords.
const fuzzJSONSchema = `{"type": "object", "required": ["id"], "additionalProperties": false,
 "properties": {
  "id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"},
  "n": {"type": "integer", "minimum": 0, "maximum": 1e6, "multipleOf": 3},
  "f": {"type": "number", "exclusiveMaximum": 1},
  "e": {"enum": ["a", 1, null, [1], {"x": 1}]},
  "u": {"oneOf": [{"type": "string", "format": "email"}, {"type": "string", "format": "uri"}]},
  "arr": {"type": "array", "items": {"$ref": "#/$defs/node"}, "uniqueItems": true, "maxItems": 5},
  "d": {"type": "string", "format": "date-time"}
 },
 "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}
}`

// hostileJSON are hostile documents used as schema and input seeds.
var hostileJSON = []string{
	"", "null", "{", "}", "[", "\x00", "\xff\xfe", `"\ud800"`, `{"a":"\u0000"}`, "1e999999", "-0",
	"123456789012345678901234567890", `{"a":1,"a":2}`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), `{"__proto__": {"x": 1}}`,
	`{"fields": [{"name": "", "type": "string"}]}`, `{"fields": null}`, `{"fields": [null]}`,
	`{"fields": [{"name": "a", "type": "string", "pattern": "` + strings.Repeat("(a*)*", 50) + `"}]}`,
	`{"fields": [{"name": "a", "type": "number", "min": 1e309}]}`, `{"$ref": "#"}`, `{"$ref": "#/a/b"}`,
	`{"type": "string", "pattern": "\\p{Nope}"}`, `{"$schema": "https://json-schema.org/draft/2020-12/schema", "$dynamicRef": "#x"}`,
}

func checkErrors(t *testing.T, what string, errs []inputschema.ValidationError) {
	t.Helper()
	for _, e := range errs {
		if e.Code == "" || e.Message == "" {
			t.Fatalf("%s: malformed violation %+v", what, e)
		}
	}
	if _, err := json.Marshal(errs); err != nil {
		t.Fatalf("%s: violations do not encode: %v", what, err)
	}
}

func FuzzCompile(f *testing.F) {
	seen := map[string]bool{}
	for _, c := range zodCases {
		if !seen[c.schema] {
			seen[c.schema] = true
			f.Add([]byte(c.schema), []byte(nil))
		}
	}
	f.Add([]byte(fuzzFormSchema), []byte(fuzzJSONSchema))
	f.Add([]byte(nil), []byte(fuzzJSONSchema))
	for _, h := range hostileJSON {
		f.Add([]byte(h), []byte(nil))
		f.Add([]byte(nil), []byte(h))
	}
	inputs := []json.RawMessage{nil, json.RawMessage(`{}`), json.RawMessage(`null`), json.RawMessage(`{"a": 1, "name": "x"}`), json.RawMessage(`[1]`)}
	f.Fuzz(func(t *testing.T, form, js []byte) {
		v, err := inputschema.Compile(form, js)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty compile error")
			}
			return
		}
		if h := inputschema.Hash(form, js); h != inputschema.Hash(bytes.Clone(form), bytes.Clone(js)) {
			t.Fatal("Hash differs for equal schemas")
		}
		for _, in := range inputs {
			checkErrors(t, string(in), v.Validate(in))
		}
	})
}

func FuzzValidate(f *testing.F) {
	form, err := inputschema.Compile(json.RawMessage(fuzzFormSchema), nil)
	if err != nil {
		f.Fatal(err)
	}
	js, err := inputschema.Compile(nil, json.RawMessage(fuzzJSONSchema))
	if err != nil {
		f.Fatal(err)
	}
	both, err := inputschema.Compile(json.RawMessage(fuzzFormSchema), json.RawMessage(fuzzJSONSchema))
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range zodCases {
		f.Add([]byte(c.input))
	}
	f.Add([]byte(`{"name": "ok name", "kind": "a", "count": 5, "on": true, "mail": "a@b.co", "site": "https://x.y", "when": "2024-01-02",
		"at": "2024-01-02T03:04:05Z", "tags": ["x"], "list": [{"k": "v"}], "obj": {"deep": [1, 2.5]}, "meta": {"any": [null]}}`))
	f.Add([]byte(`{"id": "abc", "n": 9, "f": 0.5, "e": {"x": 1}, "u": "a@b.co", "arr": [{"children": [{"children": []}]}], "d": "2024-01-02T03:04:05Z"}`))
	for _, h := range hostileJSON {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		for name, v := range map[string]*inputschema.Validator{"form": form, "json": js, "both": both} {
			first := v.Validate(input)
			checkErrors(t, name, first)
			if again := v.Validate(input); len(again) != len(first) {
				t.Fatalf("%s: %d violations, then %d for the same input", name, len(first), len(again))
			}
		}
	})
}
