package inputschema_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/inputschema"
)

type ve = inputschema.ValidationError

type zodCase struct {
	name, schema, input string
	want                []ve
}

func compile(t *testing.T, schema string) *inputschema.Validator {
	t.Helper()
	v, err := inputschema.Compile(json.RawMessage(schema), nil)
	require.NoError(t, err, schema)
	return v
}

// The field-list format validates as upstream's zod schema does (zod_cases_test.go).
func TestFieldListMatchesZod(t *testing.T) {
	t.Parallel()
	for _, c := range zodCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := compile(t, c.schema).Validate(json.RawMessage(c.input))
			if len(c.want) == 0 {
				require.Empty(t, got)
				return
			}
			require.Equal(t, c.want, got)
		})
	}
}

// showIf: the one deliberate difference from upstream's validator. A required field hidden by
// its condition is not required; shown, it is; a hidden field that is given is still checked.
func TestShowIfMakesHiddenFieldsOptional(t *testing.T) {
	t.Parallel()
	v := compile(t, `{"fields": [
		{"name": "kind", "type": "select", "label": "Kind", "options": [{"label": "Card", "value": "card"}, {"label": "Bank", "value": "bank"}]},
		{"name": "cardNumber", "type": "string", "label": "Card", "required": true, "minLength": 12,
		 "showIf": {"field": "kind", "operator": "eq", "value": "card"}},
		{"name": "pages", "type": "integer", "label": "Pages"},
		{"name": "summary", "type": "string", "label": "Summary", "required": true,
		 "showIf": {"field": "pages", "operator": "gt", "value": 10}},
		{"name": "region", "type": "string", "label": "Region", "required": true,
		 "showIf": {"field": "kind", "operator": "in", "value": ["bank"]}},
		{"name": "note", "type": "string", "label": "Note", "required": true,
		 "showIf": {"field": "absent", "operator": "ne"}}
	]}`)
	cases := []struct {
		input string
		want  []ve
	}{
		{`{"kind": "bank", "region": "eu"}`, nil},
		{`{"kind": "card", "note": "x"}`, []ve{{Field: "cardNumber", Message: "Required", Code: "invalid_type"}}},
		{`{"kind": "card", "cardNumber": "1234567890123", "note": "x"}`, nil},
		{`{"kind": "bank", "cardNumber": "12", "region": "eu"}`, []ve{{Field: "cardNumber", Message: "Minimum length is 12", Code: "too_small"}}},
		{`{"pages": 11, "kind": "bank"}`, []ve{
			{Field: "summary", Message: "Required", Code: "invalid_type"},
			{Field: "region", Message: "Required", Code: "invalid_type"},
		}},
		{`{"pages": "11"}`, []ve{{Field: "pages", Message: "Expected number, received string", Code: "invalid_type"}}},
		{`{"absent": 1}`, []ve{{Field: "note", Message: "Required", Code: "invalid_type"}}},
	}
	for _, c := range cases {
		got := v.Validate(json.RawMessage(c.input))
		if c.want == nil {
			require.Empty(t, got, c.input)
		} else {
			require.Equal(t, c.want, got, c.input)
		}
	}
}

func TestEvaluateCondition(t *testing.T) {
	t.Parallel()
	dec := func(s string) any {
		var v any
		d := json.NewDecoder(stringsReader(s))
		d.UseNumber()
		require.NoError(t, d.Decode(&v))
		return v
	}
	cases := []struct {
		watched, op, value string
		want               bool
	}{
		{`"a"`, "eq", `"a"`, true}, {`"a"`, "eq", `"b"`, false}, {`1`, "eq", `1.0`, true}, {`1`, "eq", `"1"`, false},
		{`null`, "eq", `null`, true}, {`[1]`, "eq", `[1]`, false}, {`{}`, "ne", `{}`, true}, {`true`, "ne", `true`, false},
		{`5`, "gt", `3`, true}, {`3`, "gt", `3`, false}, {`"5"`, "gt", `3`, false}, {`3`, "gte", `3`, true},
		{`2`, "lt", `3`, true}, {`3`, "lte", `3`, true}, {`4`, "lte", `3`, false},
		{`"x"`, "in", `["x", "y"]`, true}, {`"z"`, "in", `["x"]`, false}, {`"x"`, "in", `"x"`, false},
		{`"z"`, "notIn", `["x"]`, true}, {`"x"`, "notIn", `["x"]`, false}, {`"x"`, "notIn", `"y"`, false},
		{`1`, "between", `1`, false},
	}
	for _, c := range cases {
		require.Equal(t, c.want, inputschema.EvaluateCondition(dec(c.watched), c.op, dec(c.value)), "%s %s %s", c.watched, c.op, c.value)
	}
	require.False(t, inputschema.EvaluateCondition(inputschema.Undefined, "eq", nil), "absent is not null")
	require.True(t, inputschema.EvaluateCondition(inputschema.Undefined, "ne", nil))
}

// A schema that does not compile is refused with a sentence that says where and why.
func TestCompileRefusesBadSchemas(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, form, json, want string }{
		{"not an object", `[1]`, ``, "inputSchema must be an object"},
		{"no fields", `{"strict": true}`, ``, "inputSchema.fields is required"},
		{"fields not an array", `{"fields": {}}`, ``, "inputSchema"},
		{"unknown type", `{"fields": [{"name": "a", "type": "text", "label": "A"}]}`, ``, `fields[0] (a): type "text" is not one of`},
		{"missing name", `{"fields": [{"type": "string", "label": "A"}]}`, ``, "fields[0]: name is required"},
		{"duplicate name", `{"fields": [{"name": "a", "type": "string"}, {"name": "a", "type": "number"}]}`, ``, `field name "a" is used twice`},
		{"look-ahead pattern", `{"fields": [{"name": "p", "type": "string", "pattern": "^(?=a)"}]}`, ``, "RE2"},
		{"bad pattern", `{"fields": [{"name": "p", "type": "string", "pattern": "(["}]}`, ``, `pattern "([" is not a regular expression`},
		{"negative minLength", `{"fields": [{"name": "p", "type": "string", "minLength": -1}]}`, ``, "minLength must not be negative"},
		{"bad operator", `{"fields": [{"name": "p", "type": "string", "showIf": {"field": "q", "operator": "like", "value": 1}}]}`, ``, `showIf.operator "like"`},
		{"showIf without field", `{"fields": [{"name": "p", "type": "string", "showIf": {"operator": "eq", "value": 1}}]}`, ``, "showIf.field is required"},
		{"nested bad type", `{"fields": [{"name": "o", "type": "object", "properties": [{"name": "x", "type": "nope"}]}]}`, ``, `fields[0] (o).properties[0] (x): type "nope"`},
		{"bad items", `{"fields": [{"name": "a", "type": "array", "items": {"type": "nope"}}]}`, ``, `items`},
		{"json schema not JSON", ``, `{"type": `, "inputJsonSchema is not JSON"},
		{"json schema not a schema", ``, `[1]`, "inputJsonSchema must be a JSON Schema"},
		{"json schema bad keyword value", ``, `{"type": "strin"}`, "inputJsonSchema"},
		{"json schema bad regex", ``, `{"type": "string", "pattern": "(["}`, "inputJsonSchema"},
		{"json schema remote ref", ``, `{"$ref": "https://example.com/schema.json"}`, "is not loaded"},
		{"json schema file ref", ``, `{"$ref": "file:///etc/passwd"}`, "is not loaded"},
		{"json schema unknown meta-schema", ``, `{"$schema": "https://example.com/meta"}`, "is not loaded"},
	}
	for _, c := range cases {
		_, err := inputschema.Compile(json.RawMessage(c.form), json.RawMessage(c.json))
		require.Error(t, err, c.name)
		require.Contains(t, err.Error(), c.want, c.name)
	}
	big := fmt.Sprintf(`{"description": "%0*d"}`, inputschema.MaxSchemaBytes, 0)
	_, err := inputschema.Compile(nil, json.RawMessage(big))
	require.ErrorContains(t, err, "larger than")
	deep := `{"name": "x", "type": "string"}`
	for range 40 {
		deep = `{"name": "x", "type": "array", "items": ` + deep + `}`
	}
	_, err = inputschema.Compile(json.RawMessage(`{"fields": [`+deep+`]}`), nil)
	require.ErrorContains(t, err, "nested deeper")
}

func TestNoSchemaValidatesEverything(t *testing.T) {
	t.Parallel()
	for _, s := range []string{``, `null`, ` null `} {
		v, err := inputschema.Compile(json.RawMessage(s), json.RawMessage(s))
		require.NoError(t, err)
		require.False(t, v.HasSchema())
		require.Empty(t, v.Validate(json.RawMessage(`[1]`)))
	}
	require.Empty(t, inputschema.Hash(nil, json.RawMessage(`null`)))
	require.NotEqual(t, inputschema.Hash(json.RawMessage(`{"fields":[]}`), nil), inputschema.Hash(nil, json.RawMessage(`{"fields":[]}`)))
}

func TestJSONSchema(t *testing.T) {
	t.Parallel()
	v, err := inputschema.Compile(nil, json.RawMessage(`{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"type": "object",
		"required": ["url", "pages"],
		"properties": {
			"url": {"type": "string", "format": "uri"},
			"pages": {"type": "integer", "minimum": 1},
			"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}
		},
		"$defs": {"tag": {"type": "string", "maxLength": 3}},
		"additionalProperties": false
	}`))
	require.NoError(t, err)
	require.True(t, v.HasSchema())
	require.Empty(t, v.Validate(json.RawMessage(`{"url": "https://x.example/a", "pages": 2, "tags": ["a"]}`)))
	got := v.Validate(json.RawMessage(`{"url": "not a uri", "pages": 0, "tags": ["abcd", 5], "x": 1}`))
	byField := map[string][]string{}
	for _, e := range got {
		require.NotEmpty(t, e.Message)
		byField[e.Field] = append(byField[e.Field], e.Code)
	}
	require.Equal(t, map[string][]string{
		"":       {"json_schema_additionalProperties"},
		"url":    {"json_schema_format"},
		"pages":  {"json_schema_minimum"},
		"tags.0": {"json_schema_maxLength"},
		"tags.1": {"json_schema_type"},
	}, byField, "%+v", got)
	missing := v.Validate(json.RawMessage(`{}`))
	require.Len(t, missing, 1)
	require.Equal(t, "json_schema_required", missing[0].Code)
	require.Contains(t, missing[0].Message, "url")
	// No input at all is validated as null.
	require.Equal(t, "json_schema_type", v.Validate(nil)[0].Code)
	// Draft 7 by its $schema; boolean schemas.
	_, err = inputschema.Compile(nil, json.RawMessage(`{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}`))
	require.NoError(t, err)
	f, err := inputschema.Compile(nil, json.RawMessage(`false`))
	require.NoError(t, err)
	require.NotEmpty(t, f.Validate(json.RawMessage(`{}`)))
}

// Both schemas: the field list's violations first, then the JSON Schema's.
func TestBothSchemas(t *testing.T) {
	t.Parallel()
	v, err := inputschema.Compile(json.RawMessage(`{"fields": [{"name": "n", "type": "number", "required": true}]}`),
		json.RawMessage(`{"type": "object", "required": ["m"]}`))
	require.NoError(t, err)
	got := v.Validate(json.RawMessage(`{}`))
	require.Len(t, got, 2)
	require.Equal(t, ve{Field: "n", Message: "Required", Code: "invalid_type"}, got[0])
	require.Equal(t, "json_schema_required", got[1].Code)
	require.Equal(t, "invalid_type", v.Validate(json.RawMessage(`{"n": `))[0].Code, "malformed JSON")
}

// A compiled validator is shared by concurrent requests.
func TestValidatorIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	v, err := inputschema.Compile(json.RawMessage(`{"fields": [{"name": "s", "type": "string", "pattern": "^a+$", "required": true}], "strict": true}`),
		json.RawMessage(`{"properties": {"s": {"maxLength": 3}}}`))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for range 100 {
				if i%2 == 0 {
					require.Empty(t, v.Validate(json.RawMessage(`{"s": "aa"}`)))
				} else {
					require.Len(t, v.Validate(json.RawMessage(`{"s": "bbbb", "x": 1}`)), 3)
				}
			}
		})
	}
	wg.Wait()
}
