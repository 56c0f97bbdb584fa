package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// waitLimit bounds every wait on the page: generous, since two cores run several browsers,
// orchestrators and the race detector at once.
const waitLimit = 90 * time.Second

// stack is an orchestrator (serverless mode: triggers, callbacks and retries dispatch inline)
// on a fresh database, served over HTTP, with the worker service "diamond": a → b, c → d.
type stack struct {
	t    *testing.T
	o    *testorch.Orchestrator
	url  string
	keys []string
	// failC makes task c fail without retry.
	failC atomic.Bool
	// gateB, when set, holds task b (after it reported 50% progress) until it is closed.
	gateB atomic.Pointer[chan struct{}]
}

func newStack(t *testing.T, mod func(*core.Config)) *stack {
	t.Helper()
	skipShort(t)
	o := testorch.Start(t, testorch.Options{Configure: mod})
	return &stack{t: t, o: o, url: o.URL, keys: o.Config.APIKeys}
}

// startWorker starts and registers a worker of the service "diamond"; hashes overrides the
// code hash of some tasks (each task's default is "<task>-v1").
func (s *stack) startWorker(hashes map[string]string) {
	t := s.t
	t.Helper()
	w := s.o.Worker(t, "diamond", func(c *worker.Config) { c.Version = fmt.Sprintf("1.%d", len(hashes)) })
	next := map[string][]string{"a": {"b", "c"}, "b": {"d"}, "c": {"d"}}
	for _, id := range []string{"a", "b", "c", "d"} {
		hash := id + "-v1"
		if h, ok := hashes[id]; ok {
			hash = h
		}
		require.NoError(t, w.Register(id, worker.Options{AllowedNext: next[id], CodeHash: hash, Description: "Task " + id + " of the diamond"}, s.handler(id)))
	}
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
}

func (s *stack) handler(id string) worker.Handler {
	return func(ctx *worker.Context) (any, error) {
		if err := ctx.Progress(50, "halfway through "+id); err != nil {
			return nil, err
		}
		switch id {
		case "a":
			if err := ctx.AddAsset("blob", []byte{0, 1, 2, 0xfe, 0xff}, worker.AssetBinary); err != nil {
				return nil, err
			}
		case "b":
			if gate := s.gateB.Load(); gate != nil {
				select {
				case <-*gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		case "c":
			if s.failC.Load() {
				return nil, worker.Fail("C_BROKEN", "c cannot handle this input")
			}
		case "d":
			ctx.Log("joining b and c")
		}
		return map[string]any{"task": id, "attempt": ctx.Attempt, "input": ctx.Input}, nil
	}
}

// api calls the orchestrator's API with the first API key, if any, and decodes the answer.
func (s *stack) api(method, path string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/json")
	if len(s.keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+s.keys[0])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	if out != nil && resp.StatusCode < 300 {
		require.NoError(s.t, json.Unmarshal(raw, out), "%s %s: %s", method, path, raw)
	}
	return resp.StatusCode
}

// trigger starts a run of the diamond through the API and returns its id.
func (s *stack) trigger(input any) string {
	s.t.Helper()
	var res struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.Equal(s.t, http.StatusCreated, s.api("POST", "/api/pipelines/diamond/trigger", map[string]any{"input": input}, &res))
	return res.PipelineRunID
}

// waitRun waits through the API until the pipeline run is in state want.
func (s *stack) waitRun(id, want string) {
	s.t.Helper()
	deadline := time.Now().Add(waitLimit)
	var run struct {
		Status string `json:"status"`
	}
	for time.Now().Before(deadline) {
		require.Equal(s.t, http.StatusOK, s.api("GET", "/api/runs/"+id, nil, &run))
		if run.Status == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("pipeline run %s is %s after %s, want %s", id, run.Status, waitLimit, want)
}

// skipShort skips a dashboard test under -short (scripts/test --short, the inner loop), which
// leaves the browser to the full run; otherwise the dashboard tests never skip.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the dashboard is driven in a browser by the full run (scripts/test)")
	}
}

// chromiumPath finds chromium, or fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatalf("chromium is not installed (neither on PATH nor at /usr/bin/chromium): run scripts/ensure-chromium")
	return ""
}

// screenshotDir is $PIPEWEAVE_ARTIFACTS_DIR, or .pipeweave/artifacts/screenshots under the
// repository root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("PIPEWEAVE_ARTIFACTS_DIR"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the test's directory")
		dir = parent
	}
	d := filepath.Join(dir, ".pipeweave", "artifacts", "screenshots")
	require.NoError(t, os.MkdirAll(d, 0o755))
	return d
}

// browser is a headless chromium on one tab of the dashboard.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu         sync.Mutex
	exceptions []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	execPath := chromiumPath(t)
	userData := t.TempDir()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(userData),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	// Cancelling the allocator kills chromium and waits for it to exit.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, base: base}
	require.NoError(t, chromedp.Do(ctx), "start chromium (%s)", execPath)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			text := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				text += " " + ev.ExceptionDetails.Exception.Description
			}
			b.mu.Lock()
			b.exceptions = append(b.exceptions, text)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		require.Empty(t, b.exceptions, "uncaught JavaScript exceptions in the dashboard")
	})
	return b
}

// do runs actions with the wait limit.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...), what)
}

// open loads the dashboard at the hash route (a fresh page load).
func (b *browser) open(route string) {
	b.t.Helper()
	b.do("open "+route, chromedp.Navigate(b.base+"/ui/#"+route))
}

// route switches the loaded dashboard to another hash route.
func (b *browser) route(route string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`location.hash = %s`, js(route)))
}

// js quotes s as a JavaScript string.
func js(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

func (b *browser) eval(expr string) {
	b.t.Helper()
	b.do(expr, chromedp.Evaluate[chromedp.Void](expr))
}

// waitJS waits until the JavaScript expression is truthy.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		shot := b.screenshot("failed-" + strings.NewReplacer("/", "-", " ", "-").Replace(b.t.Name()))
		require.NoError(b.t, err, "waiting for %s (%s); the page: %s", what, expr, shot)
	}
}

// wait waits until an element matching the CSS selector is visible.
func (b *browser) wait(sel string) {
	b.t.Helper()
	b.waitJS(sel, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.getClientRects().length > 0; })()`, js(sel)))
}

// gone waits until no visible element matches sel.
func (b *browser) gone(sel string) {
	b.t.Helper()
	b.waitJS("no "+sel, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !e || e.getClientRects().length === 0; })()`, js(sel)))
}

// count waits until exactly n elements match sel.
func (b *browser) count(sel string, n int) {
	b.t.Helper()
	b.waitJS(fmt.Sprintf("%d × %s", n, sel), fmt.Sprintf(`document.querySelectorAll(%s).length === %d`, js(sel), n))
}

// click waits for sel and clicks it. The pages redraw while runs are active, so the element
// is looked up and clicked in one step.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.wait(sel)
	b.eval(fmt.Sprintf(`document.querySelector(%s).dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window}))`, js(sel)))
}

// fill sets the value of a form field as typing would.
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.wait(sel)
	b.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s; e.dispatchEvent(new Event('input', {bubbles: true})); })()`, js(sel), js(value)))
}

// text returns the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	b.wait(sel)
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%s).textContent`, js(sel))))
	require.NoError(b.t, err)
	return s
}

// evalString evaluates a JavaScript expression that yields a string.
func (b *browser) evalString(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, expr)
	return s
}

// screenshot saves a PNG of the whole page as name.png and returns its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	// From the top, so that the sticky header is where it belongs.
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(window.scrollTo({top: 0, behavior: 'instant'}), window.scrollY === 0)`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second)))
	if err != nil {
		b.t.Logf("screenshot %s: scroll to the top: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(screenshotDir(b.t), name+".png")
	require.NoError(b.t, os.WriteFile(path, png, 0o644))
	b.t.Logf("screenshot: %s", path)
	return path
}

// node selects the DAG node of task on the page, in state (any state when empty).
func node(task, state string) string {
	sel := fmt.Sprintf(`[data-testid="dag-node"][data-task=%q]`, task)
	if state != "" {
		sel += fmt.Sprintf(`[data-state=%q]`, state)
	}
	return sel
}

// A pipeline triggered from the Pipelines page runs on the run detail page: invalid JSON is
// refused before anything is sent, a dry run shows the plan, the nodes go through running
// (with the progress the worker reports) to completed, the task whose code changed since the
// previous run is flagged, and inputs, outputs and binary assets open through /api/storage.
func TestTriggerPipelineAndWatchRun(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	// A first run at code version 1, then task b changes code.
	first := s.trigger(map[string]any{"doc": "first"})
	s.waitRun(first, "completed")
	s.startWorker(map[string]string{"b": "b-v2"})
	gate := make(chan struct{})
	s.gateB.Store(&gate)

	b := newBrowser(t, s.url)
	b.open("/")
	b.wait(`[data-testid="stat-completed"]`)
	b.wait(fmt.Sprintf(`[data-testid="run-row"][data-run-id=%q][data-state="completed"]`, first))

	b.route("/pipelines")
	b.count(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="dag-node"]`, 4)
	b.count(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="dag-edge"]`, 4)
	b.screenshot("pipelines")

	b.click(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="pipeline-open"]`)
	b.wait(`[data-testid="trigger-input"]`)
	b.count(`[data-testid="pipeline-dag"] [data-testid="dag-node"]`, 4)

	// Invalid JSON: an error under the field, and nothing is triggered.
	b.fill(`[data-testid="trigger-input"]`, `{"doc": `)
	b.wait(`[data-testid="trigger-input-error"]`)
	b.click(`[data-testid="trigger-submit"]`)
	require.Contains(t, b.text(`[data-testid="trigger-error"]`), "not valid JSON")
	require.Equal(t, "#/pipelines/diamond", b.evalString(`location.hash`))

	// The dry run.
	b.click(`[data-testid="dry-run-button"]`)
	b.wait(`[data-testid="dry-run-result"][data-valid="true"]`)
	b.count(`[data-testid="plan-step"]`, 3)

	// Trigger with markup in the input: it must come back as text.
	b.fill(`[data-testid="trigger-input"]`, `{"doc": "hello <b>world</b>", "pages": 3}`)
	b.gone(`[data-testid="trigger-input-error"]`)
	b.screenshot("pipeline-trigger")
	b.click(`[data-testid="trigger-submit"]`)
	b.waitJS("the run detail page", `location.hash.startsWith('#/runs/prun_')`)
	runID := strings.TrimPrefix(b.evalString(`location.hash`), "#/runs/")
	require.NotEqual(t, first, runID)

	// b holds at 50% until released: the page shows it running with its progress.
	b.wait(node("a", "completed"))
	b.wait(node("b", "running"))
	b.waitJS("b's progress", `[...document.querySelectorAll('[data-testid="task-row"][data-task="b"] [data-testid="task-progress"]')].some(e => e.dataset.progress === '50')`)
	require.Contains(t, b.text(node("b", "")+` [data-testid="dag-node-state"]`), "50%")
	b.wait(`[data-testid="run-status"][data-state="running"]`)
	b.wait(`[data-testid="cancel-run"]`)
	b.wait(`[data-testid="refresh-state"]`)
	close(gate)
	for _, task := range []string{"a", "b", "c", "d"} {
		b.wait(node(task, "completed"))
	}
	b.wait(`[data-testid="run-status"][data-state="completed"]`)
	b.gone(`[data-testid="cancel-run"]`)
	b.gone(`[data-testid="refresh-state"]`)

	// Only b changed code since the previous run.
	b.wait(`[data-testid="code-change"][data-task="b"]`)
	b.count(`[data-testid="code-change"]`, 1)
	require.Contains(t, b.text(`[data-testid="code-changed"][data-task="b"]`), "changed from v1")

	// The timeline has a bar for every attempt.
	b.count(`[data-testid="timeline-bar"][data-state="completed"]`, 4)

	// The input, as JSON text (the markup is text, not elements).
	b.click(`[data-testid="open-run-input"]`)
	b.wait(`[data-testid="storage-content"][data-encoding="json"]`)
	content := b.text(`[data-testid="storage-content"]`)
	require.Contains(t, content, `"doc": "hello <b>world</b>"`)
	require.Equal(t, "0", b.evalString(`String(document.querySelectorAll('[data-testid="storage-content"] b').length)`))
	b.click(`[data-testid="storage-close"]`)
	b.gone(`[data-testid="storage-panel"]`)

	// d's output and a's binary asset.
	b.click(`[data-testid="task-row"][data-task="d"] [data-testid="open-output"]`)
	b.waitJS("d's output", `(document.querySelector('[data-testid="storage-content"]') || {}).textContent?.includes('"task": "d"')`)
	b.click(`[data-testid="storage-close"]`)
	b.click(`[data-testid="task-row"][data-task="a"] [data-testid="open-asset"]`)
	b.wait(`[data-testid="storage-download"]`)
	require.Equal(t, "blob", b.evalString(`document.querySelector('[data-testid="storage-download"]').getAttribute('download')`))
	b.click(`[data-testid="storage-close"]`)

	// d's attempts.
	b.click(`[data-testid="show-attempts"][data-task="d"]`)
	b.wait(`[data-testid="task-detail"] [data-testid="attempt-row"][data-state="completed"]`)
	b.screenshot("run-detail")

	b.route("/")
	b.wait(fmt.Sprintf(`[data-testid="run-row"][data-run-id=%q][data-state="completed"]`, runID))
	b.waitJS("8 completed tasks", `document.querySelector('[data-testid="stat-completed"] [data-testid="stat-value"]').textContent === '8'`)
	b.screenshot("overview")
}

// A task that fails without retry: its run shows the failure and the task's attempts show
// the error; once the task is fixed, retrying it from the DLQ page completes the run, and
// "Retry all" retries the remaining entry.
func TestFailedTaskRetriedFromDLQ(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	s.failC.Store(true)
	run1 := s.trigger(map[string]any{"doc": "one"})
	run2 := s.trigger(map[string]any{"doc": "two"})
	s.waitRun(run1, "failed")
	s.waitRun(run2, "failed")

	b := newBrowser(t, s.url)
	b.open("/runs/" + run1)
	b.wait(`[data-testid="run-status"][data-state="failed"]`)
	b.wait(node("c", "failed"))
	require.Contains(t, b.text(`[data-testid="task-row"][data-task="c"] [data-testid="task-error"]`), "c cannot handle this input")
	b.wait(`[data-testid="run-error"]`)
	b.click(node("c", "failed"))
	b.count(`[data-testid="task-detail"] [data-testid="attempt-row"][data-state="failed"]`, 1)
	require.Contains(t, b.text(`[data-testid="task-detail"] [data-testid="attempt-error"]`), "c cannot handle this input")
	b.wait(`[data-testid="timeline-bar"][data-task="c"][data-state="failed"]`)
	b.screenshot("run-failed")

	// The overview counts two open entries of c.
	b.route("/")
	b.waitJS("two failures of c", `(document.querySelector('[data-testid="failing-task"][data-task="c"] [data-testid="failing-task-count"]') || {}).textContent === '2'`)

	s.failC.Store(false)
	b.route("/dlq")
	b.count(`[data-testid="dlq-row"][data-state="open"]`, 2)
	row1 := fmt.Sprintf(`[data-testid="dlq-row"][data-run-id=%q]`, run1)
	b.click(row1 + ` [data-testid="dlq-show"]`)
	b.wait(`[data-testid="dlq-detail"] [data-testid="dlq-attempt-row"]`)
	require.Contains(t, b.text(`[data-testid="dlq-detail"] [data-testid="dlq-attempt-error"]`), "c cannot handle this input")
	b.screenshot("dlq")

	// Retry run1's entry: asked first, then done.
	b.click(row1 + ` [data-testid="dlq-retry"]`)
	b.click(`[data-testid="confirm-yes"]`)
	require.Contains(t, b.text(`[data-testid="dlq-retry-ok"]`), "Retried c")
	b.count(`[data-testid="dlq-row"]`, 1)
	b.click(`[data-testid="dlq-retried-run"]`)
	b.wait(node("c", "completed"))
	b.wait(node("d", "completed"))
	b.wait(`[data-testid="run-status"][data-state="completed"]`)
	// The failed attempt of the replaced task run is still shown.
	b.click(`[data-testid="show-attempts"][data-task="c"]`)
	b.wait(`[data-testid="task-detail"] [data-testid="attempt-row"][data-state="failed"]`)
	b.wait(`[data-testid="task-detail"] [data-testid="attempt-row"][data-state="completed"]`)

	// Retry all the rest.
	b.route("/dlq")
	b.count(`[data-testid="dlq-row"]`, 1)
	b.click(`[data-testid="dlq-retry-all"]`)
	b.wait(`[data-testid="confirm-bar"]`)
	b.click(`[data-testid="confirm-yes"]`)
	require.Contains(t, b.text(`[data-testid="dlq-retry-all-ok"]`), "Retried 1 entry")
	b.wait(`[data-testid="dlq-empty"]`)
	b.route("/runs/" + run2)
	b.wait(`[data-testid="run-status"][data-state="completed"]`)

	// Both entries are listed as retried.
	b.route("/dlq?state=retried")
	b.count(`[data-testid="dlq-row"][data-state="retried"]`, 2)
}

// A run that timed out (timeoutMs) shows its deadline and PIPELINE_TIMEOUT with its error.
func TestTimedOutRunShowsItsDeadline(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	// b holds the run open until the sweep (POST /api/process: serverless mode) times it out.
	gate := make(chan struct{})
	s.gateB.Store(&gate)
	t.Cleanup(func() { close(gate) })
	var res struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.Equal(t, http.StatusCreated, s.api("POST", "/api/pipelines/diamond/trigger",
		map[string]any{"input": map[string]any{"doc": "slow"}, "timeoutMs": 1}, &res))
	require.Equal(t, http.StatusOK, s.api("POST", "/api/process", nil, nil))
	s.waitRun(res.PipelineRunID, "failed")

	b := newBrowser(t, s.url)
	b.open("/runs/" + res.PipelineRunID)
	b.wait(`[data-testid="run-status"][data-state="failed"]`)
	require.Contains(t, b.text(`[data-testid="run-error"]`), "PIPELINE_TIMEOUT: pipeline run timed out after 1 ms")
	require.Contains(t, b.text(`[data-testid="run-deadline"]`), "timeout 1 ms")
}

// A run with a sub-pipeline node links to its child run, and the child's page links back.
func TestRunPageLinksSubPipelines(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	require.Equal(t, http.StatusOK, s.api("PUT", "/api/pipelines/lone", map[string]any{"entryTasks": []string{"d"}}, nil))
	require.Equal(t, http.StatusOK, s.api("PUT", "/api/pipelines/wrap", map[string]any{"entryTasks": []string{"a"},
		"nodes": map[string]any{"c": map[string]any{"pipeline": "lone"}}}, nil))
	var res struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.Equal(t, http.StatusCreated, s.api("POST", "/api/pipelines/wrap/trigger", map[string]any{"input": map[string]any{"doc": "x"}}, &res))
	s.waitRun(res.PipelineRunID, "completed")
	var run struct {
		ChildRunIDs []string `json:"childRunIds"`
	}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/runs/"+res.PipelineRunID, nil, &run))
	require.Len(t, run.ChildRunIDs, 1)

	b := newBrowser(t, s.url)
	b.open("/runs/" + res.PipelineRunID)
	b.wait(`[data-testid="run-status"][data-state="completed"]`)
	b.count(`[data-testid="run-child"][data-task="c"][data-state="completed"]`, 1)
	require.Contains(t, b.text(`[data-testid="run-child"]`), "c → lone")
	b.click(`[data-testid="run-child-link"]`)
	b.wait(`[data-testid="run-parent"]`)
	require.Contains(t, b.text(`[data-testid="run-parent"]`), res.PipelineRunID)
	require.Contains(t, b.text(`[data-testid="run-parent"]`), "(node c)")
	require.Contains(t, b.text(`[data-testid="run-id"]`), run.ChildRunIDs[0])
	b.click(`[data-testid="run-parent-link"]`)
	b.wait(`[data-testid="run-children"]`)
	// The dry run names the sub-pipeline node's pipeline, linked.
	b.open("/pipelines/wrap")
	b.click(`[data-testid="dry-run-button"]`)
	require.Contains(t, b.text(`[data-testid="plan-sub-node"][data-task="c"]`), "c: runs pipeline lone")
	b.click(`[data-testid="plan-sub-node"] a`)
	b.wait(`[data-testid="dry-run-button"]`)
}

// With PIPEWEAVE_API_KEYS set the page itself loads, asks for a key when the API answers
// 401, asks again after a wrong one, keeps the right one and forgets it on request.
func TestAPIKeyPrompt(t *testing.T) {
	t.Parallel()
	const key = "dashboard-test-key"
	s := newStack(t, func(c *core.Config) { c.APIKeys = []string{"another-key", key} })
	s.startWorker(nil)
	var status map[string]any
	s.keys = nil
	require.Equal(t, http.StatusUnauthorized, s.api("GET", "/api/queue/status", nil, &status))
	s.keys = []string{key}
	// The page itself needs no key; /ui redirects to /ui/.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(s.url + "/ui/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	resp, err = client.Get(s.url + "/ui")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))

	b := newBrowser(t, s.url)
	b.open("/")
	b.wait(`[data-testid="key-prompt"]`)
	b.gone(`[data-testid="key-error"]`)
	b.screenshot("key-prompt")

	b.fill(`[data-testid="key-input"]`, "wrong-key")
	b.click(`[data-testid="key-submit"]`)
	b.wait(`[data-testid="key-error"]`)
	b.wait(`[data-testid="key-prompt"]`)
	require.Contains(t, b.text(`[data-testid="key-error"]`), "refused")

	b.do("type the key", chromedp.SendKeys(chromedp.CSS(`[data-testid="key-input"]`), key))
	b.click(`[data-testid="key-submit"]`)
	b.gone(`[data-testid="key-prompt"]`)
	b.wait(`[data-testid="stat-pending"]`)
	b.wait(`[data-testid="forget-key"]`)
	require.Equal(t, key, b.evalString(`localStorage.getItem('pipeweave.apiKey')`))

	// Kept across pages and page loads.
	b.open("/pipelines")
	b.count(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="dag-node"]`, 4)
	b.gone(`[data-testid="key-prompt"]`)

	// Forgotten on request: asked again.
	b.click(`[data-testid="forget-key"]`)
	b.wait(`[data-testid="key-prompt"]`)
	require.Equal(t, "", b.evalString(`localStorage.getItem('pipeweave.apiKey') || ''`))
	b.fill(`[data-testid="key-input"]`, key)
	b.click(`[data-testid="key-submit"]`)
	b.count(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="dag-node"]`, 4)
}

// The Services page lists the service, its tasks and a task's code history.
func TestServicesAndTaskHistory(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.startWorker(nil)
	s.startWorker(map[string]string{"b": "b-v2"})

	b := newBrowser(t, s.url)
	// A paused task shows as paused.
	require.Equal(t, http.StatusOK, s.api("POST", "/api/tasks/c/pause", nil, nil))
	b.open("/services")
	b.click(`[data-testid="service-row"][data-service-id="diamond"] [data-testid="service-link"]`)
	b.count(`[data-testid="service-task-row"]`, 4)
	b.count(`[data-testid="task-paused"]`, 1)
	b.wait(`[data-testid="service-task-row"][data-task="c"] [data-testid="task-paused"]`)
	b.click(`[data-testid="task-history-link"][data-task="b"]`)
	b.count(`[data-testid="history-row"]`, 2)
	b.wait(`[data-testid="history-row"][data-version="2"]`)
	b.wait(`[data-testid="history-row"][data-version="1"]`)
	require.Contains(t, b.text(`[data-testid="history-row"][data-version="2"]`), "b-v2")
	b.screenshot("services")

	// A paused pipeline shows as paused, on its card and on its page.
	require.Equal(t, http.StatusOK, s.api("POST", "/api/pipelines/diamond/pause", nil, nil))
	b.open("/pipelines")
	b.wait(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="pipeline-paused"]`)
	b.open("/pipelines/diamond")
	b.wait(`[data-testid="pipeline-detail"] [data-testid="pipeline-paused"]`)
	require.Equal(t, http.StatusOK, s.api("POST", "/api/pipelines/diamond/resume", nil, nil))
	b.open("/pipelines")
	b.count(`[data-testid="pipeline-card"][data-pipeline-id="diamond"] [data-testid="dag-node"]`, 4)
	b.gone(`[data-testid="pipeline-paused"]`)

	// Maintenance shows as a banner on every page, and goes away when it ends.
	b.gone(`[data-testid="maintenance-banner"]`)
	require.Equal(t, http.StatusOK, s.api("POST", "/api/maintenance/enter", nil, nil))
	b.route("/dlq")
	b.wait(`[data-testid="maintenance-banner"][data-mode="maintenance"]`)
	require.Contains(t, b.text(`[data-testid="maintenance-banner"]`), "Maintenance mode")
	b.screenshot("maintenance")
	require.Equal(t, http.StatusOK, s.api("POST", "/api/maintenance/exit", nil, nil))
	b.route("/")
	b.gone(`[data-testid="maintenance-banner"]`)
}
