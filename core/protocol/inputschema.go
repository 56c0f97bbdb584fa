package protocol

import "encoding/json"

// Input validation modes of an enqueue or a trigger (field validationMode).
const (
	// ValidationStrict refuses an input that breaks a schema (400, nothing written).
	ValidationStrict = "strict"
	// ValidationWarn accepts it and reports the violations as validationWarnings (the default).
	ValidationWarn = "warn"
	// ValidationNone skips validation.
	ValidationNone = "none"
)

// ValidationError is one violation of a task's input schema, as upstream reports it: the
// dotted path of the value ("" for the input itself, "a.b.0" inside it), a sentence and a
// code (zod's issue codes; json_schema_<keyword> for the JSON Schema).
type ValidationError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	Code    string `json:"code"`
}

// ValidationErrors are the violations of one input, by task id.
type ValidationErrors map[string][]ValidationError

// InputSchemaInfo answers GET /api/tasks/{id}/input-schema: Schema is the field-list schema
// (null when none), JSONSchema the standard JSON Schema (null when none); HasSchema is true
// when either is set.
type InputSchemaInfo struct {
	TaskID     string          `json:"taskId"`
	HasSchema  bool            `json:"hasSchema"`
	Schema     json.RawMessage `json:"schema"`
	JSONSchema json.RawMessage `json:"jsonSchema"`
}

// ValidateInputResult answers POST /api/tasks/{id}/validate-input.
type ValidateInputResult struct {
	Valid  bool              `json:"valid"`
	Errors []ValidationError `json:"errors"`
}
