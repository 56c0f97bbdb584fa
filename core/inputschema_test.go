package core_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// A field-list schema as the Node SDK registers it.
const orderSchema = `{"fields": [
	{"name": "email", "type": "email", "label": "Email", "required": true},
	{"name": "pages", "type": "integer", "label": "Pages", "min": 1, "max": 100},
	{"name": "format", "type": "select", "label": "Format", "options": [{"label": "A4", "value": "a4"}, {"label": "Letter", "value": "letter"}], "default": "a4"},
	{"name": "notes", "type": "string", "label": "Notes", "required": true, "showIf": {"field": "format", "operator": "eq", "value": "letter"}}
], "strict": true}`

const sizeJSONSchema = `{"type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}}`

func withSchemas(form, jsonSchema string) func(*protocol.TaskDefinition) {
	return func(td *protocol.TaskDefinition) {
		if form != "" {
			td.InputSchema = json.RawMessage(form)
		}
		if jsonSchema != "" {
			td.InputJSONSchema = json.RawMessage(jsonSchema)
		}
	}
}

type validationBody struct {
	Error              string                                `json:"error"`
	Code               string                                `json:"code"`
	ValidationErrors   map[string][]protocol.ValidationError `json:"validationErrors"`
	ValidationWarnings map[string][]protocol.ValidationError `json:"validationWarnings"`
}

// A schema that does not compile refuses the whole registration with 400, naming the task and
// carrying the schema's error; nothing is registered.
func TestRegistrationRefusesSchemasThatDoNotCompile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct{ name, form, jsonSchema, want string }{
		{"unknown field type", `{"fields": [{"name": "a", "type": "text", "label": "A"}]}`, "", `type \"text\"`},
		{"pattern Go cannot compile", `{"fields": [{"name": "a", "type": "string", "label": "A", "pattern": "(?<=x)y"}]}`, "", "RE2"},
		{"fields missing", `{"strict": true}`, "", "inputSchema.fields is required"},
		{"bad JSON Schema", "", `{"type": 5}`, "inputJsonSchema"},
		{"remote $ref", "", `{"$ref": "https://example.com/s.json"}`, "is not loaded"},
		{"bad JSON Schema beside a good form", orderSchema, `{"minimum": "x"}`, "inputJsonSchema"},
	}
	for _, c := range cases {
		good := task("fine", withSchemas(orderSchema, ""))
		bad := task("broken", withSchemas(c.form, c.jsonSchema))
		r := e.postReg("svc", protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: "http://127.0.0.1:1",
			Tasks: []protocol.TaskDefinition{good, bad}})
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", c.name, r.Body)
		body := r.errorBody(t)
		require.Equal(t, "INVALID_INPUT_SCHEMA", body.Code, c.name)
		require.Contains(t, body.Error, `task "broken"`, c.name)
		require.Contains(t, string(r.Body), c.want, c.name)
		require.Equal(t, "broken", body.Details.(map[string]any)["taskId"], c.name)
	}
	require.Zero(t, e.count("SELECT count(*) FROM services"))
	require.Zero(t, e.count("SELECT count(*) FROM tasks"))
}

// GET /api/tasks/{id}/input-schema and POST /api/tasks/{id}/validate-input answer as upstream.
func TestInputSchemaRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:1",
		task("form", withSchemas(orderSchema, "")), task("js", withSchemas("", sizeJSONSchema)), task("plain"))

	var info struct {
		TaskID     string          `json:"taskId"`
		HasSchema  bool            `json:"hasSchema"`
		Schema     json.RawMessage `json:"schema"`
		JSONSchema json.RawMessage `json:"jsonSchema"`
	}
	r := e.do("GET", "/api/tasks/form/input-schema", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	r.json(t, &info)
	require.Equal(t, "form", info.TaskID)
	require.True(t, info.HasSchema)
	require.JSONEq(t, orderSchema, string(info.Schema))
	require.Equal(t, "null", string(info.JSONSchema))

	r = e.do("GET", "/api/tasks/js/input-schema", nil, "")
	r.json(t, &info)
	require.True(t, info.HasSchema)
	require.Equal(t, "null", string(info.Schema))
	require.JSONEq(t, sizeJSONSchema, string(info.JSONSchema))

	r = e.do("GET", "/api/tasks/plain/input-schema", nil, "")
	require.JSONEq(t, `{"taskId": "plain", "hasSchema": false, "schema": null, "jsonSchema": null}`, string(r.Body))

	r = e.do("GET", "/api/tasks/nope/input-schema", nil, "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "TASK_NOT_FOUND", r.errorBody(t).Code)

	validate := func(taskID, body string) (int, []byte) {
		r := e.do("POST", "/api/tasks/"+taskID+"/validate-input", body, "")
		return r.Status, r.Body
	}
	status, body := validate("form", `{"input": {"email": "a@example.com", "pages": 3}}`)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"valid": true, "errors": []}`, string(body))
	status, body = validate("form", `{"input": {"email": "nope", "pages": 0.5, "format": "letter", "x": 1}}`)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"valid": false, "errors": [
		{"field": "email", "message": "Invalid email address", "code": "invalid_string"},
		{"field": "pages", "message": "Must be an integer", "code": "invalid_type"},
		{"field": "pages", "message": "Minimum value is 1", "code": "too_small"},
		{"field": "notes", "message": "Required", "code": "invalid_type"},
		{"field": "", "message": "Unrecognized key(s) in object: 'x'", "code": "unrecognized_keys"}]}`, string(body))
	status, body = validate("js", `{"input": {"size": 11}}`)
	require.Equal(t, http.StatusOK, status)
	var res protocol.ValidateInputResult
	require.NoError(t, json.Unmarshal(body, &res))
	require.False(t, res.Valid)
	require.Equal(t, "size", res.Errors[0].Field)
	require.Equal(t, "json_schema_maximum", res.Errors[0].Code)
	status, body = validate("plain", `{"input": [1, 2]}`)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"valid": true, "errors": []}`, string(body))
	status, body = validate("form", `{"input": null}`)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), "Expected object, received null")

	status, body = validate("form", `{}`)
	require.Equal(t, http.StatusBadRequest, status, "%s", body)
	require.Contains(t, string(body), "INPUT_REQUIRED")
	status, body = validate("nope", `{"input": {}}`)
	require.Equal(t, http.StatusNotFound, status, "%s", body)
	status, _ = validate("form", `{"input": `)
	require.Equal(t, http.StatusBadRequest, status)
}

// Enqueue: strict refuses with every violation and writes nothing; warn (the default) accepts
// and reports; none does not look; any other mode is a 400.
func TestEnqueueValidationModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:1", task("order", withSchemas(orderSchema, "")), task("sized", withSchemas(orderSchema, sizeJSONSchema)))
	bad := map[string]any{"pages": 500}

	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "order", "input": bad, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	var vb validationBody
	r.json(t, &vb)
	require.Equal(t, "INPUT_VALIDATION_FAILED", vb.Code)
	require.Equal(t, "Input validation failed", vb.Error)
	require.Equal(t, map[string][]protocol.ValidationError{"order": {
		{Field: "email", Message: "Required", Code: "invalid_type"},
		{Field: "pages", Message: "Maximum value is 100", Code: "too_big"},
	}}, vb.ValidationErrors)
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"))
	require.Zero(t, countFiles(t, e.storageDir), "no input was stored")

	// Both schemas of a task: every violation of each.
	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "sized", "input": map[string]any{"email": "a@b.co", "size": 11}, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	vb = validationBody{}
	r.json(t, &vb)
	require.Len(t, vb.ValidationErrors["sized"], 2, "%s", r.Body)
	require.Equal(t, "unrecognized_keys", vb.ValidationErrors["sized"][0].Code)
	require.Equal(t, "json_schema_maximum", vb.ValidationErrors["sized"][1].Code)

	for _, mode := range []string{"", "warn"} {
		body := map[string]any{"taskId": "order", "input": bad}
		if mode != "" {
			body["validationMode"] = mode
		}
		r = e.do("POST", "/api/queue/task", body, "")
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		vb = validationBody{}
		r.json(t, &vb)
		require.Len(t, vb.ValidationWarnings["order"], 2, "%s", r.Body)
		require.Contains(t, string(r.Body), `"runId"`)
	}
	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "order", "input": bad, "validationMode": "none"}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), "validationWarnings")
	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "order", "input": map[string]any{"email": "a@example.com"}, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), "validationWarnings", "a valid input has no warnings")
	require.Equal(t, 4, e.count("SELECT count(*) FROM task_runs"))

	r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "order", "input": bad, "validationMode": "STRICT"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "INVALID_VALIDATION_MODE", r.errorBody(t).Code)
	require.Equal(t, 4, e.count("SELECT count(*) FROM task_runs"))
}

// Batch: each request's validationMode, else the batch's; strict refusals list every refused
// request by index and nothing is written; warnings come with each result.
func TestBatchValidationModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:1", task("order", withSchemas(orderSchema, "")), task("plain"))
	good := map[string]any{"email": "a@example.com"}
	bad := map[string]any{"email": "x"}
	batch := func(body any) response { return e.do("POST", "/api/queue/batch", body, "") }

	r := batch(map[string]any{"validationMode": "strict", "tasks": []map[string]any{
		{"taskId": "order", "input": good}, {"taskId": "order", "input": bad}, {"taskId": "plain", "input": bad},
		{"taskId": "order", "input": bad, "validationMode": "warn"}, {"taskId": "order", "input": map[string]any{}},
	}})
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	var refused struct {
		Code             string                                           `json:"code"`
		ValidationErrors map[string]map[string][]protocol.ValidationError `json:"validationErrors"`
	}
	r.json(t, &refused)
	require.Equal(t, "INPUT_VALIDATION_FAILED", refused.Code)
	require.Equal(t, map[string]map[string][]protocol.ValidationError{
		"1": {"order": {{Field: "email", Message: "Invalid email address", Code: "invalid_string"}}},
		"4": {"order": {{Field: "email", Message: "Required", Code: "invalid_type"}}},
	}, refused.ValidationErrors)
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"))
	require.Zero(t, countFiles(t, e.storageDir))

	// A request's own mode wins over the batch's.
	r = batch(map[string]any{"validationMode": "strict", "tasks": []map[string]any{
		{"taskId": "order", "input": good}, {"taskId": "order", "input": bad, "validationMode": "warn"}, {"taskId": "order", "input": bad, "validationMode": "none"},
	}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var out struct {
		Queued  int `json:"queued"`
		Results []struct {
			RunID              string                                `json:"runId"`
			ValidationWarnings map[string][]protocol.ValidationError `json:"validationWarnings"`
		} `json:"results"`
	}
	r.json(t, &out)
	require.Equal(t, 3, out.Queued)
	require.Nil(t, out.Results[0].ValidationWarnings)
	require.Equal(t, []protocol.ValidationError{{Field: "email", Message: "Invalid email address", Code: "invalid_string"}}, out.Results[1].ValidationWarnings["order"])
	require.Nil(t, out.Results[2].ValidationWarnings)

	// No mode anywhere: warn.
	r = batch(map[string]any{"tasks": []map[string]any{{"taskId": "order", "input": bad}}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), "validationWarnings")

	for _, body := range []string{
		`{"validationMode": "loose", "tasks": [{"taskId": "order", "validationMode": "warn"}]}`,
		`{"tasks": [{"taskId": "order"}, {"taskId": "order", "validationMode": 1}]}`,
		`{"tasks": [{"taskId": "order"}, {"taskId": "order", "validationMode": "all"}]}`,
	} {
		r = batch(body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", body, r.Body)
	}
	require.Contains(t, string(batch(`{"tasks": [{"taskId": "order"}, {"taskId": "order", "validationMode": "all"}]}`).Body), "tasks[1]")
	require.Equal(t, 4, e.count("SELECT count(*) FROM task_runs"))
}

// Trigger validates the input against every entry task's schema.
func TestTriggerValidatesEveryEntryTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The implicit pipeline "svc" starts at "a" and "b"; "c" follows both (its schema is not
	// an entry task's and is not checked at trigger).
	e.register("svc", "1", "http://127.0.0.1:1",
		task("a", withSchemas(orderSchema, ""), func(td *protocol.TaskDefinition) { td.AllowedNext = []string{"c"} }),
		task("b", withSchemas("", sizeJSONSchema), func(td *protocol.TaskDefinition) { td.AllowedNext = []string{"c"} }),
		task("c", withSchemas(`{"fields": [{"name": "never", "type": "string", "required": true}]}`, "")))
	bad := map[string]any{"email": "a@example.com", "size": 50}

	r := e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": bad, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	var vb validationBody
	r.json(t, &vb)
	require.Equal(t, "INPUT_VALIDATION_FAILED", vb.Code)
	require.Equal(t, []string{"a", "b"}, sortedKeys(vb.ValidationErrors), "%s", r.Body)
	require.Equal(t, "unrecognized_keys", vb.ValidationErrors["a"][0].Code)
	require.Equal(t, "json_schema_maximum", vb.ValidationErrors["b"][0].Code)
	require.Zero(t, e.count("SELECT count(*) FROM pipeline_runs"))
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"))
	require.Zero(t, countFiles(t, e.storageDir))

	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": bad}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	vb = validationBody{}
	r.json(t, &vb)
	require.Equal(t, []string{"a", "b"}, sortedKeys(vb.ValidationWarnings))

	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": bad, "validationMode": "none"}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), "validationWarnings")

	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": map[string]any{"email": "a@example.com", "size": 5}, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "a's strict schema refuses b's field: %s", r.Body)
	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": map[string]any{"email": "a@example.com"}, "validationMode": "strict"}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	require.NotContains(t, string(r.Body), "validationWarnings")

	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"input": bad, "validationMode": "maybe"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "INVALID_VALIDATION_MODE", r.errorBody(t).Code)
	// Only validationMode and no input: a structured body whose input is absent ("Required").
	r = e.do("POST", "/api/pipelines/svc/trigger", map[string]any{"validationMode": "strict"}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), `"Required"`)
	require.Equal(t, 3, e.count("SELECT count(*) FROM pipeline_runs"))
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Two instances on one database: a re-registration with another schema is obeyed at once by
// the other instance (validators are cached by the schemas' hash, not by task), also while
// enqueues run concurrently on both.
func TestSchemaChangeIsSeenByEveryInstance(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := newEnvOn(t, a.pool)
	minLen := func(n int) string {
		return fmt.Sprintf(`{"fields": [{"name": "s", "type": "string", "required": true, "minLength": %d}]}`, n)
	}
	a.register("svc", "1", "http://127.0.0.1:1", task("t", withSchemas(minLen(3), "")))
	strict := func(e *env, s string) int {
		return e.do("POST", "/api/queue/task", map[string]any{"taskId": "t", "input": map[string]any{"s": s}, "validationMode": "strict"}, "").Status
	}
	require.Equal(t, http.StatusCreated, strict(b, "abcd"))
	require.Equal(t, http.StatusBadRequest, strict(b, "ab"))

	a.register("svc", "1", "http://127.0.0.1:1", task("t", withSchemas(minLen(5), "")))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			e := a
			if i%2 == 1 {
				e = b
			}
			for range 5 {
				for s, want := range map[string]int{"abcd": http.StatusBadRequest, "abcdef": http.StatusCreated} {
					r, err := e.send("POST", "/api/queue/task", map[string]any{"taskId": "t", "input": map[string]any{"s": s}, "validationMode": "strict"}, "")
					if err != nil || r.Status != want {
						t.Errorf("%s against minLength 5: %d %v", s, r.Status, err)
					}
				}
			}
		})
	}
	wg.Wait()

	// Dropping the schema drops validation.
	a.register("svc", "1", "http://127.0.0.1:1", task("t"))
	require.Equal(t, http.StatusCreated, strict(b, ""))
	require.Equal(t, 1+40+1, a.count("SELECT count(*) FROM task_runs"))
}

// Schemas stored before migration 006 (never compiled, hashed by the migration) are validated;
// one that does not compile is not, and does not block enqueues.
func TestSchemasStoredBeforeTheMigration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:1", task("old"), task("legacy"))
	_, err := e.pool.Exec(t.Context(), `UPDATE tasks SET input_schema = $2::jsonb, input_schema_hash = 'pre-006:' || md5($2::jsonb::text) WHERE id = $1`,
		"old", `{"fields": [{"name": "n", "type": "number", "required": true}]}`)
	require.NoError(t, err)
	_, err = e.pool.Exec(t.Context(), `UPDATE tasks SET input_schema = $2::jsonb, input_schema_hash = 'pre-006:' || md5($2::jsonb::text) WHERE id = $1`,
		"legacy", `{"type": "object", "required": ["x"]}`)
	require.NoError(t, err)
	strict := func(taskID string) response {
		return e.do("POST", "/api/queue/task", map[string]any{"taskId": taskID, "input": map[string]any{}, "validationMode": "strict"}, "")
	}
	r := strict("old")
	require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
	require.Contains(t, string(r.Body), `"field":"n"`)
	for range 3 {
		r = strict("legacy")
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	}
	require.Equal(t, 1, strings.Count(e.logs.String(), "a stored input schema does not compile"), "logged once")
	r = e.do("POST", "/api/tasks/legacy/validate-input", `{"input": {}}`, "")
	require.JSONEq(t, `{"valid": true, "errors": []}`, string(r.Body))
}
