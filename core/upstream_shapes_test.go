package core_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// upstreamSchemas are upstream's published zod schemas (packages/shared/src/types/api.ts,
// pipeline.ts, task.ts of SaritraGmbH/pipeweave), translated BY HAND into JSON Schema 2020-12,
// not derived from our Go types. The translation: z.object → "type": "object" with the keys
// that are not .optional() required, other keys allowed (zod strips unknown keys, so our extra
// fields pass); .optional() → may be absent, but null is refused (the key's type has no null);
// .nullable() → null allowed; z.number() → number; .positive() → exclusiveMinimum 0;
// .nonnegative() → minimum 0; .min(a).max(b) → minimum/maximum; z.enum → enum; z.record(X) →
// an object whose values are X; z.unknown() → any value, or absent; z.coerce.date() → an RFC
// 3339 date-time string (what a JSON client gets); z.string().url() → format uri.
const upstreamSchemas = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$defs": {
    "date": {"type": "string", "format": "date-time"},
    "positive": {"type": "number", "exclusiveMinimum": 0},
    "nonnegative": {"type": "number", "minimum": 0},
    "stringArray": {"type": "array", "items": {"type": "string"}},
    "FailureMode": {"enum": ["fail-fast", "continue", "partial-merge"]},
    "AssetType": {"enum": ["json", "text", "binary"]},
    "AssetMetadata": {
      "type": "object",
      "required": ["path", "size", "type"],
      "properties": {
        "path": {"type": "string"},
        "size": {"$ref": "#/$defs/nonnegative"},
        "type": {"$ref": "#/$defs/AssetType"}
      }
    },
    "TaskAttempt": {
      "type": "object",
      "required": ["attempt", "error", "timestamp"],
      "properties": {
        "attempt": {"$ref": "#/$defs/positive"},
        "error": {"type": "string"},
        "errorCode": {"type": "string"},
        "timestamp": {"$ref": "#/$defs/date"}
      }
    },
    "TaskInputSchema": {
      "type": "object",
      "required": ["fields"],
      "properties": {"fields": {"type": "array", "items": {"type": "object", "required": ["name", "type", "label"]}}, "strict": {"type": "boolean"}}
    },
    "TaskRegistrationInfo": {
      "type": "object",
      "required": ["id", "codeHash", "allowedNext", "timeout", "retries", "retryBackoff", "retryDelayMs",
                   "maxRetryDelayMs", "heartbeatIntervalMs", "concurrency", "priority"],
      "properties": {
        "id": {"type": "string"},
        "codeHash": {"type": "string"},
        "allowedNext": {"$ref": "#/$defs/stringArray"},
        "timeout": {"$ref": "#/$defs/positive"},
        "retries": {"$ref": "#/$defs/nonnegative"},
        "retryBackoff": {"enum": ["fixed", "exponential"]},
        "retryDelayMs": {"$ref": "#/$defs/positive"},
        "maxRetryDelayMs": {"$ref": "#/$defs/positive"},
        "heartbeatIntervalMs": {"$ref": "#/$defs/positive"},
        "concurrency": {"$ref": "#/$defs/nonnegative"},
        "priority": {"type": "number"},
        "idempotencyTTL": {"$ref": "#/$defs/positive"},
        "description": {"type": "string"},
        "inputSchema": {"$ref": "#/$defs/TaskInputSchema"}
      }
    },
    "RegisterServiceRequest": {
      "type": "object",
      "required": ["serviceId", "version", "baseUrl", "tasks"],
      "properties": {
        "serviceId": {"type": "string"},
        "version": {"type": "string"},
        "baseUrl": {"type": "string", "format": "uri"},
        "tasks": {"type": "array", "items": {"$ref": "#/$defs/TaskRegistrationInfo"}}
      }
    },
    "CodeChangeInfo": {
      "type": "object",
      "required": ["taskId", "oldHash", "newHash", "oldVersion", "newVersion"],
      "properties": {
        "taskId": {"type": "string"},
        "oldHash": {"type": "string"},
        "newHash": {"type": "string"},
        "oldVersion": {"$ref": "#/$defs/positive"},
        "newVersion": {"$ref": "#/$defs/positive"}
      }
    },
    "RegisterServiceResponse": {
      "type": "object",
      "required": ["success", "codeChanges"],
      "properties": {
        "success": {"type": "boolean"},
        "codeChanges": {"type": "array", "items": {"$ref": "#/$defs/CodeChangeInfo"}},
        "orphanedTasks": {"$ref": "#/$defs/stringArray"}
      }
    },
    "TriggerPipelineRequest": {
      "type": "object",
      "properties": {
        "input": {},
        "failureMode": {"$ref": "#/$defs/FailureMode"},
        "priority": {"type": "number"},
        "metadata": {"type": "object"}
      }
    },
    "TriggerPipelineResponse": {
      "type": "object",
      "required": ["pipelineRunId", "status"],
      "properties": {"pipelineRunId": {"type": "string"}, "status": {"type": "string"}}
    },
    "QueueTaskRequest": {
      "type": "object",
      "required": ["taskId"],
      "properties": {"taskId": {"type": "string"}, "input": {}, "priority": {"type": "number"}, "metadata": {"type": "object"}}
    },
    "QueueTaskResponse": {
      "type": "object",
      "required": ["runId", "status", "taskId", "inputPath"],
      "properties": {"runId": {"type": "string"}, "status": {"type": "string"}, "taskId": {"type": "string"}, "inputPath": {"type": "string"}}
    },
    "QueueBatchRequest": {
      "type": "object",
      "required": ["tasks"],
      "properties": {"tasks": {"type": "array", "items": {"$ref": "#/$defs/QueueTaskRequest"}}}
    },
    "QueueBatchResponse": {
      "type": "object",
      "required": ["queued", "results"],
      "properties": {"queued": {"type": "number"}, "results": {"type": "array", "items": {"$ref": "#/$defs/QueueTaskResponse"}}}
    },
    "QueueStatusResponse": {
      "type": "object",
      "required": ["pending", "running", "waiting", "completed", "failed", "dlq", "oldestPending"],
      "properties": {
        "pending": {"type": "number"}, "running": {"type": "number"}, "waiting": {"type": "number"},
        "completed": {"type": "number"}, "failed": {"type": "number"}, "dlq": {"type": "number"},
        "oldestPending": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/date"}]}
      }
    },
    "TaskDispatchPayload": {
      "type": "object",
      "required": ["runId", "taskId", "attempt", "codeVersion", "codeHash", "storageToken", "inputPath",
                   "upstreamRefs", "previousAttempts", "heartbeatIntervalMs"],
      "properties": {
        "runId": {"type": "string"},
        "taskId": {"type": "string"},
        "pipelineRunId": {"type": "string"},
        "attempt": {"$ref": "#/$defs/positive"},
        "codeVersion": {"$ref": "#/$defs/positive"},
        "codeHash": {"type": "string"},
        "storageToken": {"type": "string"},
        "inputPath": {"type": "string"},
        "upstreamRefs": {
          "type": "object",
          "additionalProperties": {
            "type": "object",
            "required": ["outputPath"],
            "properties": {
              "outputPath": {"type": "string"},
              "assets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/AssetMetadata"}}
            }
          }
        },
        "previousAttempts": {"type": "array", "items": {"$ref": "#/$defs/TaskAttempt"}},
        "heartbeatIntervalMs": {"$ref": "#/$defs/positive"}
      }
    },
    "TaskCallbackPayload": {
      "type": "object",
      "required": ["status"],
      "properties": {
        "status": {"enum": ["success", "failed"]},
        "outputPath": {"type": "string"},
        "outputSize": {"$ref": "#/$defs/nonnegative"},
        "assets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/AssetMetadata"}},
        "logsPath": {"type": "string"},
        "selectedNext": {"$ref": "#/$defs/stringArray"},
        "error": {"type": "string"},
        "errorCode": {"type": "string"}
      }
    },
    "HeartbeatRequest": {
      "type": "object",
      "required": ["runId"],
      "properties": {"runId": {"type": "string"}, "progress": {"type": "number", "minimum": 0, "maximum": 100}, "message": {"type": "string"}}
    },
    "HeartbeatResponse": {
      "type": "object",
      "required": ["acknowledged"],
      "properties": {"acknowledged": {"type": "boolean"}, "shouldCancel": {"type": "boolean"}}
    },
    "DLQItem": {
      "type": "object",
      "required": ["id", "taskRunId", "taskId", "codeVersion", "codeHash", "error", "attempts", "failedAt"],
      "properties": {
        "id": {"type": "string"},
        "taskRunId": {"type": "string"},
        "taskId": {"type": "string"},
        "pipelineRunId": {"type": "string"},
        "codeVersion": {"$ref": "#/$defs/positive"},
        "codeHash": {"type": "string"},
        "error": {"type": "string"},
        "attempts": {"$ref": "#/$defs/positive"},
        "failedAt": {"$ref": "#/$defs/date"},
        "input": {}
      }
    },
    "DLQListResponse": {
      "type": "object",
      "required": ["items", "total"],
      "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/DLQItem"}}, "total": {"type": "number"}}
    },
    "DLQRetryResponse": {
      "type": "object",
      "required": ["newRunId", "status", "codeVersion"],
      "properties": {"newRunId": {"type": "string"}, "status": {"type": "string"}, "codeVersion": {"$ref": "#/$defs/positive"}}
    },
    "TaskCodeHistoryResponse": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["codeVersion", "codeHash", "serviceVersion", "recordedAt"],
        "properties": {
          "codeVersion": {"$ref": "#/$defs/positive"},
          "codeHash": {"type": "string"},
          "serviceVersion": {"type": "string"},
          "recordedAt": {"$ref": "#/$defs/date"}
        }
      }
    },
    "DryRunRequest": {"type": "object", "properties": {"input": {}}},
    "DryRunResponse": {
      "type": "object",
      "required": ["valid", "executionPlan"],
      "properties": {
        "valid": {"type": "boolean"},
        "executionPlan": {
          "type": "array",
          "items": {
            "type": "object",
            "required": ["step", "tasks", "type"],
            "properties": {
              "step": {"type": "number"},
              "tasks": {"$ref": "#/$defs/stringArray"},
              "type": {"enum": ["entry", "parallel", "join", "end"]},
              "waitsFor": {"$ref": "#/$defs/stringArray"}
            }
          }
        },
        "warnings": {"$ref": "#/$defs/stringArray"},
        "errors": {"$ref": "#/$defs/stringArray"}
      }
    }
  }
}`

var (
	upstreamOnce     sync.Once
	upstreamCompiler *jsonschema.Compiler
	upstreamMu       sync.Mutex
	upstreamCompiled = map[string]*jsonschema.Schema{}
)

// upstreamSchema compiles the named schema of upstreamSchemas.
func upstreamSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	upstreamOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(upstreamSchemas))
		if err != nil {
			panic(err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		if err := c.AddResource("upstream.json", doc); err != nil {
			panic(err)
		}
		upstreamCompiler = c
	})
	upstreamMu.Lock()
	defer upstreamMu.Unlock()
	if s, ok := upstreamCompiled[name]; ok {
		return s
	}
	s, err := upstreamCompiler.Compile("upstream.json#/$defs/" + name)
	require.NoError(t, err, name)
	upstreamCompiled[name] = s
	return s
}

// requireUpstream fails the test unless body validates against upstream's schema name.
func requireUpstream(t *testing.T, name string, body []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(t, err, "%s: not JSON: %s", name, body)
	require.NoError(t, upstreamSchema(t, name).Validate(v), "%s does not accept:\n%s", name, body)
}

// requireNotUpstream fails the test if body validates against upstream's schema name: it
// shows the translated schemas are strict enough to catch what issue 9 fixed.
func requireNotUpstream(t *testing.T, name, body string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	require.NoError(t, err)
	require.Error(t, upstreamSchema(t, name).Validate(v), "%s accepts %s", name, body)
}

// The hand-written schemas refuse the shapes this project answered before issue 9.
func TestUpstreamSchemasRefuseTheOldShapes(t *testing.T) {
	t.Parallel()
	requireNotUpstream(t, "TaskDispatchPayload", `{"runId":"trun_1","taskId":"a","attempt":1,"codeVersion":1,"codeHash":"h",
		"storageToken":"t","inputPath":"standalone/trun_1/input.json","previousAttempts":[],"heartbeatIntervalMs":60000}`)
	requireNotUpstream(t, "TaskDispatchPayload", `{"runId":"trun_1","taskId":"a","attempt":1,"codeVersion":1,"codeHash":"h",
		"storageToken":"t","inputPath":"p","upstreamRefs":{"x":{"outputPath":"o","assets":{"k":{"path":"p"}}}},"previousAttempts":[],"heartbeatIntervalMs":60000}`)
	requireNotUpstream(t, "DLQListResponse", `{"items":[{"id":"dlq_1","taskRunId":"trun_1","taskId":"a","codeVersion":1,"codeHash":"h",
		"error":"e","attempts":[{"attempt":1,"error":"e","timestamp":"2026-12-02T06:00:00Z"}],"failedAt":"2026-12-02T06:00:00Z"}],"total":1}`)
	requireNotUpstream(t, "DLQListResponse", `{"items":[]}`)
	requireNotUpstream(t, "DLQItem", `{"id":"dlq_1","taskRunId":"trun_1","taskId":"a","pipelineRunId":null,"codeVersion":1,"codeHash":"h",
		"error":"e","attempts":1,"failedAt":"2026-12-02T06:00:00Z"}`)
	requireNotUpstream(t, "DLQRetryResponse", `{"runId":"trun_1","status":"queued","taskId":"a","inputPath":"p"}`)
	requireNotUpstream(t, "RegisterServiceResponse", `{"success":true,"codeChanges":[],"orphanedTasks":null}`)
	requireNotUpstream(t, "DryRunResponse", `{"valid":true,"executionPlan":[],"warnings":null}`)
}

// shapes drives one orchestrator as upstream's clients and Node.js SDK workers would, and checks
// every request and answer against upstream's schemas.
type shapes struct {
	*env
	w      *worker
	compat bool
}

// workerCall posts a worker call as the worker would: with the run token, or in compat mode
// with no Authorization header at all (the Node.js SDK sends none).
func (s *shapes) workerCall(path string, d protocol.DispatchRequest, body string) response {
	s.t.Helper()
	tok := d.StorageToken
	if s.compat {
		tok = ""
	}
	return s.do("POST", path, body, tok)
}

// dispatch waits for the dispatch of run's attempt and returns it with its raw body, which it
// checks against upstream's TaskDispatchPayload.
func (s *shapes) dispatch(runID string, attempt int) (protocol.DispatchRequest, []byte) {
	s.t.Helper()
	var d protocol.DispatchRequest
	var raw []byte
	s.waitFor(fmt.Sprintf("dispatch of %s attempt %d", runID, attempt), func() bool {
		dispatches, bodies := s.w.Dispatches(), s.w.Bodies() // bodies has at least as many
		for i, x := range dispatches {
			if x.RunID == runID && x.Attempt == attempt {
				d, raw = x, bodies[i]
			}
		}
		if raw == nil {
			_, _ = s.orch.Process(s.t.Context())
		}
		return raw != nil
	})
	requireUpstream(s.t, "TaskDispatchPayload", raw)
	return d, raw
}

// taskRunOf returns the id of the task run of taskID in pipeline run prun.
func (s *shapes) taskRunOf(prun, taskID string) string {
	s.t.Helper()
	var id string
	s.waitMoved("task run of "+taskID, func() bool {
		var run struct {
			Tasks []struct {
				ID     string `json:"id"`
				TaskID string `json:"taskId"`
			} `json:"tasks"`
		}
		s.do("GET", "/api/runs/"+prun, nil, "").json(s.t, &run)
		for _, x := range run.Tasks {
			if x.TaskID == taskID {
				id = x.ID
			}
		}
		return id != ""
	})
	return id
}

// An upstream SDK's registration body: every task field, as @pipeweave/sdk 1.1.0 sends it.
func sdkTask(id, hash string, allowedNext ...string) map[string]any {
	if allowedNext == nil {
		allowedNext = []string{}
	}
	return map[string]any{"id": id, "codeHash": hash, "allowedNext": allowedNext, "timeout": 300, "retries": 3,
		"retryBackoff": "exponential", "retryDelayMs": 1000, "maxRetryDelayMs": 86400000, "heartbeatIntervalMs": 60000,
		"concurrency": 0, "priority": 100, "idempotencyTTL": 86400, "description": "task " + id}
}

// TestUpstreamShapes pins every request and answer of upstream's published schemas against a
// real orchestrator over HTTP, and every dispatch a real worker server receives: an entry task
// with no predecessors, a join with predecessors and assets, a retry with previousAttempts. It
// runs in the default mode and in node-sdk-v1 compat mode (no tokens, as the Node.js SDK).
func TestUpstreamShapes(t *testing.T) {
	t.Parallel()
	for _, compat := range []bool{false, true} {
		t.Run(fmt.Sprintf("compat=%t", compat), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *core.Config) {
				if compat {
					c.Compat = core.CompatNodeSDKv1
				}
			})
			s := &shapes{env: e, w: newWorker(t, e.url), compat: compat}
			testUpstreamShapes(t, s)
		})
	}
}

func testUpstreamShapes(t *testing.T, s *shapes) {
	register := func(body map[string]any) []byte {
		t.Helper()
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		requireUpstream(t, "RegisterServiceRequest", raw)
		tok := ""
		if !s.compat {
			tok = s.regToken(body["serviceId"].(string), raw)
		}
		r := s.do("POST", "/api/register", raw, tok)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		requireUpstream(t, "RegisterServiceResponse", r.Body)
		return r.Body
	}

	// Registration as the SDK sends it, inputSchema included; then a changed hash and an
	// orphaned task.
	entry := sdkTask("entry", "h-entry", "left", "right")
	entry["inputSchema"] = map[string]any{"fields": []any{map[string]any{"name": "title", "type": "string", "label": "Title"}}}
	docs := map[string]any{"serviceId": "docs", "version": "1.0.0", "baseUrl": s.w.URL(), "tasks": []any{
		entry, sdkTask("left", "h-left", "join"), sdkTask("right", "h-right", "join"), sdkTask("join", "h-join-1")}}
	register(docs)
	join2 := sdkTask("join", "h-join-2")
	join2["retries"] = 0
	docs["tasks"].([]any)[3] = join2
	var changed protocol.RegisterResponse
	require.NoError(t, json.Unmarshal(register(docs), &changed))
	require.Equal(t, []protocol.CodeChange{{TaskID: "join", OldHash: "h-join-1", NewHash: "h-join-2", OldVersion: 1, NewVersion: 2}}, changed.CodeChanges)
	flaky := sdkTask("flaky", "h-flaky")
	flaky["retries"], flaky["retryBackoff"], flaky["retryDelayMs"] = 1, "fixed", 1
	register(map[string]any{"serviceId": "solo", "version": "1", "baseUrl": s.w.URL(), "tasks": []any{flaky, sdkTask("gone", "h-gone")}})
	var orphaned protocol.RegisterResponse
	require.NoError(t, json.Unmarshal(register(map[string]any{"serviceId": "solo", "version": "2", "baseUrl": s.w.URL(), "tasks": []any{flaky}}), &orphaned))
	require.Equal(t, []string{"gone"}, orphaned.OrphanedTasks)

	// Code history.
	r := s.do("GET", "/api/tasks/join/history", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	requireUpstream(t, "TaskCodeHistoryResponse", r.Body)

	// Dry run: with upstream's {input} body, with none, and bad bodies.
	for _, body := range []any{`{"input":{"title":"x"}}`, `{}`, nil} {
		if b, ok := body.(string); ok {
			requireUpstream(t, "DryRunRequest", []byte(b))
		}
		r := s.do("POST", "/api/pipelines/docs/dry-run", body, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		requireUpstream(t, "DryRunResponse", r.Body)
	}
	for _, bad := range []string{`[1]`, `{"input":`, `"x"`} {
		r := s.do("POST", "/api/pipelines/docs/dry-run", bad, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", bad, r.Body)
		r.errorBody(t)
	}

	// Trigger with every field of upstream's request.
	trigger := `{"input":{"title":"A document"},"failureMode":"continue","priority":5,"metadata":{"by":"shapes"}}`
	requireUpstream(t, "TriggerPipelineRequest", []byte(trigger))
	r = s.do("POST", "/api/pipelines/docs/trigger", trigger, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	requireUpstream(t, "TriggerPipelineResponse", r.Body)
	var trig protocol.TriggerResult
	r.json(t, &trig)
	require.Equal(t, []string{"entry"}, trig.EntryTasks)
	require.Equal(t, []string{s.taskRunOf(trig.PipelineRunID, "entry")}, trig.QueuedTasks)
	require.NotEmpty(t, trig.InputPath)

	// The entry task: no predecessors, upstreamRefs is {}.
	d, raw := s.dispatch(trig.QueuedTasks[0], 1)
	require.Contains(t, string(raw), `"upstreamRefs":{}`)
	require.Equal(t, trig.PipelineRunID, d.PipelineRunID)

	// A heartbeat as upstream's request, and its answer.
	hb := fmt.Sprintf(`{"runId":%q,"progress":50,"message":"half"}`, d.RunID)
	requireUpstream(t, "HeartbeatRequest", []byte(hb))
	r = s.workerCall("/api/heartbeat", d, hb)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	requireUpstream(t, "HeartbeatResponse", r.Body)

	// Upstream's success callback with a complete asset.
	cb := fmt.Sprintf(`{"status":"success","outputPath":"runs/%[1]s/output.json","outputSize":12,
		"assets":{"pdf":{"path":"runs/%[1]s/assets/pdf","size":50000,"type":"binary"}},"logsPath":"runs/%[1]s/logs.jsonl",
		"selectedNext":["left","right"]}`, d.RunID)
	requireUpstream(t, "TaskCallbackPayload", []byte(cb))
	r = s.workerCall("/api/callback/"+d.RunID, d, cb)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	// The two branches get the entry's output and asset. Left reports an asset without size or
	// type (our Go SDK and older workers may): the join must still get a complete AssetMetadata.
	left, _ := s.dispatch(s.taskRunOf(trig.PipelineRunID, "left"), 1)
	right, _ := s.dispatch(s.taskRunOf(trig.PipelineRunID, "right"), 1)
	require.Equal(t, protocol.Asset{Path: "runs/" + d.RunID + "/assets/pdf", Size: 50000, Type: "binary"}, left.UpstreamRefs["entry"].Assets["pdf"])
	r = s.workerCall("/api/callback/"+left.RunID, left, fmt.Sprintf(`{"status":"success","outputPath":"runs/%[1]s/output.json",
		"assets":{"raw":{"path":"runs/%[1]s/assets/raw"}}}`, left.RunID))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = s.workerCall("/api/callback/"+right.RunID, right, `{"status":"success"}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	// The join: upstreamRefs of both predecessors, with assets; outputPath a string even when
	// the predecessor reported none.
	join, raw := s.dispatch(s.taskRunOf(trig.PipelineRunID, "join"), 1)
	require.Equal(t, map[string]protocol.UpstreamRef{
		"left":  {OutputPath: "runs/" + left.RunID + "/output.json", Assets: map[string]protocol.Asset{"raw": {Path: "runs/" + left.RunID + "/assets/raw", Size: 0, Type: "binary"}}},
		"right": {OutputPath: ""},
	}, join.UpstreamRefs)
	require.Contains(t, string(raw), `"right":{"outputPath":""}`)
	require.Equal(t, 2, join.CodeVersion)

	// Queue a task and a batch as upstream's requests; then status.
	small := `{"taskId":"flaky","input":{"doc":"small"},"priority":3,"metadata":{"k":"v"}}`
	requireUpstream(t, "QueueTaskRequest", []byte(small))
	r = s.do("POST", "/api/queue/task", small, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	requireUpstream(t, "QueueTaskResponse", r.Body)
	var smallRun protocol.EnqueueResult
	r.json(t, &smallRun)
	batch := fmt.Sprintf(`{"tasks":[{"taskId":"flaky","input":{"blob":%q}}]}`, strings.Repeat("x", protocol.DLQInputInlineMax))
	requireUpstream(t, "QueueBatchRequest", []byte(batch))
	r = s.do("POST", "/api/queue/batch", batch, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	requireUpstream(t, "QueueBatchResponse", r.Body)
	var bigRun struct {
		Results []protocol.EnqueueResult `json:"results"`
	}
	r.json(t, &bigRun)
	r = s.do("GET", "/api/queue/status", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	requireUpstream(t, "QueueStatusResponse", r.Body)

	// A retry: attempt 2 carries attempt 1 in previousAttempts, its error a string even when
	// the worker's failure callback named none (upstream's error is optional).
	for _, id := range []string{smallRun.RunID, bigRun.Results[0].RunID} {
		first, _ := s.dispatch(id, 1)
		r = s.workerCall("/api/callback/"+id, first, `{"status":"failed"}`)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		second, _ := s.dispatch(id, 2)
		require.Len(t, second.PreviousAttempts, 1)
		require.Equal(t, 1, second.PreviousAttempts[0].Attempt)
		require.NotEmpty(t, second.PreviousAttempts[0].Error)
		r = s.workerCall("/api/callback/"+id, second, `{"status":"failed","error":"still broken","errorCode":"BROKEN"}`)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	}

	// The DLQ: attempts a count, total, the small input inline, the big one left out.
	r = s.do("GET", "/api/dlq", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	requireUpstream(t, "DLQListResponse", r.Body)
	var page struct {
		Items []map[string]json.RawMessage `json:"items"`
		Total int                          `json:"total"`
	}
	r.json(t, &page)
	require.Equal(t, 2, page.Total)
	byRun := map[string]map[string]json.RawMessage{}
	for _, it := range page.Items {
		var run string
		require.NoError(t, json.Unmarshal(it["taskRunId"], &run))
		byRun[run] = it
		require.JSONEq(t, `2`, string(it["attempts"]))
		require.NotContains(t, it, "pipelineRunId")
		var history []protocol.Attempt
		require.NoError(t, json.Unmarshal(it["attemptHistory"], &history))
		require.Len(t, history, 2)
	}
	require.JSONEq(t, `{"doc":"small"}`, string(byRun[smallRun.RunID]["input"]))
	require.NotContains(t, byRun[bigRun.Results[0].RunID], "input")
	r = s.do("GET", "/api/dlq?taskId=flaky&limit=1", nil, "")
	requireUpstream(t, "DLQListResponse", r.Body)
	r.json(t, &page)
	require.Len(t, page.Items, 1)
	require.Equal(t, 2, page.Total)
	r = s.do("GET", "/api/dlq?taskId=nothing", nil, "")
	requireUpstream(t, "DLQListResponse", r.Body)
	require.JSONEq(t, `{"items":[],"total":0}`, string(r.Body))

	// A DLQ retry: newRunId, status, codeVersion (and our runId, taskId, inputPath).
	var dlqID string
	require.NoError(t, json.Unmarshal(byRun[smallRun.RunID]["id"], &dlqID))
	r = s.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	requireUpstream(t, "DLQRetryResponse", r.Body)
	var retried protocol.DLQRetryResult
	r.json(t, &retried)
	require.Equal(t, retried.NewRunID, retried.RunID)
	require.Equal(t, "flaky", retried.TaskID)
	require.Equal(t, 1, retried.CodeVersion)

	// A DLQ entry of a pipeline run: pipelineRunId present; its retry answers the code version
	// of the new run in that pipeline run.
	jr := s.workerCall("/api/callback/"+join.RunID, join, `{"status":"failed","error":"join failed"}`)
	require.Equal(t, http.StatusOK, jr.Status, string(jr.Body))
	var joinEntry protocol.DLQEntry
	s.waitMoved("join in the DLQ", func() bool {
		var p protocol.DLQPage
		r := s.do("GET", "/api/dlq?taskId=join", nil, "")
		requireUpstream(t, "DLQListResponse", r.Body)
		r.json(t, &p)
		if len(p.Items) == 1 {
			joinEntry = p.Items[0]
		}
		return len(p.Items) == 1
	})
	require.Equal(t, trig.PipelineRunID, joinEntry.PipelineRunID)
	require.JSONEq(t, `{"title":"A document"}`, string(joinEntry.Input))
	r = s.do("POST", "/api/dlq/"+joinEntry.ID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	requireUpstream(t, "DLQRetryResponse", r.Body)
	r.json(t, &retried)
	require.Equal(t, 2, retried.CodeVersion)
	retryJoin, _ := s.dispatch(retried.NewRunID, 1)
	require.Len(t, retryJoin.UpstreamRefs, 2)

	// One DLQ entry by id has the same item shape.
	r = s.do("GET", "/api/dlq/"+joinEntry.ID, nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	requireUpstream(t, "DLQItem", r.Body)
}
