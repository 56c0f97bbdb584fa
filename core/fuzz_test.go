package core_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// fuzzRoute is one JSON endpoint the HTTP fuzz target posts to.
type fuzzRoute struct {
	method, path string
	auth         string // "reg", "run" or "" (the open API; the test server has no API keys)
}

// fuzzRoutes are the API's JSON request bodies: every one a client or worker can send.
var fuzzRoutes = []fuzzRoute{
	{"POST", "/api/register", "reg"},
	{"POST", "/api/queue/task", ""},
	{"POST", "/api/queue/batch", ""},
	{"POST", "/api/pipelines/fuzz-flow/trigger", ""},
	{"POST", "/api/callback/trun_fuzz", "run"},
	{"POST", "/api/heartbeat", "run"},
	{"POST", "/api/progress", "run"},
	{"POST", "/api/dlq/retry-all", ""},
	{"POST", "/api/dlq/purge", ""},
	{"PUT", "/api/pipelines/fuzz-flow", ""},
	{"POST", "/api/tasks/fuzz-task/validate-input", ""},
	{"POST", "/api/maintenance/enter", ""},
	{"POST", "/api/maintenance/exit", ""},
	{"POST", "/api/pipelines/fuzz-flow/dry-run", ""},
	{"POST", "/api/idempotency/check", "run"},
}

// FuzzAPIBodies sends arbitrary bodies to every JSON endpoint of one real orchestrator (on a
// real PostgreSQL database, see internal/testdb). Properties: the server never answers 5xx
// other than 503 (a panic is recovered into a 500, so it fails too), every error answer
// is the {"error", "code"} body, and the server still answers /health afterwards. The seeds
// are real payloads and hostile ones; without -fuzz they run as a normal test.
func FuzzAPIBodies(f *testing.F) {
	o := testorch.Start(f, testorch.Options{Configure: func(cfg *core.Config) { cfg.MaxBodyBytes = 1 << 20 }})
	keys, err := token.DeriveKeys(testorch.Secret)
	if err != nil {
		f.Fatal(err)
	}
	client := &http.Client{Timeout: time.Minute}
	send := func(t testing.TB, rt fuzzRoute, body []byte) (int, []byte) {
		req, err := http.NewRequest(rt.method, o.URL+rt.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		switch rt.auth {
		case "reg":
			tok, err := token.SignServiceRegistration(testorch.Secret, "fuzz-svc", body, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		case "run":
			now := time.Now()
			tok, err := keys.SignRun(token.RunClaims{RunID: "trun_fuzz", TaskID: "fuzz-task", Attempt: 1, Lease: 1,
				IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rt.method, rt.path, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, raw
	}
	// A registered service, task and pipeline, so that the routes get past "not found".
	schema := `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "maxLength": 10}]}`
	regBody, _ := json.Marshal(map[string]any{"serviceId": "fuzz-svc", "version": "1", "baseUrl": "http://127.0.0.1:9",
		"tasks": []map[string]any{{"id": "fuzz-task", "codeHash": "h1", "inputSchema": json.RawMessage(schema)}, {"id": "fuzz-next", "codeHash": "h2"}}})
	if st, raw := send(f, fuzzRoutes[0], regBody); st != http.StatusOK {
		f.Fatalf("register: %d %s", st, raw)
	}
	if st, raw := send(f, fuzzRoute{"PUT", "/api/pipelines/fuzz-flow", ""}, []byte(`{"entryTasks": ["fuzz-task"]}`)); st != http.StatusOK {
		f.Fatalf("put pipeline: %d %s", st, raw)
	}

	valid := map[string][]string{
		"/api/register": {string(regBody),
			`{"serviceId": "fuzz-svc", "version": "2", "baseUrl": "http://127.0.0.1:9", "tasks": [{"id": "fuzz-task", "codeHash": "h3", "next": ["fuzz-next"], "retries": 3, "timeout": 30}, {"id": "fuzz-next", "codeHash": "h2"}]}`},
		"/api/queue/task": {`{"taskId": "fuzz-task", "input": {"name": "x"}, "priority": 5, "idempotencyKey": "k1", "metadata": {"a": 1}}`,
			`{"taskId": "fuzz-task", "input": {"name": 12}, "delayMs": 1000}`},
		"/api/queue/batch":                    {`{"tasks": [{"taskId": "fuzz-task", "input": {"name": "a"}}, {"taskId": "fuzz-next"}]}`},
		"/api/pipelines/fuzz-flow/trigger":    {`{"input": {"name": "x"}}`, `{"input": {"name": "x"}, "validationMode": "strict"}`},
		"/api/callback/trun_fuzz":             {`{"status": "success", "output": {"ok": true}}`, `{"status": "failed", "error": "boom", "errorCode": "E"}`},
		"/api/heartbeat":                      {`{"runId": "trun_fuzz", "progress": 50, "message": "half"}`},
		"/api/progress":                       {`{"runId": "trun_fuzz", "progress": 50}`},
		"/api/dlq/retry-all":                  {`{}`, `{"taskId": "fuzz-task"}`},
		"/api/dlq/purge":                      {`{"olderThan": "1h"}`, `{"olderThan": "1ms"}`},
		"/api/pipelines/fuzz-flow":            {`{"entryTasks": ["fuzz-task"], "failureMode": "fail-fast", "description": "d"}`},
		"/api/tasks/fuzz-task/validate-input": {`{"input": {"name": "x"}}`, `{"name": "x"}`},
		"/api/maintenance/enter":              {`{}`, `{"reason": "fuzz"}`},
		"/api/maintenance/exit":               {`{}`},
		"/api/pipelines/fuzz-flow/dry-run":    {`{"input": {"name": "x"}}`},
		"/api/idempotency/check":              {`{"runId": "trun_fuzz", "key": "k"}`},
	}
	hostile := []string{
		"", "null", "[]", "{", `{"a":`, "\x00", "\xff\xfe\xfd", `"\ud800"`, "1e999999", "-1",
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
		strings.Repeat(`{"a":`, 3000) + "1" + strings.Repeat("}", 3000),
		`{"taskId": "../../etc/passwd"}`, `{"serviceId": "fuzz-svc\u0000"}`, `{"priority": 1e400}`,
		`{"tasks": [` + strings.Repeat(`{"taskId":"fuzz-task"},`, 200) + `{"taskId":"fuzz-task"}]}`,
		`{"olderThan": "9999999999999h"}`, `{"olderThan": "-1h"}`, `{"progress": 1e308}`, `{"runId": 123}`,
		`{"entryTasks": ["fuzz-task", "fuzz-task"]}`, `{"input": "` + strings.Repeat("x", 1<<16) + `"}`,
	}
	for i, rt := range fuzzRoutes {
		for _, b := range valid[rt.path] {
			f.Add(uint8(i), []byte(b))
		}
		for _, b := range hostile {
			f.Add(uint8(i), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		st, raw := send(t, rt, body)
		if st >= 500 && st != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, st, raw)
		}
		if st >= 400 {
			var eb protocol.ErrorBody
			if err := json.Unmarshal(raw, &eb); err != nil || eb.Error == "" || eb.Code == "" {
				t.Fatalf("%s %s with %q: %d without an error body: %s", rt.method, rt.path, body, st, raw)
			}
		}
		if st, raw := send(t, fuzzRoute{"GET", "/health", ""}, nil); st != http.StatusOK && st != http.StatusServiceUnavailable {
			t.Fatalf("health after %s %s with %q: %d %s", rt.method, rt.path, body, st, raw)
		}
	})
}
