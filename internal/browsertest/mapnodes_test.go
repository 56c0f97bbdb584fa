package browsertest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/worker"
)

// A map node on the dashboard: the dry run says its item count is unknown until run time; the
// run page draws it as a map with its items counted by state (read without the item rows),
// pages through its items, filters them by state and opens an item's own task run page.
func TestMapNodeOnRunPage(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	const n = 55
	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	s.o.PagesWorker(t, n, 3, gate)

	b := newBrowser(t, s.url)
	b.open("/pipelines/pages")
	b.wait(`[data-testid="pipeline-dag"] [data-testid="dag-node"][data-task="ocr"][data-map="true"]`)
	b.click(`[data-testid="dry-run-button"]`)
	require.Contains(t, b.text(`[data-testid="plan-map-node"][data-task="ocr"]`), "item count unknown until run time")

	var res struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.Equal(t, http.StatusCreated, s.api("POST", "/api/pipelines/pages/trigger", map[string]any{"input": map[string]any{}}, &res))
	id := res.PipelineRunID

	b.route("/runs/" + id)
	b.wait(node("ocr", "waiting") + `[data-map="true"]`)
	// Items 0 and 2 completed, 1 failed, the others held: the counts show it.
	b.wait(`[data-testid="task-row"][data-task="ocr"] [data-testid="map-counts"][data-total="55"]`)
	b.wait(`[data-testid="task-row"][data-task="ocr"] [data-testid="map-count"][data-state="completed"][data-count="2"]`)
	b.wait(`[data-testid="task-row"][data-task="ocr"] [data-testid="map-count"][data-state="failed"][data-count="1"]`)
	b.waitJS("the DAG node's count", fmt.Sprintf(`(document.querySelector(%s) || {}).textContent === 'waiting · 3/55'`,
		js(node("ocr", "")+` [data-testid="dag-node-state"]`)))
	b.count(`[data-testid="task-row"]`, 3)
	b.wait(`[data-testid="task-row"][data-task="ocr"] [data-testid="map-progress"][data-progress="5"]`)

	// The map node's detail: a page of 50 items, the next page, a filter by state.
	b.click(node("ocr", ""))
	b.count(`[data-testid="map-item-row"]`, 50)
	b.wait(`[data-testid="map-item-row"][data-index="0"][data-state="completed"]`)
	b.wait(`[data-testid="map-item-row"][data-index="1"][data-state="failed"]`)
	b.screenshot("map-node")
	b.click(`[data-testid="map-items-next"]`)
	b.count(`[data-testid="map-item-row"]`, n-50)
	b.wait(`[data-testid="map-item-row"][data-index="54"]`)
	b.gone(`[data-testid="map-items-next"]`)
	b.click(`[data-testid="map-items-first"]`)
	b.count(`[data-testid="map-item-row"]`, 50)
	b.click(`[data-testid="task-detail"] [data-testid="map-count"][data-state="failed"]`)
	b.count(`[data-testid="map-item-row"]`, 1)
	b.wait(`[data-testid="map-item-row"][data-index="1"]`)

	// An item's own page, and back to its run.
	b.click(`[data-testid="map-item-row"][data-index="1"] [data-testid="map-item-link"]`)
	b.wait(`[data-testid="task-run-status"][data-state="failed"]`)
	require.Equal(t, "ocr", b.text(`[data-testid="task-run-task"]`))
	require.Contains(t, b.text(`[data-testid="attempt-error"]`), "page 1 is unreadable")
	b.click(`[data-testid="task-run-pipeline"]`)
	b.wait(`[data-testid="task-detail"] [data-testid="map-counts"]`)

	release()
	b.wait(`[data-testid="run-status"][data-state="failed"]`)
	b.wait(`[data-testid="task-row"][data-task="ocr"][data-state="completed"] [data-testid="map-count"][data-state="completed"][data-count="54"]`)
	b.wait(node("ocr", "completed"))
	b.wait(node("merge", "completed"))
	b.wait(`[data-testid="task-row"][data-task="ocr"] [data-testid="map-progress"][data-progress="100"]`)

	// The page never read the run with its item rows.
	full := b.evalString(`performance.getEntriesByType('resource').map((e) => e.name)
		.filter((u) => u.includes('/api/runs/') && !u.includes('items=false') && !u.includes('/maps/')).join(' ')`)
	require.Empty(t, strings.TrimSpace(full))
}

// A spawn node in the dashboard's dry run: its bounds, and that its runs are counted only at
// run time.
func TestSpawnNodeInTheDryRunPage(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	w := s.o.Worker(t, "fan")
	noop := func(*worker.Context) (any, error) { return nil, nil }
	require.NoError(t, w.Register("plan", worker.Options{AllowedNext: []string{"join"}}, noop))
	require.NoError(t, w.Register("join", worker.Options{}, noop))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, s.api("PUT", "/api/pipelines/fan", map[string]any{"entryTasks": []string{"plan"},
		"nodes": map[string]any{"plan": map[string]any{"spawn": map[string]any{"maxItems": 20, "maxConcurrency": 3}}}}, nil))

	b := newBrowser(t, s.url)
	b.open("/pipelines/fan")
	b.click(`[data-testid="dry-run-button"]`)
	require.Equal(t, "plan: spawns at most 20 runs, 3 at once and waits for them; count unknown until run time",
		strings.TrimSpace(b.text(`[data-testid="plan-spawn-node"][data-task="plan"]`)))
}
