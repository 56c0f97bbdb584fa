package core_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// postRaw sends a worker call whose body is exactly raw (json.Marshal would repair invalid
// UTF-8).
func postRaw(t *testing.T, url string, raw []byte, tok string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// Hostile input (issue 10, finding 6): NUL, invalid UTF-8, unpaired surrogates, numbers out of
// a column's or a double's range, malformed ids and cursors. Each is a 400 naming the field
// (or a 404 for a well-formed unknown id), never a 500; nothing is written; the server keeps
// serving.
func TestHostileInputIsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	reg := "sign the body" // replaced by a token bound to each case's body
	regBody := func(taskJSON string) string {
		return `{"serviceId":"svc2","version":"1","baseUrl":"` + w.URL() + `","tasks":[` + taskJSON + `]}`
	}
	huge := "2147483648"
	cases := []struct {
		name, method, path, body, bearer string
		status                           int
		code, field                      string
	}{
		{"NUL in metadata", "POST", "/api/queue/task", `{"taskId":"t","input":{},"metadata":{"s":"a\u0000b"}}`, "", 400, "INVALID_TEXT", "metadata.s"},
		{"NUL in a metadata key", "POST", "/api/queue/task", `{"taskId":"t","metadata":{"a\u0000":1}}`, "", 400, "INVALID_TEXT", "metadata"},
		{"NUL in input", "POST", "/api/queue/task", `{"taskId":"t","input":{"x":["ok","\u0000"]}}`, "", 400, "INVALID_TEXT", "input.x[1]"},
		{"invalid UTF-8 in metadata", "POST", "/api/queue/task", "{\"taskId\":\"t\",\"metadata\":{\"s\":\"\xff\xfe\"}}", "", 400, "INVALID_TEXT", "metadata.s"},
		{"invalid UTF-8 in input", "POST", "/api/queue/task", "{\"taskId\":\"t\",\"input\":\"\xc3\"}", "", 400, "INVALID_TEXT", "input"},
		{"lone high surrogate", "POST", "/api/queue/task", `{"taskId":"t","metadata":{"s":"\ud800"}}`, "", 400, "INVALID_TEXT", "metadata.s"},
		{"lone low surrogate", "POST", "/api/queue/task", `{"taskId":"t","metadata":{"s":"x\udc00y"}}`, "", 400, "INVALID_TEXT", "metadata.s"},
		{"huge number in metadata", "POST", "/api/queue/task", `{"taskId":"t","metadata":{"n":1e999999}}`, "", 400, "INVALID_NUMBER", "metadata.n"},
		{"tiny number in metadata", "POST", "/api/queue/task", `{"taskId":"t","metadata":{"n":-1e-999999}}`, "", 400, "INVALID_NUMBER", "metadata.n"},
		{"huge number in input", "POST", "/api/queue/task", `{"taskId":"t","input":[1,2,1E400]}`, "", 400, "INVALID_NUMBER", "input[2]"},
		{"long digit run", "POST", "/api/queue/task", `{"taskId":"t","input":` + strings.Repeat("9", 400) + `}`, "", 400, "INVALID_NUMBER", "input"},
		{"priority past int4", "POST", "/api/queue/task", `{"taskId":"t","priority":` + huge + `}`, "", 400, "INVALID_NUMBER", ""},
		{"NUL in idempotency key", "POST", "/api/queue/task", `{"taskId":"t","idempotencyKey":"k\u0000"}`, "", 400, "INVALID_TEXT", "idempotencyKey"},
		{"NUL in taskId", "POST", "/api/queue/task", `{"taskId":"t\u0000"}`, "", 400, "INVALID_TEXT", "taskId"},
		{"NUL in a batch", "POST", "/api/queue/batch", `{"tasks":[{"taskId":"t"},{"taskId":"t","metadata":{"s":"\u0000"}}]}`, "", 400, "INVALID_TEXT", "tasks[1].metadata.s"},
		{"priority past int4 in a batch", "POST", "/api/queue/batch", `{"tasks":[{"taskId":"t"},{"taskId":"t","priority":` + huge + `}]}`, "", 400, "INVALID_NUMBER", ""},
		{"NUL in a run id", "GET", "/api/task-runs/%00", "", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a run id", "GET", "/api/task-runs/%ff", "", "", 400, "INVALID_TEXT", "path"},
		{"unknown well-formed run id", "GET", "/api/task-runs/trun_01jbx9k3m4n5p6q7r8s9t0v1w2", "", "", 404, "RUN_NOT_FOUND", ""},
		{"NUL in a run id to cancel", "POST", "/api/task-runs/%00/cancel", "{}", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a task id to pause", "POST", "/api/tasks/%ff/pause", "{}", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a pipeline id to resume", "POST", "/api/pipelines/a%00/resume", "{}", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a schedule id", "GET", "/api/schedules/%00", "", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a schedule id to delete", "DELETE", "/api/schedules/%ff", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a cron expression", "PUT", "/api/schedules/s", `{"cron":"0 * * * *\u0000","taskId":"t"}`, "", 400, "INVALID_TEXT", "cron"},
		{"invalid UTF-8 in a schedule's input", "PUT", "/api/schedules/s", "{\"cron\":\"0 * * * *\",\"taskId\":\"t\",\"input\":{\"s\":\"\xff\"}}", "", 400, "INVALID_TEXT", "input.s"},
		{"NUL in a webhook id", "PUT", "/api/webhooks/h%00", `{"url":"http://127.0.0.1:9/","events":["dlq.added"]}`, "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a webhook id", "GET", "/api/webhooks/%ff", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a webhook url", "PUT", "/api/webhooks/h", `{"url":"http://127.0.0.1:9/\u0000","events":["dlq.added"]}`, "", 400, "INVALID_TEXT", "url"},
		{"invalid UTF-8 in a webhook event", "PUT", "/api/webhooks/h", "{\"url\":\"http://127.0.0.1:9/\",\"events\":[\"\xff\"]}", "", 400, "INVALID_TEXT", "events[0]"},
		{"NUL in a delivery id to resend", "POST", "/api/webhooks/h/deliveries/msg_%00/resend", "{}", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a delivery filter", "GET", "/api/webhooks/h/deliveries?status=%ff", "", "", 400, "INVALID_TEXT", "query parameter status"},
		{"garbage delivery cursor", "GET", "/api/webhooks/h/deliveries?cursor=%27%3B--", "", "", 400, "INVALID_CURSOR", ""},
		{"invalid UTF-8 in a DLQ filter", "GET", "/api/dlq?taskId=%ff", "", "", 400, "INVALID_TEXT", "query parameter taskId"},
		{"NUL in a DLQ filter", "GET", "/api/dlq?pipelineId=%00", "", "", 400, "INVALID_TEXT", "query parameter pipelineId"},
		{"NUL in a queue filter", "GET", "/api/queue/items?taskId=a%00", "", "", 400, "INVALID_TEXT", "query parameter taskId"},
		{"NUL in a DLQ id", "GET", "/api/dlq/%00", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a DLQ retry", "POST", "/api/dlq/x%00/retry", "", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a pipeline run id", "GET", "/api/runs/%c3", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a pipeline id", "GET", "/api/pipelines/%00", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a cancel", "POST", "/api/runs/prun_%00/cancel", "", "", 400, "INVALID_TEXT", "path"},
		{"NUL in a task history", "GET", "/api/tasks/%00/history", "", "", 400, "INVALID_TEXT", "path"},
		{"garbage queue cursor", "GET", "/api/queue/items?cursor=garbage", "", "", 400, "INVALID_CURSOR", ""},
		{"garbage DLQ cursor", "GET", "/api/dlq?cursor=%27%3B--", "", "", 400, "INVALID_CURSOR", ""},
		{"garbage runs cursor", "GET", "/api/runs?cursor=zzz", "", "", 400, "INVALID_CURSOR", ""},
		{"bad items flag on a pipeline run", "GET", "/api/runs/prun_x?items=maybe", "", "", 400, "INVALID_ITEMS", ""},
		{"NUL in a map node's task id", "GET", "/api/runs/prun_x/maps/t%00/items", "", "", 400, "INVALID_TEXT", "path"},
		{"garbage map items cursor", "GET", "/api/runs/prun_x/maps/t/items?cursor=%27%3B--", "", "", 400, "INVALID_CURSOR", ""},
		{"negative map items cursor", "GET", "/api/runs/prun_x/maps/t/items?cursor=-1", "", "", 400, "INVALID_CURSOR", ""},
		{"map items limit past the page size", "GET", "/api/runs/prun_x/maps/t/items?limit=501", "", "", 400, "INVALID_LIMIT", ""},
		{"bad map items status", "GET", "/api/runs/prun_x/maps/t/items?status=done", "", "", 400, "INVALID_STATUS", ""},
		{"unknown run's map items", "GET", "/api/runs/prun_01jbx9k3m4n5p6q7r8s9t0v1w2/maps/t/items", "", "", 404, "PIPELINE_RUN_NOT_FOUND", ""},
		{"storage key too long for the disk", "GET", "/api/storage/" + strings.Repeat("a", 300), "", "", 400, "INVALID_PATH", ""},
		{"trigger priority past int4", "POST", "/api/pipelines/t/trigger", `{"input":{},"priority":` + huge + `}`, "", 400, "INVALID_NUMBER", ""},
		{"NUL in trigger metadata", "POST", "/api/pipelines/t/trigger", `{"input":{},"metadata":{"m":"\u0000"}}`, "", 400, "INVALID_TEXT", "metadata.m"},
		{"NUL in trigger input", "POST", "/api/pipelines/t/trigger", `{"input":"\u0000"}`, "", 400, "INVALID_TEXT", "input"},
		{"NUL in a pipeline description", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"description":"d\u0000"}`, "", 400, "INVALID_TEXT", "description"},
		{"trigger timeout past 30 days", "POST", "/api/pipelines/t/trigger", `{"input":{},"timeoutMs":2592000001}`, "", 400, "INVALID_TIMEOUT", "timeoutMs"},
		{"fractional trigger timeout", "POST", "/api/pipelines/t/trigger", `{"input":{},"timeoutMs":0.5}`, "", 400, "INVALID_TIMEOUT", "timeoutMs"},
		{"huge trigger timeout", "POST", "/api/pipelines/t/trigger", `{"input":{},"timeoutMs":1e999}`, "", 400, "INVALID_NUMBER", ""},
		{"pipeline timeout of zero", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"timeoutMs":0}`, "", 400, "INVALID_TIMEOUT", "timeoutMs"},
		{"pipeline timeout a string", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"timeoutMs":"1h"}`, "", 400, "INVALID_TIMEOUT", "timeoutMs"},
		{"fractional map maxConcurrency", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"nodes":{"o":{"map":{"over":"t","items":"/x","maxConcurrency":1.5}}}}`, "", 400, "MAP_MAX_CONCURRENCY_INVALID", "nodes.map.maxConcurrency"},
		{"map maxConcurrency past int4", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"nodes":{"o":{"map":{"over":"t","items":"/x","maxConcurrency":` + huge + `}}}}`, "", 400, "MAP_MAX_CONCURRENCY_INVALID", "nodes.o.map.maxConcurrency"},
		{"map maxItems a string", "PUT", "/api/pipelines/p", `{"entryTasks":["t"],"nodes":{"o":{"map":{"over":"t","items":"/x","maxItems":"9"}}}}`, "", 400, "MAP_MAX_ITEMS_INVALID", "nodes.map.maxItems"},
		{"NUL in a retry-all filter", "POST", "/api/dlq/retry-all", `{"taskId":"\u0000"}`, "", 400, "INVALID_TEXT", "taskId"},
		{"registration timeout past int4", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","timeout":` + huge + `}`), reg, 400, "INVALID_NUMBER", "tasks[0].timeout"},
		{"registration retries past int4", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","retries":` + huge + `}`), reg, 400, "INVALID_NUMBER", "tasks[0].retries"},
		{"registration concurrency past int4", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","concurrency":` + huge + `}`), reg, 400, "INVALID_NUMBER", "tasks[0].concurrency"},
		{"registration priority past int4", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","priority":` + huge + `}`), reg, 400, "INVALID_NUMBER", "tasks[0].priority"},
		{"registration idempotency TTL past int4", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","idempotencyTTL":` + huge + `}`), reg, 400, "INVALID_NUMBER", "tasks[0].idempotencyTTL"},
		{"registration heartbeat interval past a year", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","heartbeatIntervalMs":4611686018427387904}`), reg, 400, "INVALID_NUMBER", "tasks[0].heartbeatIntervalMs"},
		{"registration retry delay past a year", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","retryDelayMs":4611686018427387904}`), reg, 400, "INVALID_NUMBER", "tasks[0].retryDelayMs"},
		{"registration max retry delay past a year", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","maxRetryDelayMs":4611686018427387904}`), reg, 400, "INVALID_NUMBER", "tasks[0].maxRetryDelayMs"},
		{"NUL in a registration description", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","description":"\u0000"}`), reg, 400, "INVALID_TEXT", "tasks[0].description"},
		{"invalid UTF-8 in a code hash", "POST", "/api/register", regBody("{\"id\":\"u\",\"codeHash\":\"\xff\"}"), reg, 400, "INVALID_TEXT", "tasks[0].codeHash"},
		{"NUL in a rate limit key", "GET", "/api/rate-limits/k%00", "", "", 400, "INVALID_TEXT", "path"},
		{"invalid UTF-8 in a rate limit key to put", "PUT", "/api/rate-limits/%ff", `{"limit":1,"periodMs":1000}`, "", 400, "INVALID_TEXT", "path"},
		{"NUL in a rate limit key to delete", "DELETE", "/api/rate-limits/%00", "", "", 400, "INVALID_TEXT", "path"},
		{"rate limit key with a space", "PUT", "/api/rate-limits/a%20b", `{"limit":1,"periodMs":1000}`, "", 400, "INVALID_RATE_LIMIT_KEY", "key"},
		{"rate limit past int4", "PUT", "/api/rate-limits/k", `{"limit":` + huge + `,"periodMs":1000}`, "", 400, "INVALID_RATE_LIMIT", "limit"},
		{"rate limit of zero", "PUT", "/api/rate-limits/k", `{"limit":0,"periodMs":1000}`, "", 400, "INVALID_RATE_LIMIT", "limit"},
		{"rate limit without a limit", "PUT", "/api/rate-limits/k", `{"periodMs":1000}`, "", 400, "INVALID_RATE_LIMIT", "limit"},
		{"rate limit with a negative period", "PUT", "/api/rate-limits/k", `{"limit":1,"periodMs":-1}`, "", 400, "INVALID_RATE_LIMIT_PERIOD", "periodMs"},
		{"rate limit with a period past a day", "PUT", "/api/rate-limits/k", `{"limit":1,"periodMs":86400001}`, "", 400, "INVALID_RATE_LIMIT_PERIOD", "periodMs"},
		{"rate limit with a huge period", "PUT", "/api/rate-limits/k", `{"limit":1,"periodMs":1e30}`, "", 400, "INVALID_FIELD", ""},
		{"unknown rate limit", "GET", "/api/rate-limits/nope", "", "", 404, "RATE_LIMIT_NOT_FOUND", ""},
		{"unknown rate limit to delete", "DELETE", "/api/rate-limits/nope", "", "", 404, "RATE_LIMIT_NOT_FOUND", ""},
		{"registration rate limit of zero", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","rateLimit":{"limit":0,"periodMs":1000}}`), reg, 400, "INVALID_RATE_LIMIT", "tasks[0].rateLimit.limit"},
		{"registration rate limit with no period", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","rateLimit":{"limit":5}}`), reg, 400, "INVALID_RATE_LIMIT_PERIOD", "tasks[0].rateLimit.periodMs"},
		{"registration of an unknown rate limit key", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","rateLimitKey":"nope"}`), reg, 400, "UNKNOWN_RATE_LIMIT_KEY", "tasks[0].rateLimitKey"},
		{"registration concurrency key not a pointer", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","concurrencyKey":"customerId","concurrencyPerKey":1}`), reg, 400, "INVALID_CONCURRENCY_KEY", "tasks[0].concurrencyKey"},
		{"registration concurrency per key of zero", "POST", "/api/register", regBody(`{"id":"u","codeHash":"h","concurrencyKey":"/c","concurrencyPerKey":0}`), reg, 400, "INVALID_CONCURRENCY_PER_KEY", "tasks[0].concurrencyPerKey"},
		{"registration pipeline timeout negative", "POST", "/api/register", `{"serviceId":"svc2","version":"1","baseUrl":"` + w.URL() + `","tasks":[],"pipelines":[{"id":"q","entryTasks":["t"],"timeoutMs":-5}]}`, reg, 400, "INVALID_TIMEOUT", "pipelines[0].timeoutMs"},
		{"NUL in a registration version", "POST", "/api/register", `{"serviceId":"svc2","version":"1\u0000","baseUrl":"` + w.URL() + `","tasks":[]}`, reg, 400, "INVALID_TEXT", "version"},
	}
	for _, c := range cases {
		var body any
		if c.body != "" {
			body = c.body
		}
		bearer := c.bearer
		if bearer == reg {
			bearer = e.regToken("svc2", []byte(c.body))
		}
		r := e.do(c.method, c.path, body, bearer)
		require.Equal(t, c.status, r.Status, "%s: %s", c.name, r.Body)
		b := r.errorBody(t)
		require.Equal(t, c.code, b.Code, "%s: %s", c.name, r.Body)
		if c.field != "" {
			require.Equal(t, map[string]any{"field": c.field}, b.Details, "%s: %s", c.name, r.Body)
		}
	}
	require.Zero(t, e.count("SELECT count(*) FROM pipelines WHERE NOT implicit"), "no pipeline was stored")
	for _, table := range []string{"task_runs", "pipeline_runs", "dlq", "idempotency_keys", "temp_uploads", "schedules", "webhooks", "webhook_deliveries", "rate_limits"} {
		require.Zero(t, e.count("SELECT count(*) FROM "+table), "nothing written to %s", table)
	}
	require.Equal(t, 1, e.count("SELECT count(*) FROM services"), "svc2 was not registered")
	require.Equal(t, 1, e.count("SELECT count(*) FROM tasks"))
	require.Zero(t, countFiles(t, e.storageDir), "no input was stored")
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
	e.enqueue(map[string]any{"taskId": "t", "metadata": map[string]any{"s": "ok \\u0000 as text"}, "priority": 2147483647})
	// A well-formed cursor still pages.
	r := e.do("GET", "/api/queue/items?cursor=trun_01jbx9k3m4n5p6q7r8s9t0v1w2", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

// A worker call with a value PostgreSQL refuses (a NUL in the error, the heartbeat message or
// an asset path; invalid UTF-8) gets 400 and leaves the attempt as it was: the worker can
// still heartbeat and complete it with a correct call.
func TestWorkerCallWithBadTextLeavesTheRunUsable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t", withRetries(0, 0)))
	id := e.enqueue(map[string]any{"taskId": "t"}).RunID
	w.waitDispatches(1)
	d := w.all()[0]
	cb := e.url + "/api/callback/" + id
	bad := []struct {
		name, url, body, code string
	}{
		{"NUL in a failure's error", cb, `{"status":"failed","error":"bad\u0000"}`, "INVALID_TEXT"},
		{"NUL in an error code", cb, `{"status":"failed","error":"bad","errorCode":"E\u0000"}`, "INVALID_TEXT"},
		{"invalid UTF-8 in an error", cb, "{\"status\":\"failed\",\"error\":\"bad \xff\"}", "INVALID_TEXT"},
		{"NUL in an asset path", cb, `{"status":"success","outputPath":"` + protocol.OutputPath(id) + `","assets":{"a":{"path":"x\u0000","size":1,"type":"binary"}}}`, "INVALID_TEXT"},
		{"NUL in an asset name", cb, `{"status":"success","assets":{"a\u0000":{"path":"x","size":1,"type":"binary"}}}`, "INVALID_TEXT"},
		{"NUL in an output path", cb, `{"status":"success","outputPath":"runs/\u0000"}`, "INVALID_TEXT"},
		{"NUL in a heartbeat message", e.url + "/api/heartbeat", `{"runId":"` + id + `","progress":5,"message":"m\u0000"}`, "INVALID_TEXT"},
		{"invalid UTF-8 in a heartbeat message", e.url + "/api/progress", "{\"runId\":\"" + id + "\",\"message\":\"\xc0\xaf\"}", "INVALID_TEXT"},
		{"huge progress", e.url + "/api/heartbeat", `{"runId":"` + id + `","progress":1e999}`, "INVALID_NUMBER"},
	}
	for _, c := range bad {
		status, out := postRaw(t, c.url, []byte(c.body), d.StorageToken)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.name, out)
		require.Contains(t, string(out), `"code":"`+c.code+`"`, c.name)
		r := e.run(id)
		require.Equal(t, protocol.StatusRunning, r.Status, c.name)
		require.Empty(t, r.PreviousAttempts, c.name)
	}
	require.Zero(t, e.count("SELECT count(*) FROM dlq"))
	status, hb := w.heartbeat(d, ptr(50), "fine")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.Acknowledged)
	status, out := w.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, string(out))
	require.Equal(t, protocol.StatusCompleted, e.run(id).Status)
}

// rawRequest sends head (a request line and headers, without the blank line) and body over
// one connection, closes the writing side and returns the response.
func rawRequest(t *testing.T, base, head, body string) *http.Response {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = io.WriteString(conn, head+"\r\nHost: "+u.Host+"\r\nConnection: close\r\n\r\n"+body)
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// A body shorter than its Content-Length is a 400 TRUNCATED_BODY, not an empty valid body.
func TestTruncatedBodyIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	// Worker routes check the run token before they read a body: without one the truncated
	// body is never read, and the answer is 401.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/queue/task", `{"taskId":"t"}`, http.StatusBadRequest},
		{"POST", "/api/queue/task", ``, http.StatusBadRequest},
		{"POST", "/api/queue/batch", `{"tasks":[{"taskId":"t"}]}`, http.StatusBadRequest},
		{"POST", "/api/dlq/purge", `{"olderThan":"1d"}`, http.StatusBadRequest},
		{"POST", "/api/dlq/retry-all", `{}`, http.StatusBadRequest},
		{"POST", "/api/dlq/retry-all", ``, http.StatusBadRequest},
		{"POST", "/api/maintenance/enter", ``, http.StatusBadRequest},
		{"POST", "/api/pipelines/t/trigger", `{"input":{}}`, http.StatusBadRequest},
		{"POST", "/api/pipelines/t/trigger", ``, http.StatusBadRequest},
		{"PUT", "/api/pipelines/p", `{"entryTasks":["t"]}`, http.StatusBadRequest},
		{"POST", "/api/callback/trun_x", `{"status":"success"}`, http.StatusUnauthorized},
		{"POST", "/api/heartbeat", `{"runId":"trun_x"}`, http.StatusUnauthorized},
	} {
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d", c.method, c.path, len(c.body)+10)
		resp := rawRequest(t, e.url, head, c.body)
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, c.status, resp.StatusCode, "%s %s %q: %s", c.method, c.path, c.body, out)
		if c.status == http.StatusBadRequest {
			require.Contains(t, string(out), `"code":"TRUNCATED_BODY"`, "%s %s %q", c.method, c.path, c.body)
		}
	}
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"))
	require.Zero(t, e.count("SELECT count(*) FROM pipelines WHERE NOT implicit"))
	var m struct{ Mode string }
	e.do("GET", "/api/maintenance", nil, "").json(t, &m)
	require.Equal(t, "running", m.Mode)
}

// A storage failure is a storage error (503 STORAGE_UNAVAILABLE), never a database outage; a
// key the backend cannot hold is a 400.
func TestStorageErrorsAreNotDatabaseErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A symbolic link to itself: opening it fails with ELOOP, an os error.
	require.NoError(t, os.Symlink("loop", filepath.Join(e.storageDir, "loop")))
	r := e.do("GET", "/api/storage/loop", nil, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Equal(t, "STORAGE_UNAVAILABLE", r.errorBody(t).Code)

	r = e.do("GET", "/api/storage/runs/"+strings.Repeat("a", 256)+"/x.json", nil, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "INVALID_PATH", r.errorBody(t).Code)
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
}

// An uploaded file's name and type are stored as text: a NUL or invalid UTF-8 in them is a
// 400 INVALID_TEXT, and nothing is stored.
func TestUploadWithBadTextIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for name, head := range map[string]string{
		"NUL in the file name (RFC 2231)":  "Content-Disposition: form-data; name=\"file\"; filename*=utf-8''a%00b.txt\r\nContent-Type: text/plain",
		"invalid UTF-8 in the file name":   "Content-Disposition: form-data; name=\"file\"; filename=\"a\xff.txt\"\r\nContent-Type: text/plain",
		"invalid UTF-8 in the file's type": "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/\xc3",
	} {
		body := "--XB\r\n" + head + "\r\n\r\nhello\r\n--XB--\r\n"
		req, err := http.NewRequest("POST", e.url+"/api/upload/temp", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=XB")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", name, out)
		require.Contains(t, string(out), `"code":"INVALID_TEXT"`, name)
	}
	require.Zero(t, e.count("SELECT count(*) FROM temp_uploads"))
	require.Zero(t, countFiles(t, e.storageDir))
	require.Equal(t, http.StatusOK, e.do("GET", "/health", nil, "").Status)
}
