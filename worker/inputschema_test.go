package worker_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/worker"
)

// A Go worker declares both schemas with its task's options; the orchestrator keeps them and
// validates inputs against them.
func TestWorkerDeclaresInputSchemas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("schemas")
	form := `{"fields": [{"name": "pdfUrl", "type": "url", "label": "PDF URL", "required": true}]}`
	jsonSchema := `{"type": "object", "properties": {"pages": {"type": "integer", "maximum": 5}}}`
	require.NoError(t, w.Register("download", worker.Options{
		InputSchema: json.RawMessage(form), InputJSONSchema: json.RawMessage(jsonSchema),
	}, func(*worker.Context) (any, error) { return nil, nil }))
	w.register(t)

	r := e.do("GET", "/api/tasks/download/input-schema", nil)
	require.Equal(t, http.StatusOK, r.Status)
	var info struct {
		HasSchema  bool            `json:"hasSchema"`
		Schema     json.RawMessage `json:"schema"`
		JSONSchema json.RawMessage `json:"jsonSchema"`
	}
	r.json(t, &info)
	require.True(t, info.HasSchema)
	require.JSONEq(t, form, string(info.Schema))
	require.JSONEq(t, jsonSchema, string(info.JSONSchema))

	r = e.do("POST", "/api/tasks/download/validate-input", map[string]any{"input": map[string]any{"pdfUrl": "nope", "pages": 9}})
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"valid": false, "errors": [
		{"field": "pdfUrl", "message": "Invalid URL", "code": "invalid_string"},
		{"field": "pages", "message": "maximum: got 9, want 5", "code": "json_schema_maximum"}]}`, string(r.Body))
}
