package browsertest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A sub-pipeline node in the dashboard's graphs: drawn apart from task nodes (a box in a box,
// marked pipeline) with a link to the pipeline it runs on a pipeline's page and to its child
// run on a run's page; the dry run nests the child plans.
func TestSubPipelineNodeInGraphs(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	s.o.FamilyWorker(t, gate)

	b := newBrowser(t, s.url)
	b.open("/pipelines/outer")
	sub := `[data-testid="pipeline-dag"] ` + node("s", "") + `[data-pipeline="mid"]`
	b.wait(sub)
	require.Equal(t, "pipeline", b.text(sub+` [data-testid="dag-node-sub"]`))
	require.Equal(t, "mid ↗", b.text(sub+` [data-testid="dag-node-link"] text`))
	require.Equal(t, "#/pipelines/mid", b.evalString(`document.querySelector(`+js(sub+` [data-testid="dag-node-link"]`)+`).getAttribute('href')`))
	b.count(`[data-testid="pipeline-dag"] [data-testid="dag-node"][data-pipeline]`, 1)
	b.count(`[data-testid="pipeline-dag"] .sub-node`, 1)
	b.count(`[data-testid="pipeline-dag"] [data-testid="dag-node-sub"]`, 1)

	// The dry run: s runs mid, whose plan is nested, with ms running inner nested in it.
	b.click(`[data-testid="dry-run-button"]`)
	require.Contains(t, b.text(`[data-testid="plan-sub-node"][data-task="s"] > [data-testid="plan-sub-steps"]`), "steps: m1 → ms → m2")
	require.Contains(t, b.text(`[data-testid="plan-sub-node"][data-task="s"] [data-testid="plan-sub-node"][data-task="ms"]`), "ms: runs pipeline inner")
	require.Contains(t, b.text(`[data-testid="plan-sub-node"][data-task="ms"] [data-testid="plan-sub-steps"]`), "steps: i1")
	b.screenshot("sub-pipeline-dry-run")

	// The node's link opens the pipeline it runs.
	b.click(sub + ` [data-testid="dag-node-link"]`)
	b.wait(`[data-testid="pipeline-dag"] ` + node("ms", "") + `[data-pipeline="inner"]`)

	var res struct {
		PipelineRunID string `json:"pipelineRunId"`
	}
	require.Equal(t, http.StatusCreated, s.api("POST", "/api/pipelines/outer/trigger", map[string]any{"input": map[string]any{}}, &res))
	id := res.PipelineRunID
	var outer struct {
		ChildRunIDs []string `json:"childRunIds"`
	}
	s.waitChildren(id, &outer.ChildRunIDs)

	// On the run page the node links to its child run once it exists.
	b.route("/runs/" + id)
	link := `[data-testid="run-dag"] ` + node("s", "waiting") + ` [data-testid="dag-node-link"][data-target="run"]`
	b.wait(link)
	require.Equal(t, "#/runs/"+outer.ChildRunIDs[0], b.evalString(`document.querySelector(`+js(link)+`).getAttribute('href')`))
	b.wait(`[data-testid="task-row"][data-task="s"] [data-testid="task-child"]`)
	b.screenshot("sub-pipeline-run")
	b.click(link)
	b.wait(`[data-testid="run-parent"]`)
	require.Contains(t, b.text(`[data-testid="run-id"]`), outer.ChildRunIDs[0])
	b.wait(`[data-testid="run-dag"] ` + node("ms", "waiting") + `[data-pipeline="inner"] [data-testid="dag-node-link"][data-target="run"]`)

	release()
	b.route("/runs/" + id)
	b.wait(`[data-testid="run-status"][data-state="completed"]`)
	b.wait(`[data-testid="run-dag"] ` + node("s", "completed") + ` [data-testid="dag-node-link"][data-target="run"]`)
	// A click on the node itself (not its link) opens its detail, as for any task.
	b.click(`[data-testid="run-dag"] ` + node("s", "") + ` .node-box`)
	b.wait(`[data-testid="task-detail"] [data-testid="attempts-table"]`)

	// A node whose child cannot run now (ghost's entry task is not registered): the dry run
	// says a run would fail it, and why.
	require.Equal(t, http.StatusOK, s.api("PUT", "/api/pipelines/ghost", map[string]any{"entryTasks": []string{"nobody"}}, nil))
	require.Equal(t, http.StatusOK, s.api("PUT", "/api/pipelines/holder", map[string]any{"entryTasks": []string{"a"},
		"nodes": map[string]any{"s": map[string]any{"pipeline": "ghost"}}}, nil))
	b.route("/pipelines/holder")
	b.click(`[data-testid="dry-run-button"]`)
	bad := `[data-testid="plan-sub-node"][data-task="s"][data-error-code="SUB_PIPELINE_INVALID"]`
	require.Contains(t, b.text(bad+` [data-testid="plan-sub-error"]`), "a run would fail the node with SUB_PIPELINE_INVALID")
	require.Contains(t, b.text(bad+` [data-testid="plan-sub-errors"]`), "nobody")
	require.Contains(t, b.text(`[data-testid="dry-run-warnings"]`), `pipeline "ghost" cannot run`)
}

// waitChildren waits until pipeline run id has a child run and sets ids to its child run ids.
func (s *stack) waitChildren(id string, ids *[]string) {
	s.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		var run struct {
			ChildRunIDs []string `json:"childRunIds"`
		}
		require.Equal(s.t, http.StatusOK, s.api("GET", "/api/runs/"+id, nil, &run))
		if len(run.ChildRunIDs) > 0 {
			*ids = run.ChildRunIDs
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("pipeline run %s has no child run after %s", id, waitLimit)
}
