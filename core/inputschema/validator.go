package inputschema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validator checks inputs against a task's compiled schemas. It is safe for concurrent use.
type Validator struct {
	form *form
	json *jsonschema.Schema
}

// Compile compiles a task's schemas: inputSchema in the field-list format and inputJSONSchema
// a standard JSON Schema. Either may be empty (or JSON null), meaning none. The error says
// which schema is wrong and why: an unknown field type, a pattern Go cannot compile, a
// JSON Schema that does not compile or refers to another document.
func Compile(inputSchema, inputJSONSchema json.RawMessage) (*Validator, error) {
	v := &Validator{}
	if !Empty(inputSchema) {
		f, err := compileForm(inputSchema)
		if err != nil {
			return nil, err
		}
		v.form = f
	}
	if !Empty(inputJSONSchema) {
		s, err := compileJSONSchema(inputJSONSchema)
		if err != nil {
			return nil, err
		}
		v.json = s
	}
	return v, nil
}

// Empty reports whether a schema is absent: no bytes or JSON null.
func Empty(raw json.RawMessage) bool {
	v, err := decodeValue(raw)
	return err == nil && (isUndef(v) || v == nil)
}

// HasSchema reports whether the validator checks anything.
func (v *Validator) HasSchema() bool { return v != nil && (v.form != nil || v.json != nil) }

// Validate checks input (raw JSON; empty means no input was given) and returns every
// violation: those of the field-list schema first, in zod's order, then those of the JSON
// Schema. Malformed JSON is one invalid_type error.
func (v *Validator) Validate(input json.RawMessage) []ValidationError {
	if !v.HasSchema() {
		return nil
	}
	val, err := decodeValue(input)
	if err != nil {
		return []ValidationError{{Field: "", Message: "Input is not JSON: " + err.Error(), Code: "invalid_type"}}
	}
	return v.ValidateValue(val, input)
}

// ValidateValue is Validate for an input already decoded with json.Decoder.UseNumber (nil is
// JSON null); raw, when given, is its JSON text, used only for the order of unknown keys.
func (v *Validator) ValidateValue(val any, raw json.RawMessage) []ValidationError {
	var out []ValidationError
	if v.form != nil {
		c := &checker{raw: raw}
		c.object(v.form, val, true)
		out = append(out, c.errs...)
	}
	if v.json != nil {
		jv := val
		if isUndef(jv) {
			jv = nil
		}
		if err := v.json.Validate(jv); err != nil {
			out = append(out, jsonSchemaErrors(err)...)
		}
	}
	return out
}

// Hash identifies a pair of schemas: equal schemas (byte for byte) have equal hashes. It is
// empty when both are absent.
func Hash(inputSchema, inputJSONSchema json.RawMessage) string {
	if Empty(inputSchema) && Empty(inputJSONSchema) {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d:", len(inputSchema))
	h.Write(inputSchema)
	h.Write(inputJSONSchema)
	return hex.EncodeToString(h.Sum(nil))
}
