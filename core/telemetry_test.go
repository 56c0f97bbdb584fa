package core_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	sdk "github.com/pipeweave/pipeweave/worker"
)

// metrics is one scrape of /metrics: sample values by series ("name{a="x",b="y"}", labels
// sorted by name).
type metrics map[string]float64

// parseMetrics reads the Prometheus text format: comments and blank lines aside, each line is
// a series and its value.
func parseMetrics(t *testing.T, body []byte) metrics {
	t.Helper()
	out := metrics{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sep := strings.LastIndexByte(line, ' ')
		require.Positive(t, sep, "metrics line %q", line)
		v, err := strconv.ParseFloat(line[sep+1:], 64)
		require.NoError(t, err, "metrics line %q", line)
		name, labels := line[:sep], map[string]string{}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			for _, pair := range strings.Split(strings.TrimSuffix(name[i+1:], "}"), ",") {
				if k, val, ok := strings.Cut(pair, "="); ok {
					labels[k] = strings.Trim(val, `"`)
				}
			}
			name = name[:i]
		}
		out[series(name, labels)] = v
	}
	require.NoError(t, sc.Err())
	return out
}

func series(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + `="` + labels[k] + `"`)
	}
	b.WriteString("}")
	return b.String()
}

// get returns the value of one series (0 when absent); labels alternate names and values.
func (m metrics) get(name string, labels ...string) float64 {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return m[series(name, l)]
}

// sum adds every series of name whose labels include the given ones.
func (m metrics) sum(name string, labels ...string) float64 {
	total := 0.0
	for key, v := range m {
		base, rest, _ := strings.Cut(key, "{")
		if base != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && strings.Contains(","+strings.TrimSuffix(rest, "}")+",", ","+labels[i]+`="`+labels[i+1]+`",`)
		}
		if match {
			total += v
		}
	}
	return total
}

func (e *env) scrape(key string) metrics {
	e.t.Helper()
	r := e.do("GET", "/metrics", nil, key)
	require.Equal(e.t, http.StatusOK, r.Status, "metrics: %s", r.Body)
	return parseMetrics(e.t, r.Body)
}

// The metrics follow a diamond pipeline run (partial-merge) in which b fails once and is
// retried, c fails for good into the DLQ, and d's first attempt goes silent and is ended by
// the heartbeat deadline.
func TestMetricsFollowAPipelineRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	retry := withRetries(1, 0)
	e.register("dia", "1", w.URL(), task("a", retry, next("b", "c")), task("b", retry, next("d")), task("c", retry, next("d")),
		task("d", retry, withHeartbeat(100)))
	w.on("b", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if d.Attempt == 1 {
			return failWith("flaky", true)(d)
		}
		return success(d)
	})
	w.on("c", failWith("broken", false))
	release := w.holdTask("d")
	t.Cleanup(release)

	before := e.scrape("")
	require.Equal(t, 0.0, before.get("pipeweave_claims_total"))
	for _, st := range []string{"waiting", "pending", "dispatching", "running"} {
		require.Contains(t, before, series("pipeweave_queue_depth", map[string]string{"state": st}), "every live state is reported")
		require.Equal(t, 0.0, before.get("pipeweave_queue_depth", "state", st))
	}
	require.Equal(t, 10.0, before.get("pipeweave_db_pool_max_conns"))

	id := e.trigger("dia", map[string]any{"input": 1, "failureMode": "partial-merge"})
	// d's first attempt is held: no heartbeat comes, the sweep ends it, and its retry is
	// dispatched (and held too).
	w.waitUntil("d's first dispatch", func() bool { return len(w.dispatchesOf("d")) == 1 })
	e.waitFor("d's retry to be dispatched", func() bool {
		e.process()
		return len(w.dispatchesOf("d")) == 2
	})
	mid := e.scrape("")
	require.Equal(t, 1.0, mid.get("pipeweave_queue_depth", "state", "running"), "d's retry runs")
	require.Equal(t, 0.0, mid.get("pipeweave_queue_depth", "state", "pending"))
	require.Equal(t, 0.0, mid.get("pipeweave_queue_depth", "state", "waiting"))
	release()
	r := e.waitRun(id, "partial")
	require.Equal(t, map[string]string{"a": "completed", "b": "completed", "c": "failed", "d": "completed"}, r.states())
	// Every callback was answered (d's silent attempt's with 409), so every dispatch that led
	// to one was recorded too.
	w.waitUntil("the callbacks", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 1 && len(w.statuses["b"]) == 2 && len(w.statuses["c"]) == 1 && len(w.statuses["d"]) == 2
	})
	w.mu.Lock()
	require.ElementsMatch(t, []int{http.StatusOK, http.StatusConflict}, w.statuses["d"], "d's callbacks")
	w.mu.Unlock()

	after := e.scrape("")
	// a, b twice, c, d twice.
	require.Equal(t, 6.0, after.get("pipeweave_claims_total"))
	require.Equal(t, 6.0, after.get("pipeweave_dispatch_duration_seconds_count", "outcome", "acked"))
	require.Equal(t, 6.0, after.sum("pipeweave_dispatch_duration_seconds_count"))
	require.Equal(t, 0.0, after.sum("pipeweave_dispatch_failures_total"))
	// Callbacks that completed or failed an attempt; d's stale callback is not one.
	for task, n := range map[string]float64{"a": 1, "b": 2, "c": 1, "d": 1} {
		require.Equal(t, n, after.sum("pipeweave_task_duration_seconds_count", "task", task), "durations of %s", task)
	}
	require.Equal(t, 1.0, after.get("pipeweave_task_duration_seconds_count", "task", "b", "outcome", "failed"))
	require.Equal(t, 1.0, after.get("pipeweave_task_duration_seconds_count", "task", "b", "outcome", "completed"))
	require.Equal(t, 1.0, after.get("pipeweave_task_duration_seconds_count", "task", "c", "outcome", "failed"))
	require.Equal(t, map[string]float64{"a": 0, "b": 1, "c": 0, "d": 1}, map[string]float64{
		"a": after.get("pipeweave_retries_total", "task", "a"), "b": after.get("pipeweave_retries_total", "task", "b"),
		"c": after.get("pipeweave_retries_total", "task", "c"), "d": after.get("pipeweave_retries_total", "task", "d")})
	require.Equal(t, 1.0, after.get("pipeweave_timeouts_total", "kind", "heartbeat", "task", "d"))
	require.Equal(t, 1.0, after.sum("pipeweave_timeouts_total"))
	require.Equal(t, 1.0, after.get("pipeweave_dlq_entries_total", "task", "c"))
	require.Equal(t, 1.0, after.sum("pipeweave_dlq_entries_total"))
	require.Equal(t, 1.0, after.get("pipeweave_sweep_results_total", "outcome", "retried"))
	require.Equal(t, 0.0, after.get("pipeweave_sweep_results_total", "outcome", "failed"))
	require.Equal(t, 0.0, after.get("pipeweave_sweep_results_total", "outcome", "error"))
	for _, st := range []string{"waiting", "pending", "dispatching", "running"} {
		require.Equal(t, 0.0, after.get("pipeweave_queue_depth", "state", st), st)
	}
	require.Greater(t, after.get("pipeweave_db_pool_acquires_total"), before.get("pipeweave_db_pool_acquires_total"))
	require.GreaterOrEqual(t, after.get("pipeweave_db_pool_total_conns"), 1.0)
	require.LessOrEqual(t, after.get("pipeweave_db_pool_acquired_conns"), after.get("pipeweave_db_pool_max_conns"))
	require.Equal(t, 10.0, after.get("pipeweave_db_pool_max_conns"))
}

// /metrics is a non-worker endpoint: with PIPEWEAVE_API_KEYS set it needs a key. Each
// orchestrator has a registry of its own.
func TestMetricsNeedTheAPIKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"metrics-key"} })
	r := e.do("GET", "/metrics", nil, "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	r = e.do("GET", "/metrics", nil, "wrong")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	m := e.scrape("metrics-key")
	require.Contains(t, m, "pipeweave_claims_total")

	// A second orchestrator in the process (on the same database) counts its own claims.
	w := newWorker(t, e.url)
	other := newEnvOn(t, e.pool)
	other.register("solo", "1", w.URL(), task("one"))
	other.enqueue(map[string]any{"taskId": "one"})
	w.waitDispatches(1)
	require.Equal(t, 1.0, other.scrape("").get("pipeweave_claims_total"))
	require.Equal(t, 0.0, e.scrape("metrics-key").get("pipeweave_claims_total"))
}

// headerLog records the traceparent of requests by path (a batch dispatch's by the path each of
// its dispatches would have had alone).
type headerLog struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (h *headerLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if h.seen == nil {
			h.seen = map[string][]string{}
		}
		if r.Method == http.MethodPost && r.URL.Path == protocol.DispatchBatchPath {
			// A batch dispatch: each dispatch's trace context, as if it had come alone.
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var b protocol.DispatchBatchRequest
			_ = json.Unmarshal(body, &b)
			for _, it := range b.Dispatches {
				h.seen["/tasks/"+it.TaskID] = append(h.seen["/tasks/"+it.TaskID], it.Traceparent)
			}
		} else {
			h.seen[r.URL.Path] = append(h.seen[r.URL.Path], r.Header.Get("traceparent"))
		}
		h.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (h *headerLog) get(path string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen[path]...)
}

// traceIDOf returns the trace id of a W3C traceparent "00-<trace id>-<span id>-<flags>".
func traceIDOf(t *testing.T, traceparent string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(traceparent, "-")
	require.Len(t, parts, 4, "traceparent %q", traceparent)
	return parts[1], parts[2]
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func spansNamed(spans tracetest.SpanStubs, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans.Snapshots() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// A pipeline run through a worker built with the SDK is one trace: the trigger, the dispatch
// and callback spans of every task, and the SDK's task spans all carry the trigger's trace id,
// and each dispatch request carried the dispatch span's traceparent.
func TestTracingAPipelineRunIsOneTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := newEnvWith(t, testdb.New(t), core.Options{TracerProvider: tp})

	var dispatches headerLog
	srv := httptest.NewUnstartedServer(nil)
	w, err := sdk.New(sdk.Config{OrchestratorURL: e.url, ServiceID: "traced", Version: "1", ServiceKey: testorch.ServiceKey(t, testSecret, "traced"),
		BaseURL: "http://" + srv.Listener.Addr().String(), TempDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		TracerProvider: tp})
	require.NoError(t, err)
	handler := func(ctx *sdk.Context) (any, error) { return map[string]string{"task": ctx.TaskID}, nil }
	require.NoError(t, w.Register("a", sdk.Options{AllowedNext: []string{"b", "c"}}, handler))
	require.NoError(t, w.Register("b", sdk.Options{AllowedNext: []string{"d"}}, handler))
	require.NoError(t, w.Register("c", sdk.Options{AllowedNext: []string{"d"}}, handler))
	require.NoError(t, w.Register("d", sdk.Options{}, handler))
	srv.Config.Handler = dispatches.wrap(w.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(w.Wait)
	_, err = w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)

	id := e.trigger("traced", map[string]any{"input": map[string]int{"n": 1}})
	r := e.waitRun(id, "completed")
	// A dispatch span ends when the worker answered, which may come after the run completed.
	var spans tracetest.SpanStubs
	e.waitFor("the spans of every task", func() bool {
		spans = exp.GetSpans()
		return len(spansNamed(spans, "dispatch")) == 4 && len(spansNamed(spans, "callback")) == 4 && len(spansNamed(spans, "task")) == 4
	})

	triggers := spansNamed(spans, "trigger")
	require.Len(t, triggers, 1)
	traceID := triggers[0].SpanContext().TraceID()
	require.True(t, traceID.IsValid())
	require.Equal(t, id, attr(triggers[0], "pipeweave.pipeline_run.id"))

	dispatchByTask := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spansNamed(spans, "dispatch") {
		require.Equal(t, traceID, s.SpanContext().TraceID(), "dispatch of %s", attr(s, "pipeweave.task.id"))
		require.Equal(t, id, attr(s, "pipeweave.pipeline_run.id"))
		require.Equal(t, "1", attr(s, "pipeweave.attempt"))
		require.Equal(t, r.node(attr(s, "pipeweave.task.id")).ID, attr(s, "pipeweave.run.id"))
		require.Equal(t, trace.SpanKindClient, s.SpanKind())
		dispatchByTask[attr(s, "pipeweave.task.id")] = s
	}
	taskByRun := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spansNamed(spans, "task") {
		require.Equal(t, traceID, s.SpanContext().TraceID())
		taskByRun[attr(s, "pipeweave.run.id")] = s
	}
	callbackByTask := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spansNamed(spans, "callback") {
		require.Equal(t, traceID, s.SpanContext().TraceID(), "callback of %s", attr(s, "pipeweave.task.id"))
		require.Equal(t, "true", attr(s, "pipeweave.applied"))
		callbackByTask[attr(s, "pipeweave.task.id")] = s
	}
	for _, task := range []string{"a", "b", "c", "d"} {
		d, ok := dispatchByTask[task]
		require.True(t, ok, "dispatch span of %s", task)
		runID := r.node(task).ID
		ts, ok := taskByRun[runID]
		require.True(t, ok, "the SDK's task span of %s", task)
		require.Equal(t, d.SpanContext().SpanID(), ts.Parent().SpanID(), "the task span of %s is a child of its dispatch", task)
		cb, ok := callbackByTask[task]
		require.True(t, ok, "callback span of %s", task)
		require.Equal(t, ts.SpanContext().SpanID(), cb.Parent().SpanID(), "the callback of %s is a child of the SDK's task span", task)
		require.Equal(t, runID, attr(cb, "pipeweave.run.id"))

		sent := dispatches.get("/tasks/" + task)
		require.Len(t, sent, 1, task)
		gotTrace, gotSpan := traceIDOf(t, sent[0])
		require.Equal(t, traceID.String(), gotTrace, "the dispatch request of %s carried the run's trace", task)
		require.Equal(t, d.SpanContext().SpanID().String(), gotSpan, "the dispatch request of %s carried its span", task)
	}
	require.Equal(t, triggers[0].SpanContext().SpanID(), dispatchByTask["a"].Parent().SpanID(), "dispatches are children of the trigger")
	// The claims that took the run's tasks link to its trace.
	linked := 0
	for _, s := range spansNamed(spans, "claim") {
		for _, l := range s.Links() {
			if l.SpanContext.TraceID() == traceID {
				linked++
			}
		}
	}
	require.Equal(t, 4, linked)
}

// postWithHeader sends a worker call with a run token and extra headers.
func postWithHeader(t *testing.T, url, tok string, body any, header map[string]string) (int, []byte) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest("POST", url, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// A standalone run continues the enqueue request's traceparent; heartbeats and callbacks are
// accepted whatever traceparent they carry (a foreign one, a malformed one), and their spans
// continue it when it is valid.
func TestTracingStandaloneRunAndForeignTraceparent(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := newEnvWith(t, testdb.New(t), core.Options{TracerProvider: tp})
	w := newWorker(t, e.url)
	e.register("plain", "1", w.URL(), task("job"))

	const caller = "00-11111111111111111111111111111111-2222222222222222-01"
	r := e.doWithHeader("POST", "/api/queue/task", map[string]any{"taskId": "job"}, map[string]string{"traceparent": caller})
	require.Equal(t, http.StatusCreated, r.Status, "enqueue: %s", r.Body)
	var q enqueued
	r.json(t, &q)
	w.waitDispatches(1)
	d := w.all()[0]
	e.waitStatus(d.RunID, "running") // the dispatch span ended before the answer was recorded

	spans := exp.GetSpans()
	enq := spansNamed(spans, "enqueue")
	require.Len(t, enq, 1)
	require.Equal(t, "11111111111111111111111111111111", enq[0].SpanContext().TraceID().String())
	require.Equal(t, "2222222222222222", enq[0].Parent().SpanID().String())
	dispatch := spansNamed(spans, "dispatch")
	require.Len(t, dispatch, 1)
	require.Equal(t, q.RunID, attr(dispatch[0], "pipeweave.run.id"))
	require.Equal(t, "", attr(dispatch[0], "pipeweave.pipeline_run.id"))
	require.Equal(t, "11111111111111111111111111111111", dispatch[0].SpanContext().TraceID().String(), "the run continues the caller's trace")
	require.Equal(t, "2222222222222222", dispatch[0].Parent().SpanID().String())

	status, body := postWithHeader(t, e.url+"/api/heartbeat", d.StorageToken, protocol.HeartbeatRequest{RunID: d.RunID},
		map[string]string{"traceparent": "garbage"})
	require.Equal(t, http.StatusOK, status, "heartbeat: %s", body)
	const foreign = "00-abcdefabcdefabcdefabcdefabcdefab-0123456789abcdef-01"
	status, body = postWithHeader(t, e.url+"/api/callback/"+d.RunID, d.StorageToken, success(d),
		map[string]string{"traceparent": foreign})
	require.Equal(t, http.StatusOK, status, "callback: %s", body)
	require.Contains(t, string(body), `"applied":true`)
	require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)

	spans = exp.GetSpans()
	cb := spansNamed(spans, "callback")
	require.Len(t, cb, 1)
	require.Equal(t, "abcdefabcdefabcdefabcdefabcdefab", cb[0].SpanContext().TraceID().String())
	require.Equal(t, "0123456789abcdef", cb[0].Parent().SpanID().String())
	require.Equal(t, "job", attr(cb[0], "pipeweave.task.id"))
	hb := spansNamed(spans, "heartbeat")
	require.Len(t, hb, 1)
	require.False(t, hb[0].Parent().IsValid(), "a malformed traceparent is ignored")
}

// doWithHeader is do with extra request headers.
func (e *env) doWithHeader(method, path string, body any, header map[string]string) response {
	e.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(e.t, err)
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(raw))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{Status: resp.StatusCode, Body: out}
}

// The OTLP exporter is on when an endpoint is configured (read from the environment like every
// variable); Close flushes the spans to it.
func TestTracingOTLPExporter(t *testing.T) {
	t.Parallel()
	env := configEnv
	cfg, err := core.ConfigFromEnv(env(nil))
	require.NoError(t, err)
	require.Empty(t, cfg.OTLPEndpoint+cfg.OTLPTracesEndpoint, "the exporter is off by default")
	require.Equal(t, "pipeweave", cfg.ServiceName)
	cfg, err = core.ConfigFromEnv(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4318/traces", "OTEL_SERVICE_NAME": "orchestrator-eu"}))
	require.NoError(t, err)
	require.Equal(t, "http://collector:4318", cfg.OTLPEndpoint)
	require.Equal(t, "https://collector:4318/traces", cfg.OTLPTracesEndpoint)
	require.Equal(t, "orchestrator-eu", cfg.ServiceName)
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		_, err := core.ConfigFromEnv(env(map[string]string{name: "collector:4318"}))
		var ce *core.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, name, ce.Var)
	}

	var mu sync.Mutex
	var paths []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	e := newEnv(t, func(c *core.Config) { c.OTLPEndpoint = collector.URL + "/" })
	e.register("otlp", "1", "http://127.0.0.1:1", task("one"))
	e.trigger("otlp", nil)
	e.orch.Close()
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, paths, "Close flushed the spans")
	require.Equal(t, "POST /v1/traces application/x-protobuf", paths[0])
}

// With the exporter off (the default), no span is made, yet the caller's traceparent still
// reaches the workers: the dispatches of a triggered pipeline run and of a standalone run carry
// the traceparent of the request that started them, and a run started without one carries none.
func TestTraceparentPropagatesWithTracingOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var dispatches headerLog
	w := newPWorker(t, e)
	w.srv.Config.Handler = dispatches.wrap(w.srv.Config.Handler)
	e.register("quiet", "1", w.URL(), task("a", next("b")), task("b"))
	e.register("single", "1", w.URL(), task("solo"))

	const caller = "00-33333333333333333333333333333333-4444444444444444-01"
	r := e.doWithHeader("POST", "/api/pipelines/quiet/trigger", map[string]any{"input": 1}, map[string]string{"traceparent": caller})
	require.Equal(t, http.StatusCreated, r.Status, "trigger: %s", r.Body)
	var trig struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	r.json(t, &trig)
	e.waitRun(trig.PipelineRunID, "completed")
	require.Equal(t, []string{caller}, dispatches.get("/tasks/a"))
	require.Equal(t, []string{caller}, dispatches.get("/tasks/b"), "the successor continues the run's trace")

	r = e.doWithHeader("POST", "/api/queue/task", map[string]any{"taskId": "solo"}, map[string]string{"traceparent": caller})
	require.Equal(t, http.StatusCreated, r.Status, "enqueue: %s", r.Body)
	var q enqueued
	r.json(t, &q)
	e.waitStatus(q.RunID, "completed")
	untraced := e.enqueue(map[string]any{"taskId": "solo"}).RunID
	e.waitStatus(untraced, "completed")
	require.Equal(t, []string{caller, ""}, dispatches.get("/tasks/solo"))
}

// Failed dispatches are counted by reason, and their latency under the outcome failed; a 503
// is back pressure, not a failure.
func TestMetricsCountDispatchFailuresByReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	w.answer = func(d protocol.DispatchRequest) int {
		switch d.TaskID {
		case "gone":
			return http.StatusNotFound
		case "broken":
			return http.StatusInternalServerError
		}
		return http.StatusServiceUnavailable
	}
	once := withRetries(0, 0) // a failed dispatch is not tried again
	e.register("answers", "1", w.URL(), task("gone", once), task("broken", once), task("busy"))
	e.register("nowhere", "1", "http://127.0.0.1:1", task("unreachable", once))
	for _, id := range []string{"gone", "broken", "busy", "unreachable"} {
		e.enqueue(map[string]any{"taskId": id})
	}
	e.waitMoved("four dispatches", func() bool {
		m := e.scrape("")
		return m.sum("pipeweave_dispatch_duration_seconds_count") >= 4
	})
	m := e.scrape("")
	require.Equal(t, 1.0, m.get("pipeweave_dispatch_failures_total", "reason", "status_4xx"))
	require.Equal(t, 1.0, m.get("pipeweave_dispatch_failures_total", "reason", "status_5xx"))
	require.Equal(t, 1.0, m.get("pipeweave_dispatch_failures_total", "reason", "network"))
	require.Equal(t, 3.0, m.sum("pipeweave_dispatch_failures_total"))
	require.Equal(t, 3.0, m.get("pipeweave_dispatch_duration_seconds_count", "outcome", "failed"))
	require.GreaterOrEqual(t, m.get("pipeweave_dispatch_duration_seconds_count", "outcome", "back_pressure"), 1.0)
	require.Equal(t, 0.0, m.get("pipeweave_dispatch_duration_seconds_count", "outcome", "acked"))
}
