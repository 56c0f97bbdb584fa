//go:build linux

package functions_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

// The AWS Lambda runtime interface emulator, built from the module proxy outside this module.
const (
	rieModule  = "github.com/aws/aws-lambda-runtime-interface-emulator"
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

// buildRIE installs aws-lambda-rie into a shared directory (go install from a temporary
// directory, so that this module's go.mod is not involved).
func buildRIE(t *testing.T) string {
	t.Helper()
	dir := shared(t, "rie", func(dir string) error {
		cmd := exec.Command("go", "install", rieModule+"/cmd/aws-lambda-rie@"+rieVersion)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install aws-lambda-rie: %w\n%s", err, out)
		}
		return nil
	})
	return filepath.Join(dir, "aws-lambda-rie")
}

// emulated is one function running under aws-lambda-rie.
type emulated struct {
	url string
	p   *proc
}

// emulate runs bootstrap under the emulator, on free ports for both its invoke API and the
// Lambda runtime API it serves the bootstrap. The emulator passes its environment on to the
// function and starts the bootstrap on the first invocation. When the emulator cannot listen
// (another process took a port between its choice and the start) it starts again on new ports.
func emulate(t *testing.T, rie, name, bootstrap string, env map[string]string) *emulated {
	t.Helper()
	for attempt := 1; ; attempt++ {
		invokePort, runtimePort := testutil.FreePort(t), testutil.FreePort(t)
		args := []string{
			"--runtime-interface-emulator-address", "127.0.0.1:" + strconv.Itoa(invokePort),
			"--runtime-api-address", "127.0.0.1:" + strconv.Itoa(runtimePort),
			"--log-level", "info",
			bootstrap,
		}
		p := startProc(t, "aws-lambda-rie "+name, rie, args, with(env, "AWS_LAMBDA_FUNCTION_NAME", "pipeweave-"+name), true)
		if attempt < 3 && !listening(p, invokePort, runtimePort) {
			p.graceful = false
			t.Logf("aws-lambda-rie %s did not listen (attempt %d), starting it again:\n%s", name, attempt, p.output)
			continue
		}
		return &emulated{url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", invokePort), p: p}
	}
}

// listening waits until p accepts connections on every port, and reports false when p exits
// first (or after 30 s).
func listening(p *proc, ports ...int) bool {
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range ports {
		for {
			select {
			case <-p.done:
				return false
			default:
			}
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				_ = conn.Close()
				break
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The emulator panics on a failed listen from a goroutine; give it a moment to do so.
	select {
	case <-p.done:
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

// invoke sends one invocation and returns the function's answer. It waits for the emulator
// to listen.
func (e *emulated) invoke(t *testing.T, payload []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post(e.url, "application/json", bytes.NewReader(payload))
		if err != nil {
			require.True(t, time.Now().Before(deadline), "the emulator did not answer: %v\n%s", err, e.p.output)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		raw, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "invoke: %s\n%s", raw, e.p.output)
		return raw
	}
}

// invokeFile sends a recorded event of testdata.
func (e *emulated) invokeFile(t *testing.T, file string) []byte {
	t.Helper()
	return e.invoke(t, event(t, file))
}

func event(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	return raw
}

// restResponse decodes an API Gateway REST answer and its JSON body.
func restResponse(t *testing.T, raw []byte, body any) events.APIGatewayProxyResponse {
	t.Helper()
	var resp events.APIGatewayProxyResponse
	require.NoError(t, json.Unmarshal(raw, &resp), "%s", raw)
	require.False(t, resp.IsBase64Encoded, "a JSON answer travels as text")
	require.Equal(t, "application/json", resp.Headers["Content-Type"])
	require.NoError(t, json.Unmarshal([]byte(resp.Body), body), "%s", resp.Body)
	return resp
}

// httpAPIResponse decodes an API Gateway HTTP API (payload 2.0) answer and its JSON body.
func httpAPIResponse(t *testing.T, raw []byte, body any) events.APIGatewayV2HTTPResponse {
	t.Helper()
	var resp events.APIGatewayV2HTTPResponse
	require.NoError(t, json.Unmarshal(raw, &resp), "%s", raw)
	require.Equal(t, "application/json", resp.Headers["Content-Type"])
	require.NoError(t, json.Unmarshal([]byte(resp.Body), body), "%s", resp.Body)
	return resp
}

// lambdaError is the answer of an invocation that returned an error.
type lambdaError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

// TestFunctionsUnderTheLambdaEmulator builds each function's bootstrap and runs it under the
// AWS Lambda runtime interface emulator with recorded API Gateway (REST and HTTP API) and
// EventBridge events, checking the answers and what they did to the database. The worker calls
// back through the api function served over HTTP from the same binary.
func TestFunctionsUnderTheLambdaEmulator(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	rie := buildRIE(t)
	dbURL := testdb.NewURL(t)
	pool := openPool(t, dbURL)
	ctx := context.Background()
	env := functionEnv(t, dbURL)

	httpAPI := serveHTTP(t, "api (HTTP)", bins["api"], env)
	w := newWorker(t, httpAPI)
	register(t, httpAPI, protocol.RegisterRequest{ServiceID: "lambda-svc", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{{ID: "lambda-echo", CodeHash: "echo"}}})

	api := emulate(t, rie, "api", bins["api"], env)
	process := emulate(t, rie, "process", bins["process"], env)
	sweep := emulate(t, rie, "heartbeat-sweep", bins["heartbeat-sweep"], env)
	purge := emulate(t, rie, "dlq-purge", bins["dlq-purge"], env)

	// REST API: GET /health.
	var health map[string]any
	resp := restResponse(t, api.invokeFile(t, "apigw-rest-get-health.json"), &health)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	maintenance, ok := health["maintenance"].(map[string]any)
	require.True(t, ok, "health reports the maintenance mode: %v", health)
	require.Equal(t, "running", maintenance["mode"])
	delete(health, "maintenance")
	require.Equal(t, map[string]any{"status": "ok", "database": "ok", "mode": "serverless", "auth": "none"}, health)
	require.Equal(t, []string{"application/json"}, resp.MultiValueHeaders["Content-Type"])

	// Warm invocations reuse the pool the instance opened once: twenty more open no connection.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	var since time.Time
	require.NoError(t, conn.QueryRow(ctx, "SELECT now()").Scan(&since))
	for range 20 {
		restResponse(t, api.invokeFile(t, "apigw-rest-get-health.json"), &health)
	}
	var opened int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_start > $1 AND pid <> pg_backend_pid()`, since).Scan(&opened))
	conn.Release()
	require.Zero(t, opened, "a warm invocation opened a database connection")

	// REST API: POST /api/queue/task, and the HTTP API the same with a base64 body. delayMs
	// keeps them pending for the process function.
	var viaREST, viaHTTPAPI struct {
		RunID  string `json:"runId"`
		TaskID string `json:"taskId"`
		Status string `json:"status"`
	}
	resp = restResponse(t, api.invokeFile(t, "apigw-rest-post-queue-task.json"), &viaREST)
	require.Equal(t, http.StatusCreated, resp.StatusCode, resp.Body)
	require.Equal(t, "lambda-echo", viaREST.TaskID)
	resp2 := httpAPIResponse(t, api.invokeFile(t, "apigw-http-post-queue-task-base64.json"), &viaHTTPAPI)
	require.Equal(t, http.StatusCreated, resp2.StatusCode, resp2.Body)
	runs := []string{viaREST.RunID, viaHTTPAPI.RunID}
	for i, via := range []string{"rest-api", "http-api"} {
		var taskID, status string
		require.NoError(t, pool.QueryRow(ctx, "SELECT task_id, status FROM task_runs WHERE id = $1", runs[i]).Scan(&taskID, &status))
		require.Equal(t, "lambda-echo", taskID)
		require.Equal(t, "pending", status, "queued through the %s event, not dispatched yet", via)
	}

	// REST API with multi-value query parameters: GET /api/queue/items?status=pending&….
	var items struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	resp = restResponse(t, api.invokeFile(t, "apigw-rest-get-queue-items.json"), &items)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	require.Len(t, items.Items, 2, resp.Body)
	require.ElementsMatch(t, runs, []string{items.Items[0].ID, items.Items[1].ID})

	// HTTP API: GET /api/queue/status, and an unknown route.
	var qs struct {
		Pending int `json:"pending"`
	}
	resp2 = httpAPIResponse(t, api.invokeFile(t, "apigw-http-get-queue-status.json"), &qs)
	require.Equal(t, http.StatusOK, resp2.StatusCode)
	require.Equal(t, 2, qs.Pending)
	var eb protocol.ErrorBody
	resp2 = httpAPIResponse(t, api.invokeFile(t, "apigw-http-get-unknown-route.json"), &eb)
	require.Equal(t, http.StatusNotFound, resp2.StatusCode)
	require.Equal(t, "ROUTE_NOT_FOUND", eb.Code)
	require.Contains(t, eb.Error, "/api/no-such-endpoint")

	// Bad input through the adapter: a malformed JSON body is a 400 and writes nothing.
	resp = restResponse(t, api.invokeFile(t, "apigw-rest-post-malformed.json"), &eb)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "MALFORMED_JSON", eb.Code)
	var total int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM task_runs").Scan(&total))
	require.Equal(t, 2, total)
	// A payload that is no API Gateway event is a function error.
	var le lambdaError
	require.NoError(t, json.Unmarshal(api.invokeFile(t, "eventbridge-scheduled.json"), &le))
	require.Contains(t, le.Message, "not an API Gateway proxy event")

	// EventBridge: the process function dispatches both runs once their delay has passed. It
	// is first invoked when both are ready: were one still delayed, the first run's callback
	// would dispatch it inline through the api function, as serverless mode should.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var waiting int
		require.NoError(c, pool.QueryRow(ctx, "SELECT count(*) FROM task_runs WHERE id = ANY($1) AND available_at > now()", runs).Scan(&waiting))
		assert.Zero(c, waiting)
	}, 10*time.Second, 20*time.Millisecond)
	dispatched := 0
	deadline := time.Now().Add(30 * time.Second)
	for dispatched < 2 {
		require.True(t, time.Now().Before(deadline), "process never dispatched the runs")
		var s processSummary
		raw := process.invokeFile(t, "eventbridge-scheduled.json")
		require.NoError(t, json.Unmarshal(raw, &s), "%s", raw)
		require.Equal(t, s.Claimed, s.Dispatched+s.Failed, "%s", raw)
		require.Zero(t, s.Failed)
		dispatched += s.Dispatched
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, 2, dispatched)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var n int
		require.NoError(c, pool.QueryRow(ctx, "SELECT count(*) FROM task_runs WHERE id = ANY($1) AND status = 'completed'", runs).Scan(&n))
		assert.Equal(c, 2, n)
	}, 30*time.Second, 20*time.Millisecond, "the worker's callbacks completed the runs")
	w.requireEachRunAcceptedOnce(t, runs, 1)
	// Any payload will do for a scheduled function: an empty object, nothing at all.
	var s processSummary
	require.NoError(t, json.Unmarshal(process.invoke(t, []byte(`{}`)), &s))
	require.Equal(t, processSummary{DurationMs: s.DurationMs}, s)

	// EventBridge: the heartbeat sweep.
	for _, payload := range [][]byte{event(t, "eventbridge-scheduled.json"), nil} {
		var sw sweepSummary
		raw := sweep.invoke(t, payload)
		require.NoError(t, json.Unmarshal(raw, &sw), "%s", raw)
		require.Zero(t, sw.Swept)
		require.NotNil(t, sw.DurationMs, "%s", raw)
	}

	// EventBridge: the purge deletes an expired idempotency key.
	_, err = pool.Exec(ctx, "INSERT INTO idempotency_keys (task_id, key, run_id, expires_at) VALUES ('lambda-echo', 'k', $1, now() - interval '1 second')", runs[0])
	require.NoError(t, err)
	var pu purgeSummary
	raw := purge.invokeFile(t, "eventbridge-scheduled.json")
	require.NoError(t, json.Unmarshal(raw, &pu), "%s", raw)
	require.Equal(t, purgeSummary{IdempotencyKeys: 1, DurationMs: pu.DurationMs}, pu)
	require.NotNil(t, pu.DurationMs)
	var keysLeft int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&keysLeft))
	require.Zero(t, keysLeft)
}

// TestLambdaFunctionsWhileTheDatabaseRefusesConnections: under the emulator, the api answers
// API Gateway 503s and the scheduled functions fail with a DatabaseUnavailableError.
func TestLambdaFunctionsWhileTheDatabaseRefusesConnections(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	rie := buildRIE(t)
	env := functionEnv(t, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?sslmode=disable&connect_timeout=5", testutil.FreePort(t)))
	api := emulate(t, rie, "api", bins["api"], env)
	process := emulate(t, rie, "process", bins["process"], env)

	var health map[string]string
	resp := restResponse(t, api.invokeFile(t, "apigw-rest-get-health.json"), &health)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "unreachable", health["database"])

	var eb protocol.ErrorBody
	resp = restResponse(t, api.invokeFile(t, "apigw-rest-post-queue-task.json"), &eb)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "DATABASE_UNAVAILABLE", eb.Code)
	require.Equal(t, "5", resp.Headers["Retry-After"])

	var le lambdaError
	raw := process.invokeFile(t, "eventbridge-scheduled.json")
	require.NoError(t, json.Unmarshal(raw, &le), "%s", raw)
	require.Equal(t, "DatabaseUnavailableError", le.Type, "%s", raw)
	require.Contains(t, le.Message, "process: the database is unreachable")
}

// TestRecordedEventsAreWellFormed keeps the recorded events decodable as the aws-lambda-go
// types the adapter uses.
func TestRecordedEventsAreWellFormed(t *testing.T) {
	t.Parallel()
	var rest events.APIGatewayProxyRequest
	require.NoError(t, json.Unmarshal(event(t, "apigw-rest-post-queue-task.json"), &rest))
	require.Equal(t, "POST", rest.HTTPMethod)
	var v2 events.APIGatewayV2HTTPRequest
	require.NoError(t, json.Unmarshal(event(t, "apigw-http-post-queue-task-base64.json"), &v2))
	require.Equal(t, "2.0", v2.Version)
	body, err := base64.StdEncoding.DecodeString(v2.Body)
	require.NoError(t, err)
	require.JSONEq(t, `{"taskId":"lambda-echo","input":{"via":"http-api"},"delayMs":1000}`, string(body))
	require.Equal(t, strconv.Itoa(len(body)), v2.Headers["content-length"])
	var sched events.CloudWatchEvent
	require.NoError(t, json.Unmarshal(event(t, "eventbridge-scheduled.json"), &sched))
	require.Equal(t, "Scheduled Event", sched.DetailType)
}
