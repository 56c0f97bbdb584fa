package api

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// decoderCase is one request body the API decodes: the value it decodes into, whether unknown
// fields are refused, and the route-specific caps checked right after decoding.
type decoderCase struct {
	name   string
	strict bool
	value  func() any
	caps   func(s *Server, w http.ResponseWriter, v any) bool // true when a cap refused v
}

// decoderCases are every JSON request body of the API (the same types the handlers in
// server.go, upstream.go, inputschema.go and maintenance.go decode into).
var decoderCases = []decoderCase{
	{name: "register", value: func() any { return new(protocol.RegisterRequest) },
		caps: func(s *Server, w http.ResponseWriter, v any) bool {
			return s.registrationTooBig(w, v.(*protocol.RegisterRequest))
		}},
	{name: "queue/task", value: func() any { return new(protocol.EnqueueRequest) }},
	{name: "queue/batch", value: func() any {
		return new(struct {
			Tasks          []protocol.EnqueueRequest `json:"tasks"`
			ValidationMode string                    `json:"validationMode"`
		})
	}, caps: func(s *Server, w http.ResponseWriter, v any) bool {
		b := v.(*struct {
			Tasks          []protocol.EnqueueRequest `json:"tasks"`
			ValidationMode string                    `json:"validationMode"`
		})
		return s.batchTooBig(w, len(b.Tasks))
	}},
	{name: "callback", value: func() any { return new(protocol.CallbackRequest) },
		caps: func(_ *Server, _ http.ResponseWriter, v any) bool {
			cb := v.(*protocol.CallbackRequest)
			capCallbackError(cb)
			return false
		}},
	{name: "heartbeat", value: func() any { return new(heartbeatBody) }},
	{name: "idempotency/check", value: func() any { return new(protocol.IdempotencyCheckRequest) }},
	{name: "dlq/retry-all", strict: true, value: func() any { return new(retryAllRequest) }},
	{name: "dlq/purge", value: func() any { return new(purgeRequest) }},
	{name: "pipelines/put", value: func() any { return new(protocol.PipelineDefinition) },
		caps: func(_ *Server, w http.ResponseWriter, v any) bool {
			return tooLong(w, "DESCRIPTION_TOO_LONG", "description", v.(*protocol.PipelineDefinition).Description, MaxDescriptionBytes)
		}},
	{name: "pipelines/trigger", value: func() any { return new(protocol.TriggerRequest) }},
	{name: "pipelines/dry-run", value: func() any { return new(dryRunRequest) }},
	{name: "maintenance", strict: true, value: func() any { return new(maintenanceCommand) }},
	{name: "validate-input", value: func() any {
		return new(struct {
			Input json.RawMessage `json:"input"`
		})
	}},
}

// FuzzDecodeBodies runs every request decoder of the API in process (no database, so it
// reaches millions of executions; FuzzAPIBodies in package core covers the same bodies end to
// end). Properties, for every body and every decoder:
//   - decoding never panics, and a refusal is a 400 or 413 with an {"error","code"} body;
//   - what is accepted obeys the input rules independently of checkJSON: re-encoded, every
//     string is valid UTF-8 without NUL and every number is finite, so nothing a decoder
//     accepts can make PostgreSQL refuse it (which would be a 500).
func FuzzDecodeBodies(f *testing.F) {
	seeds := []string{
		`{"serviceId":"svc","version":"1.0.0","baseUrl":"http://127.0.0.1:9","tasks":[{"id":"t","codeHash":"abc","timeout":60}]}`,
		`{"taskId":"t","input":{"a":[1,2.5,"x"]},"priority":5,"metadata":{"k":"v"},"idempotencyKey":"k","delayMs":10}`,
		`{"tasks":[{"taskId":"t","input":{}},{"taskId":"u","input":null}],"validationMode":"warn"}`,
		`{"status":"success","outputPath":"runs/r/output.json","outputSize":3,"assets":{"a":{"path":"runs/r/assets/a","size":1,"type":"binary"}}}`,
		`{"status":"failed","error":"bad","errorCode":"E","retryable":false}`,
		`{"runId":"trun_x","progress":42.5,"message":"page 4/10"}`,
		`{"taskId":"t","pipelineId":"p","limit":10}`, `{"olderThan":"7d"}`,
		`{"entryTasks":["a"],"failureMode":"continue","description":"d","nodes":{"a":{}}}`,
		`{"input":{"x":1},"failureMode":"fail-fast","priority":1,"metadata":{}}`, `{"input":null}`, `{}`,
		`{"reason":"upgrade"}`, `{"runId":"trun_x","key":"k"}`,
		"", "null", "[]", `"s"`, "{", `{"a":1}{}`, `{"metadata":{"s":"a\u0000b"}}`, "{\"message\":\"\xff\"}",
		`{"priority":2147483648}`, `{"metadata":{"n":1e999999}}`, `{"metadata":{"n":-1e400}}`, `{"x":"\ud800"}`,
		`{"error":"` + strings.Repeat("é", 3000) + `"}`, strings.Repeat("[", 5000), `{"tasks":[` + strings.Repeat(`{},`, 50) + `{}]}`,
	}
	for _, s := range seeds {
		for i := range decoderCases {
			f.Add([]byte(s), uint8(i))
		}
	}
	s := &Server{opts: Options{MaxTasksPerRegistration: 5, MaxBatchSize: 20}}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		c := decoderCases[int(which)%len(decoderCases)]
		v := c.value()
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/api/"+c.name, bytes.NewReader(body))
		ok := s.decodeBody(w, r, v, c.strict)
		if ok && c.caps != nil {
			ok = !c.caps(s, w, v)
		}
		if !ok {
			checkRefusal(t, c.name, body, w)
			return
		}
		if w.Body.Len() != 0 {
			t.Fatalf("%s: accepted %q but wrote an answer: %s", c.name, body, w.Body.String())
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: accepted %q, which does not encode again: %v", c.name, body, err)
		}
		if !utf8.Valid(out) {
			t.Fatalf("%s: accepted %q, which re-encodes with invalid UTF-8: %q", c.name, body, out)
		}
		if why := unpairedSurrogate(out); why != "" {
			t.Fatalf("%s: accepted %q, which re-encodes with %s", c.name, body, why)
		}
		var tree any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&tree); err != nil {
			t.Fatalf("%s: accepted %q, re-encoded as invalid JSON %q: %v", c.name, body, out, err)
		}
		if why := breaksInputRules(tree); why != "" {
			t.Fatalf("%s: accepted %q with %s", c.name, body, why)
		}
	})
}

// checkRefusal fails t unless w holds a 400 or 413 answer with an {"error","code"} body.
func checkRefusal(t *testing.T, name string, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("%s: refused %q with status %d: %s", name, body, w.Code, w.Body.String())
	}
	var e struct{ Error, Code string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code == "" {
		t.Fatalf("%s: refusal of %q is not an {error, code} body: %q (%v)", name, body, w.Body.String(), err)
	}
	if !utf8.ValidString(e.Error) {
		t.Fatalf("%s: refusal message of %q is not valid UTF-8: %q", name, body, e.Error)
	}
}

// breaksInputRules walks a decoded JSON tree (numbers as json.Number) and says which input
// rule a value breaks, or "".
func breaksInputRules(v any) string {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) || strings.IndexByte(x, 0) >= 0 {
			return "a string that is not valid UTF-8 without NUL: " + strings.ToValidUTF8(x, "?")
		}
	case json.Number:
		if f, err := x.Float64(); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "a number out of float64's range: " + x.String()
		}
	case []any:
		for _, e := range x {
			if why := breaksInputRules(e); why != "" {
				return why
			}
		}
	case map[string]any:
		for k, e := range x {
			if why := breaksInputRules(k); why != "" {
				return "key " + why
			}
			if why := breaksInputRules(e); why != "" {
				return why
			}
		}
	}
	return ""
}

// unpairedSurrogate scans the strings of a JSON text for a \u escape of a UTF-16 surrogate
// that is not part of a high-low pair (PostgreSQL's jsonb refuses one), written here
// independently of checkJSON.
func unpairedSurrogate(data []byte) string {
	inString, pendingHigh := false, false
	for i := 0; i < len(data); i++ {
		b := data[i]
		if !inString {
			inString = b == '"'
			continue
		}
		if b != '\\' {
			if pendingHigh {
				return "a high surrogate escape not followed by a low one"
			}
			inString = b != '"'
			continue
		}
		i++
		if i >= len(data) || data[i] != 'u' || i+4 >= len(data) {
			if pendingHigh {
				return "a high surrogate escape not followed by a low one"
			}
			continue
		}
		var unit uint16
		for _, h := range data[i+1 : i+5] {
			unit <<= 4
			switch {
			case h >= '0' && h <= '9':
				unit |= uint16(h - '0')
			case h >= 'a' && h <= 'f':
				unit |= uint16(h-'a') + 10
			case h >= 'A' && h <= 'F':
				unit |= uint16(h-'A') + 10
			}
		}
		i += 4
		switch {
		case unit >= 0xD800 && unit <= 0xDBFF:
			if pendingHigh {
				return "two high surrogate escapes in a row"
			}
			pendingHigh = true
		case unit >= 0xDC00 && unit <= 0xDFFF:
			if !pendingHigh {
				return "a low surrogate escape without a high one"
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return "a high surrogate escape not followed by a low one"
			}
		}
	}
	return ""
}
