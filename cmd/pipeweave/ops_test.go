package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/internal/testutil"
	"github.com/pipeweave/pipeweave/internal/wiretest"
	"github.com/pipeweave/pipeweave/worker"
)

// cliStack is a real orchestrator (serverless mode: triggers, callbacks and retries dispatch
// inline) on its own database, served over HTTP, with a real worker of service "docs" whose
// tasks make the implicit pipeline docs: extract → summarize.
//
// Both handlers read the input {"fail": [task…], "hold": bool}: a task named in fail returns a
// non-retryable error (until healed is set); extract reports 40% "reading page 4" and, with
// hold, waits for release before it completes.
type cliStack struct {
	t      *testing.T
	o      *testorch.Orchestrator
	pool   *pgxpool.Pool
	url    string
	apiKey string
	// healed makes the handlers ignore "fail".
	healed atomic.Bool
	gate   chan struct{}
	once   sync.Once
}

// cliInput is the input the test handlers understand.
type cliInput struct {
	Fail []string `json:"fail"`
	Hold bool     `json:"hold"`
}

func newCLIStack(t *testing.T, apiKeys ...string) *cliStack {
	t.Helper()
	o := testorch.Start(t, testorch.Options{Configure: func(cfg *core.Config) { cfg.APIKeys = apiKeys }})
	s := &cliStack{t: t, o: o, pool: o.Pool, url: o.URL, gate: make(chan struct{})}
	if len(apiKeys) > 0 {
		s.apiKey = apiKeys[0]
	}
	s.startWorker("1", "hash-one")
	return s
}

// startWorker serves and registers a worker of service docs at version, with codeHash for
// both tasks.
func (s *cliStack) startWorker(version, codeHash string) {
	t := s.t
	t.Helper()
	w := s.o.Worker(t, "docs", func(c *worker.Config) { c.Version, c.CodeHash = version, codeHash })
	// Runs before the worker waits for its attempts: release the held ones.
	t.Cleanup(s.release)
	fails := func(ctx *worker.Context) (cliInput, bool) {
		var in cliInput
		_ = ctx.Decode(&in) // any input is fine
		return in, !s.healed.Load() && slices.Contains(in.Fail, ctx.TaskID)
	}
	// The input schema accepts every input the tests send; TestCLITriggerValidation breaks it.
	schema := json.RawMessage(`{"fields": [{"name": "hold", "type": "boolean", "label": "Hold"},
		{"name": "fail", "type": "array", "label": "Fail", "items": {"name": "task", "type": "string", "label": "Task"}}]}`)
	require.NoError(t, w.Register("extract", worker.Options{AllowedNext: []string{"summarize"}, InputSchema: schema}, func(ctx *worker.Context) (any, error) {
		in, fail := fails(ctx)
		if fail {
			return nil, worker.Fail("BAD_INPUT", "no pages in the document")
		}
		if err := ctx.Progress(40, "reading page 4"); err != nil {
			return nil, err
		}
		if in.Hold {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]any{"pages": 4}, nil
	}))
	require.NoError(t, w.Register("summarize", worker.Options{}, func(ctx *worker.Context) (any, error) {
		if _, fail := fails(ctx); fail {
			return nil, worker.Fail("NOTHING_TO_SUMMARIZE", "the document is empty")
		}
		return map[string]any{"summary": "four pages"}, nil
	}))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)
}

// release lets held extract attempts complete.
func (s *cliStack) release() { s.once.Do(func() { close(s.gate) }) }

// env is the environment of a CLI pointed at the stack (with its API key, if any).
func (s *cliStack) env() map[string]string {
	env := map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": s.url}
	if s.apiKey != "" {
		env["PIPEWEAVE_API_TOKEN"] = s.apiKey
	}
	return env
}

// cli runs the command line against the stack and requires it to succeed.
func (s *cliStack) cli(args ...string) string {
	s.t.Helper()
	out, stderr, err := runCmd(s.t, s.env(), args...)
	require.NoError(s.t, err, "pipeweave %v\nstdout:\n%s\nstderr:\n%s", args, out, stderr)
	return out
}

// cliJSON runs the command line with --json and decodes all of stdout into v.
func (s *cliStack) cliJSON(v any, args ...string) {
	s.t.Helper()
	out := s.cli(append(args, "--json")...)
	require.NoError(s.t, json.Unmarshal([]byte(out), v), "stdout of pipeweave %v is not the JSON expected:\n%s", args, out)
}

// api calls the API directly (setting things up, checking them).
func (s *cliStack) api(method, path string, body, out any) {
	s.t.Helper()
	c, err := apiclient.New(s.url, s.apiKey)
	require.NoError(s.t, err)
	_, err = c.Do(context.Background(), method, path, nil, body, out)
	require.NoError(s.t, err)
}

// trigger starts a run of pipeline with input through the API and returns its id.
func (s *cliStack) trigger(pipeline string, input any) string {
	s.t.Helper()
	var res protocol.TriggerResult
	s.api(http.MethodPost, "/api/pipelines/"+pipeline+"/trigger", map[string]any{"input": input}, &res)
	return res.PipelineRunID
}

// waitUntil polls cond until it holds (within a generous limit).
func (s *cliStack) waitUntil(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRun waits until the pipeline run id has ended and returns it.
func (s *cliStack) waitRun(id string) protocol.PipelineRun {
	s.t.Helper()
	var run protocol.PipelineRun
	s.waitUntil("run "+id+" to end", func() bool {
		run = protocol.PipelineRun{}
		s.api(http.MethodGet, "/api/runs/"+id, nil, &run)
		return run.Status != "running"
	})
	return run
}

// waitTaskRun waits until the task run id has ended.
func (s *cliStack) waitTaskRun(id string) protocol.TaskRun {
	s.t.Helper()
	var tr protocol.TaskRun
	s.waitUntil("task run "+id+" to end", func() bool {
		tr = protocol.TaskRun{}
		s.api(http.MethodGet, "/api/task-runs/"+id, nil, &tr)
		return tr.Status == "completed" || tr.Status == "failed" || tr.Status == "cancelled"
	})
	return tr
}

// dlq lists the DLQ entries with query through the API.
func (s *cliStack) dlq(query string) []protocol.DLQEntry {
	s.t.Helper()
	var p struct {
		Items []protocol.DLQEntry `json:"items"`
	}
	s.api(http.MethodGet, "/api/dlq?limit=500&"+query, nil, &p)
	return p.Items
}

// taskOf returns the task run of task in run.
func taskOf(t *testing.T, run protocol.PipelineRun, task string) protocol.PipelineRunTask {
	t.Helper()
	for _, tr := range run.Tasks {
		if tr.TaskID == task && tr.SupersededBy == "" {
			return tr
		}
	}
	t.Fatalf("run %s has no task run of %s: %+v", run.ID, task, run.Tasks)
	return protocol.PipelineRunTask{}
}

// dataRows returns the lines of a table after its header.
func dataRows(out string) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	return lines[1:]
}

// Every read command, in text and in JSON, against a real orchestrator and worker.
func TestCLIReadCommands(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)

	// A run through the CLI: trigger prints the run id.
	out := s.cli("trigger", "docs", "-i", `{"doc": "a"}`)
	runID := strings.TrimSpace(out)
	require.Regexp(t, `^prun_\w+$`, runID)
	run := s.waitRun(runID)
	require.Equal(t, protocol.PipelineCompleted, run.Status)
	extract := taskOf(t, run, "extract")

	t.Run("services", func(t *testing.T) {
		out := s.cli("services")
		require.Regexp(t, `(?m)^SERVICE\s+VERSION\s+BASE URL\s+TASKS\s+LAST SEEN`, out)
		require.Regexp(t, `(?m)^docs\s+1\s+http://127\.0\.0\.1:\d+\s+2\s+.*(extract, summarize|summarize, extract)$`, out)

		var svcs []protocol.Service
		s.cliJSON(&svcs, "services")
		require.Len(t, svcs, 1)
		require.Equal(t, "docs", svcs[0].ID)
		require.Equal(t, "1", svcs[0].Version)
		require.ElementsMatch(t, []string{"extract", "summarize"}, svcs[0].Tasks)
		require.False(t, svcs[0].RegisteredAt.IsZero())
	})

	t.Run("pipelines", func(t *testing.T) {
		out := s.cli("pipelines")
		require.Regexp(t, `(?m)^PIPELINE\s+SERVICE\s+ENTRY TASKS\s+TASKS\s+FAILURE MODE\s+VALID$`, out)
		require.Regexp(t, `(?m)^docs\s+docs\s+extract\s+2\s+fail-fast\s+yes$`, out)

		var pls []protocol.Pipeline
		s.cliJSON(&pls, "pipelines")
		require.Len(t, pls, 1)
		require.Equal(t, "docs", pls[0].ID)
		require.True(t, pls[0].Valid)
		require.Equal(t, []string{"extract"}, pls[0].EntryTasks)
		require.Equal(t, []string{"summarize"}, pls[0].Tasks["extract"].AllowedNext)
		require.Equal(t, []string{"extract"}, pls[0].Tasks["summarize"].Predecessors)
	})

	t.Run("status of a pipeline run", func(t *testing.T) {
		out := s.cli("status", runID)
		require.Regexp(t, `(?m)^run\s+`+runID+`$`, out)
		require.Regexp(t, `(?m)^pipeline\s+docs$`, out)
		require.Regexp(t, `(?m)^status\s+completed$`, out)
		require.Regexp(t, `(?m)^failure mode\s+fail-fast$`, out)
		require.Regexp(t, `(?m)^TASK\s+STATUS\s+ATTEMPT\s+DURATION\s+CODE\s+CHANGED\s+PROGRESS\s+TASK RUN\s+ERROR$`, out)
		require.Regexp(t, `(?m)^extract\s+completed\s+1\s+\S+\s+v1\s+-\s+40% reading page 4\s+`+extract.ID+`\s+-$`, out)
		require.Regexp(t, `(?m)^summarize\s+completed\s+1\s+`, out)
		// extract comes first: it precedes summarize in the DAG.
		require.Less(t, strings.Index(out, "\nextract "), strings.Index(out, "\nsummarize "))

		var got protocol.PipelineRun
		s.cliJSON(&got, "status", runID)
		require.Equal(t, runID, got.ID)
		require.Equal(t, protocol.PipelineCompleted, got.Status)
		require.Len(t, got.Tasks, 2)
		ex := taskOf(t, got, "extract")
		require.Equal(t, 40, deref(ex.Progress))
		require.Equal(t, "reading page 4", ex.ProgressMessage)
		require.False(t, ex.CodeChanged)
		require.NotNil(t, got.Snapshot)
	})

	t.Run("status of a task run", func(t *testing.T) {
		out := s.cli("status", extract.ID)
		require.Regexp(t, `(?m)^task run\s+`+extract.ID+`$`, out)
		require.Regexp(t, `(?m)^task\s+extract$`, out)
		require.Regexp(t, `(?m)^pipeline run\s+`+runID+`$`, out)
		require.Regexp(t, `(?m)^status\s+completed$`, out)
		require.Regexp(t, `(?m)^code\s+v1 \(hash-one\)$`, out)
		require.Regexp(t, `(?m)^progress\s+40% reading page 4$`, out)
		require.Regexp(t, `(?m)^output\s+\S+ \(\d+ bytes\)$`, out)

		var got protocol.TaskRun
		s.cliJSON(&got, "status", extract.ID)
		require.Equal(t, extract.ID, got.ID)
		require.Equal(t, "extract", got.TaskID)
		require.Equal(t, runID, got.PipelineRunID)
		require.NotNil(t, got.OutputPath)
	})

	t.Run("dry-run", func(t *testing.T) {
		out := s.cli("dry-run", "docs")
		require.Contains(t, out, "pipeline docs: valid\n")
		require.Regexp(t, `(?m)^\s+1\s+entry\s+extract\s+-$`, out)
		require.Regexp(t, `(?m)^\s+2\s+end\s+summarize\s+-$`, out)

		var plan protocol.DryRun
		s.cliJSON(&plan, "dry-run", "docs")
		require.True(t, plan.Valid)
		require.Len(t, plan.ExecutionPlan, 2)
		require.Equal(t, []string{"extract"}, plan.ExecutionPlan[0].Tasks)
		require.Equal(t, "entry", plan.ExecutionPlan[0].Type)
		require.Empty(t, plan.Errors)
	})

	t.Run("queue", func(t *testing.T) {
		out := s.cli("queue", "status")
		require.Regexp(t, `(?m)^completed\s+2$`, out)
		require.Regexp(t, `(?m)^pending\s+0$`, out)
		require.Regexp(t, `(?m)^oldest pending\s+-$`, out)

		var st protocol.QueueStatus
		s.cliJSON(&st, "queue", "status")
		require.EqualValues(t, 2, st.Completed)
		require.Zero(t, st.Failed)

		out = s.cli("queue", "items")
		require.Len(t, dataRows(out), 2, out)
		require.Regexp(t, `(?m)^`+extract.ID+`\s+extract\s+completed\s+1\s+100\s+`+runID+`\s+`, out)

		var items []protocol.TaskRun
		s.cliJSON(&items, "queue", "items", "--task", "extract")
		require.Len(t, items, 1)
		require.Equal(t, extract.ID, items[0].ID)
		s.cliJSON(&items, "queue", "items", "--status", "completed")
		require.Len(t, items, 2)
		s.cliJSON(&items, "queue", "items", "--status", "failed")
		require.Empty(t, items)
		require.Equal(t, "no task runs\n", s.cli("queue", "items", "--status", "failed"))
	})

	// --json prints the server's JSON: pinned to the literal fixtures of testdata/wire, so a
	// renamed field fails here whichever side renamed it.
	t.Run("--json fixtures", func(t *testing.T) {
		summarize := taskOf(t, run, "summarize")
		ids := wiretest.Subst{runID: "<pipelineRunId>", extract.ID: "<extractRunId>", summarize.ID: "<summarizeRunId>"}
		wiretest.Require(t, "status-pipeline-run.json", []byte(s.cli("status", runID, "--json")), ids)
		wiretest.Require(t, "status-task-run.json", []byte(s.cli("status", extract.ID, "--json")), ids)
		wiretest.Require(t, "queue-status.json", []byte(s.cli("queue", "status", "--json")), ids)
	})

	// A new code hash for the tasks: the next run flags them as changed.
	s.startWorker("2", "hash-two")
	second := s.trigger("docs", map[string]any{"doc": "b"})
	require.Equal(t, protocol.PipelineCompleted, s.waitRun(second).Status)
	third := s.trigger("docs", map[string]any{"doc": "c"})
	require.Equal(t, protocol.PipelineCompleted, s.waitRun(third).Status)

	t.Run("code changes", func(t *testing.T) {
		out := s.cli("status", second)
		require.Regexp(t, `(?m)^extract\s+completed\s+1\s+\S+\s+v2\s+yes \(was v1\)\s+`, out)
		require.Regexp(t, `(?m)^summarize\s+completed\s+1\s+\S+\s+v2\s+yes \(was v1\)\s+`, out)
		var got protocol.PipelineRun
		s.cliJSON(&got, "status", second)
		ex := taskOf(t, got, "extract")
		require.True(t, ex.CodeChanged)
		require.Equal(t, 1, deref(ex.PreviousCodeVersion))
		require.Equal(t, 2, ex.CodeVersion)
	})

	t.Run("runs", func(t *testing.T) {
		out := s.cli("runs")
		require.Regexp(t, `(?m)^RUN\s+PIPELINE\s+STATUS\s+FAILURE MODE\s+CREATED\s+DURATION\s+ERROR$`, out)
		rows := dataRows(out)
		require.Len(t, rows, 3, out)
		// Newest first.
		for i, id := range []string{third, second, runID} {
			require.Regexp(t, `^`+id+`\s+docs\s+completed\s+fail-fast\s+`, rows[i])
		}

		var runs []protocol.PipelineRun
		s.cliJSON(&runs, "runs")
		require.Len(t, runs, 3)
		require.Equal(t, third, runs[0].ID)
		require.Equal(t, protocol.PipelineCompleted, runs[0].Status)
		require.NotNil(t, runs[0].CompletedAt)

		// --limit across pages of one: the cursor is followed.
		s.cliJSON(&runs, "runs", "--limit", "2", "--page-size", "1")
		require.Equal(t, []string{third, second}, []string{runs[0].ID, runs[1].ID})
		s.cliJSON(&runs, "runs", "--limit", "0", "--page-size", "1")
		require.Len(t, runs, 3)
		require.Equal(t, runID, runs[2].ID)

		s.cliJSON(&runs, "runs", "--pipeline", "docs", "--status", "completed")
		require.Len(t, runs, 3)
		s.cliJSON(&runs, "runs", "--status", "failed")
		require.Empty(t, runs)
		require.Equal(t, "no runs\n", s.cli("runs", "--pipeline", "other"))
	})
}

// trigger --validation-mode: strict refuses an input that breaks the entry task's schema and
// says what to fix, starting nothing; warn starts the run and prints the violations on stderr.
func TestCLITriggerValidation(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	runs := func() int {
		var p protocol.Page[protocol.PipelineRun]
		s.api(http.MethodGet, "/api/runs", nil, &p)
		return len(p.Items)
	}
	before := runs()
	_, _, err := runCmd(t, s.env(), "trigger", "docs", "-i", `{"hold": "yes", "fail": [1]}`, "--validation-mode", "strict")
	require.EqualError(t, err, `Input validation failed: task "extract": hold: Expected boolean, received string (invalid_type); `+
		`task "extract": fail.0: Expected string, received number (invalid_type) (400 INPUT_VALIDATION_FAILED)`)
	require.Equal(t, before, runs(), "a refused trigger starts no run")

	stdout, stderr, err := runCmd(t, s.env(), "trigger", "docs", "-i", `{"hold": "yes"}`, "--validation-mode", "warn")
	require.NoError(t, err)
	require.Regexp(t, `^prun_\w+\n$`, stdout)
	require.Equal(t, "warning: input task \"extract\": hold: Expected boolean, received string (invalid_type)\n", stderr)
	s.waitRun(strings.TrimSpace(stdout))

	_, _, err = runCmd(t, s.env(), "trigger", "docs", "--validation-mode", "loose")
	require.ErrorContains(t, err, "(400 INVALID_VALIDATION_MODE)")
}

// trigger --timeout-ms sends the run's deadline: a run still held at its deadline fails with
// PIPELINE_TIMEOUT once swept, and --wait says so; a bad value is the server's 400.
func TestCLITriggerTimeout(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	_, _, err := runCmd(t, s.env(), "trigger", "docs", "--timeout-ms", "0")
	require.ErrorContains(t, err, "(400 INVALID_TIMEOUT)")

	// Serverless mode: the sweep runs with each POST /api/process, sent here until the test ends.
	done := make(chan struct{})
	var sweeps sync.WaitGroup
	sweeps.Go(func() {
		c, err := apiclient.New(s.url, s.apiKey)
		if err != nil {
			return
		}
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				_, _ = c.Do(context.Background(), http.MethodPost, "/api/process", nil, nil, nil)
			}
		}
	})
	t.Cleanup(func() {
		close(done)
		sweeps.Wait()
	})
	stdout, _, err := runCmd(t, s.env(), "trigger", "docs", "-i", `{"hold": true}`, "--timeout-ms", "1", "--wait")
	require.Error(t, err)
	id := strings.SplitN(stdout, "\n", 2)[0]
	require.Regexp(t, `^prun_\w+$`, id)
	require.EqualError(t, err, "run "+id+" of pipeline docs ended failed: PIPELINE_TIMEOUT: pipeline run timed out after 1 ms")
	var run protocol.PipelineRun
	s.api(http.MethodGet, "/api/runs/"+id, nil, &run)
	require.Equal(t, int64(1), *run.TimeoutMs)
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	// status shows the deadline and the error with its code.
	out := s.cli("status", id)
	require.Regexp(t, `(?m)^deadline\s+.+\(timeoutMs 1\)$`, out)
	require.Regexp(t, `(?m)^error\s+PIPELINE_TIMEOUT: pipeline run timed out after 1 ms$`, out)
}

// trigger --wait follows a run: plain lines with the worker's progress when stdout is not a
// terminal, exit status 0 for a completed run, an error naming the failed task otherwise.
func TestCLITriggerWait(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)

	t.Run("completed", func(t *testing.T) {
		// extract reports 40% and holds until the CLI has shown it.
		r := startCmd(t, s.env(), "trigger", "docs", "-i", `{"hold": true}`, "--wait", "--poll", "20ms")
		s.waitUntil("the progress line", func() bool {
			return strings.Contains(r.stdout.String(), "extract running 40% reading page 4\n")
		})
		s.release()
		var err error
		select {
		case err = <-r.done:
			r.done <- err
		case <-time.After(time.Minute):
			t.Fatalf("trigger --wait did not return\nstdout:\n%s", r.stdout.String())
		}
		out := r.stdout.String()
		require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, r.stderr.String())
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		require.Regexp(t, `^prun_\w+$`, lines[0])
		runID := lines[0]
		stampRe := `\d\d:\d\d:\d\d `
		require.Regexp(t, `(?m)^`+stampRe+`extract running 40% reading page 4$`, out)
		require.Regexp(t, `(?m)^`+stampRe+`extract completed$`, out)
		require.Regexp(t, `(?m)^`+stampRe+`summarize completed$`, out)
		require.Regexp(t, `^`+stampRe+`run `+runID+` completed in \S+$`, lines[len(lines)-1])
		// One line per change: the running line appears once however often the CLI polled.
		require.Equal(t, 1, strings.Count(out, "extract running 40%"), out)
		require.NotContains(t, out, "\x1b[", "no escape sequences when stdout is not a terminal")
		require.Empty(t, r.stderr.String())
	})

	t.Run("failed", func(t *testing.T) {
		input := filepath.Join(t.TempDir(), "input.json")
		require.NoError(t, os.WriteFile(input, []byte(`{"fail": ["extract"]}`), 0o600))
		out, _, err := runCmd(t, s.env(), "trigger", "docs", "-i", "@"+input, "--wait", "--poll", "20ms")
		require.Error(t, err)
		runID := strings.SplitN(out, "\n", 2)[0]
		require.Regexp(t, `^prun_\w+$`, runID)
		require.Equal(t, "run "+runID+" of pipeline docs ended failed; failed tasks: extract (BAD_INPUT: no pages in the document)", err.Error())
		require.Regexp(t, `(?m)^\d\d:\d\d:\d\d extract failed BAD_INPUT: no pages in the document$`, out)
		require.Regexp(t, `(?m)^\d\d:\d\d:\d\d run `+runID+` failed in \S+$`, out)
	})

	t.Run("--json", func(t *testing.T) {
		var run protocol.PipelineRun
		s.cliJSON(&run, "trigger", "docs", "-i", `{}`, "--wait", "--poll", "20ms")
		require.Regexp(t, `^prun_\w+$`, run.ID)
		require.Equal(t, protocol.PipelineCompleted, run.Status)
		require.Len(t, run.Tasks, 2)

		// Without --wait: the trigger's answer.
		var res protocol.TriggerResult
		s.cliJSON(&res, "trigger", "docs", "--priority", "5", "--failure-mode", "continue")
		require.Regexp(t, `^prun_\w+$`, res.PipelineRunID)
		require.Equal(t, protocol.PipelineRunning, res.Status)
		require.NotEmpty(t, res.InputPath)
		got := s.waitRun(res.PipelineRunID)
		require.Equal(t, "continue", got.FailureMode)
		require.Equal(t, 5, got.Priority)

		// A failed run with --json: the final run on stdout, the error as the exit status.
		out, _, err := runCmd(t, s.env(), "trigger", "docs", "-i", `{"fail": ["summarize"]}`, "--wait", "--poll", "20ms", "--json")
		require.ErrorContains(t, err, "ended failed; failed tasks: summarize (NOTHING_TO_SUMMARIZE: the document is empty)")
		require.NoError(t, json.Unmarshal([]byte(out), &run), out)
		require.Equal(t, protocol.PipelineFailed, run.Status)
		require.Equal(t, protocol.StatusCompleted, taskOf(t, run, "extract").Status)
	})
}

// Errors are one readable line; usage errors send nothing.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	// Nothing listens at refused.
	refused := "http://127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	refusedEnv := map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": refused}

	oneLineErr := func(t *testing.T, err error) string {
		t.Helper()
		require.Error(t, err)
		require.NotContains(t, err.Error(), "\n")
		return err.Error()
	}

	t.Run("404", func(t *testing.T) {
		out, _, err := runCmd(t, s.env(), "trigger", "nope", "-i", "{}")
		require.Equal(t, `pipeline "nope" not found (404 PIPELINE_NOT_FOUND)`, oneLineErr(t, err))
		require.Empty(t, out)
		_, _, err = runCmd(t, s.env(), "status", "prun_nope")
		require.Equal(t, `pipeline run "prun_nope" not found (404 PIPELINE_RUN_NOT_FOUND)`, oneLineErr(t, err))
		_, _, err = runCmd(t, s.env(), "status", "trun_nope", "--json")
		require.Equal(t, `task run "trun_nope" not found (404 RUN_NOT_FOUND)`, oneLineErr(t, err))
		_, _, err = runCmd(t, s.env(), "dlq", "show", "dlq_nope")
		require.Equal(t, `DLQ entry "dlq_nope" not found (404 DLQ_ENTRY_NOT_FOUND)`, oneLineErr(t, err))
		_, _, err = runCmd(t, s.env(), "dry-run", "nope")
		require.Equal(t, `pipeline "nope" not found (404 PIPELINE_NOT_FOUND)`, oneLineErr(t, err))
	})

	t.Run("400 from the server", func(t *testing.T) {
		_, _, err := runCmd(t, s.env(), "trigger", "docs", "--failure-mode", "sideways")
		require.Equal(t, "failureMode must be fail-fast, continue or partial-merge (400 INVALID_FAILURE_MODE)", oneLineErr(t, err))
		_, _, err = runCmd(t, s.env(), "dlq", "purge", "--older-than", "7x")
		require.Regexp(t, `^olderThan: .*"7x".* \(400 INVALID_OLDER_THAN\)$`, oneLineErr(t, err))
	})

	t.Run("connection refused", func(t *testing.T) {
		for _, args := range [][]string{{"services"}, {"runs", "--json"}, {"trigger", "docs", "-i", "{}"}, {"dlq", "list"}} {
			out, _, err := runCmd(t, refusedEnv, args...)
			msg := oneLineErr(t, err)
			require.Equal(t, "cannot reach the orchestrator at "+refused+" (connection refused); start it or point --url or PIPEWEAVE_ORCHESTRATOR_URL at it", msg, "%v", args)
			require.Empty(t, out)
		}
		// --url wins over the environment.
		out, _, err := runCmd(t, refusedEnv, "services", "--url", s.url)
		require.NoError(t, err)
		require.Contains(t, out, "docs")
	})

	// Usage errors are reported before anything is sent: the orchestrator at refused would
	// otherwise be the error.
	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"trigger", "docs", "-i", "{bad"}, "trigger: -i: the input is not valid JSON: invalid character 'b'"},
			{[]string{"trigger", "docs", "-i", ""}, "trigger: -i: the input is empty"},
			{[]string{"trigger", "docs", "-i", "@/nonexistent/input.json"}, "trigger: -i: read the input: open /nonexistent/input.json: no such file or directory"},
			{[]string{"trigger", "docs", "-i", "@"}, "trigger: -i @file: the file name is missing"},
			{[]string{"trigger", "-i", "{}"}, "trigger: missing PIPELINE"},
			{[]string{"trigger", "a", "b"}, `trigger: unexpected argument "b"`},
			{[]string{"status"}, "status: missing RUN"},
			{[]string{"dry-run"}, "dry-run: missing PIPELINE"},
			{[]string{"dlq", "show"}, "dlq show: missing ID"},
			{[]string{"dlq", "retry"}, "dlq retry: missing ID"},
			{[]string{"services", "--frobnicate"}, "services: flag provided but not defined: -frobnicate"},
			{[]string{"runs", "--limit", "-1"}, "runs: --limit must be 0 (all) or more"},
			{[]string{"queue", "items", "--page-size", "501"}, "queue items: --page-size must be between 1 and 500"},
			{[]string{"dlq", "list", "--state", "closed"}, `dlq list: --state must be open or retried, got "closed"`},
			{[]string{"dlq", "purge"}, "dlq purge: --older-than is required"},
			{[]string{"queue", "frobnicate"}, `unknown queue command "frobnicate"`},
			{[]string{"dlq", "frobnicate"}, `unknown dlq command "frobnicate"`},
			{[]string{"services", "--url", "localhost:3000"}, `services: --url "localhost:3000" is not an http(s) URL`},
		} {
			out, _, err := runCmd(t, refusedEnv, tc.args...)
			msg := oneLineErr(t, err)
			require.Contains(t, msg, tc.want, "%v", tc.args)
			require.NotContains(t, msg, "cannot reach", "%v", tc.args)
			require.Empty(t, out, "%v", tc.args)
		}
		// No run was created by the attempts above.
		var runs []protocol.PipelineRun
		s.cliJSON(&runs, "runs")
		require.Empty(t, runs)
	})

	t.Run("-i @file", func(t *testing.T) {
		input := filepath.Join(t.TempDir(), "input.json")
		require.NoError(t, os.WriteFile(input, []byte("{\"doc\": \"from a file\", \"pages\": [1, 2]}\n"), 0o600))
		var res protocol.TriggerResult
		s.cliJSON(&res, "trigger", "-i", "@"+input, "docs") // flags before and after arguments
		s.waitRun(res.PipelineRunID)
		var obj struct {
			Content json.RawMessage `json:"content"`
		}
		s.api(http.MethodGet, "/api/storage/"+res.InputPath, nil, &obj)
		require.JSONEq(t, `{"doc": "from a file", "pages": [1, 2]}`, string(obj.Content))
	})

	t.Run("dry-run of an invalid pipeline", func(t *testing.T) {
		s.api(http.MethodPut, "/api/pipelines/broken", map[string]any{"entryTasks": []string{"ghost"}}, nil)
		out, _, err := runCmd(t, s.env(), "dry-run", "broken")
		msg := oneLineErr(t, err)
		require.Contains(t, msg, `pipeline "broken" is not valid: `)
		require.Contains(t, msg, "ghost")
		require.Contains(t, out, "pipeline broken: NOT valid\n")
		require.Regexp(t, `(?m)^errors:\n  - .*ghost`, out)

		out, _, err = runCmd(t, s.env(), "dry-run", "broken", "--json")
		require.Error(t, err)
		var plan protocol.DryRun
		require.NoError(t, json.Unmarshal([]byte(out), &plan), out)
		require.False(t, plan.Valid)
		require.NotEmpty(t, plan.Errors)

		out = s.cli("pipelines")
		require.Regexp(t, `(?m)^broken\s+-\s+ghost\s+0\s+fail-fast\s+no$`, out)
		require.Regexp(t, `(?m)^broken: .*ghost`, out)
	})

	t.Run("help", func(t *testing.T) {
		out, stderr, err := runCmd(t, nil, "trigger", "-h")
		require.NoError(t, err)
		require.Empty(t, stderr)
		require.Contains(t, out, "pipeweave trigger PIPELINE")
		require.Contains(t, out, "-wait")
		_, stderr, err = runCmd(t, nil, "dlq")
		require.Equal(t, 2, exitCode(err))
		require.Contains(t, stderr, "retry-all  retry every open entry")
	})
}

// With PIPEWEAVE_API_KEYS set, the CLI needs PIPEWEAVE_API_TOKEN (or --token).
func TestCLIAPIKeys(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t, "the-key")
	url := map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": s.url}

	_, _, err := runCmd(t, url, "services")
	require.Error(t, err)
	require.Equal(t, "an API key is required: Authorization: Bearer <key> (401 UNAUTHORIZED); the orchestrator requires an API key: "+
		"set PIPEWEAVE_API_TOKEN (or --token) to one of its PIPEWEAVE_API_KEYS", err.Error())

	bad := map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": s.url, "PIPEWEAVE_API_TOKEN": "not-the-key"}
	_, _, err = runCmd(t, bad, "pipelines")
	require.Error(t, err)
	require.Contains(t, err.Error(), "(401 UNAUTHORIZED); the API token was refused: set PIPEWEAVE_API_TOKEN")
	require.NotContains(t, err.Error(), "not-the-key", "the token is never shown")

	good := map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": s.url, "PIPEWEAVE_API_TOKEN": "the-key"}
	out, _, err := runCmd(t, good, "services")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^docs\s+1\s+`, out)

	// --token instead of the environment.
	out, _, err = runCmd(t, url, "trigger", "docs", "--token", "the-key", "--wait", "--poll", "20ms")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^\d\d:\d\d:\d\d run prun_\w+ completed in \S+$`, out)
	// -h does not show the token from the environment.
	out, _, err = runCmd(t, good, "services", "-h")
	require.NoError(t, err)
	require.NotContains(t, out, "the-key")
}

// dlq list, show, retry, retry-all (with filters) and purge.
func TestCLIDLQ(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	ctx := t.Context()
	// A second pipeline whose entry task is summarize.
	s.api(http.MethodPut, "/api/pipelines/solo", map[string]any{"entryTasks": []string{"summarize"}}, nil)

	// Five failures: two in pipeline docs, one in solo, two standalone runs.
	docsExtract := s.waitRun(s.trigger("docs", cliInput{Fail: []string{"extract"}}))
	docsSummarize := s.waitRun(s.trigger("docs", cliInput{Fail: []string{"summarize"}}))
	solo := s.waitRun(s.trigger("solo", cliInput{Fail: []string{"summarize"}}))
	var standalone []string
	for _, task := range []string{"extract", "summarize"} {
		var res protocol.EnqueueResult
		s.api(http.MethodPost, "/api/queue/task", map[string]any{"taskId": task, "input": cliInput{Fail: []string{task}}}, &res)
		s.waitTaskRun(res.RunID)
		standalone = append(standalone, res.RunID)
	}
	s.waitUntil("five DLQ entries", func() bool { return len(s.dlq("")) == 5 })
	byRun := map[string]protocol.DLQEntry{}
	for _, e := range s.dlq("") {
		byRun[e.TaskRunID] = e
	}
	entryA := byRun[taskOf(t, docsExtract, "extract").ID]     // extract, docs
	entryE := byRun[taskOf(t, docsSummarize, "summarize").ID] // summarize, docs
	entryB := byRun[taskOf(t, solo, "summarize").ID]          // summarize, solo
	entryC := byRun[standalone[0]]                            // extract, no pipeline
	entryD := byRun[standalone[1]]                            // summarize, no pipeline
	for _, e := range []protocol.DLQEntry{entryA, entryB, entryC, entryD, entryE} {
		require.NotEmpty(t, e.ID)
	}

	ids := func(entries []protocol.DLQEntry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, e.ID)
		}
		return out
	}

	t.Run("list", func(t *testing.T) {
		out := s.cli("dlq", "list")
		require.Regexp(t, `(?m)^ID\s+TASK\s+PIPELINE\s+TASK RUN\s+ATTEMPTS\s+FAILED\s+STATE\s+ERROR$`, out)
		require.Len(t, dataRows(out), 5, out)
		require.Regexp(t, `(?m)^`+entryA.ID+`\s+extract\s+docs\s+`+entryA.TaskRunID+`\s+1\s+.*\s+open\s+BAD_INPUT: no pages in the document$`, out)
		require.Regexp(t, `(?m)^`+entryC.ID+`\s+extract\s+-\s+`+entryC.TaskRunID+`\s+1\s+`, out)

		var all []protocol.DLQEntry
		s.cliJSON(&all, "dlq", "list")
		require.ElementsMatch(t, []string{entryA.ID, entryB.ID, entryC.ID, entryD.ID, entryE.ID}, ids(all))
		for _, e := range all {
			require.Len(t, e.AttemptHistory, 1, e.ID)
			require.Equal(t, 1, e.Attempts, e.ID)
			require.NotEmpty(t, e.AttemptHistory[0].Error)
			require.Nil(t, e.RetriedAt)
		}

		var got []protocol.DLQEntry
		s.cliJSON(&got, "dlq", "list", "--task", "extract")
		require.ElementsMatch(t, []string{entryA.ID, entryC.ID}, ids(got))
		s.cliJSON(&got, "dlq", "list", "--pipeline", "docs")
		require.ElementsMatch(t, []string{entryA.ID, entryE.ID}, ids(got))
		s.cliJSON(&got, "dlq", "list", "--pipeline", "docs", "--task", "summarize")
		require.Equal(t, []string{entryE.ID}, ids(got))
		s.cliJSON(&got, "dlq", "list", "--limit", "3", "--page-size", "2")
		require.Equal(t, ids(all)[:3], ids(got))
		require.Equal(t, "no DLQ entries\n", s.cli("dlq", "list", "--pipeline", "solo", "--task", "extract"))
	})

	t.Run("show", func(t *testing.T) {
		out := s.cli("dlq", "show", entryA.ID)
		require.Regexp(t, `(?m)^dlq entry\s+`+entryA.ID+`$`, out)
		require.Regexp(t, `(?m)^task\s+extract$`, out)
		require.Regexp(t, `(?m)^pipeline\s+docs$`, out)
		require.Regexp(t, `(?m)^pipeline run\s+`+docsExtract.ID+`$`, out)
		require.Regexp(t, `(?m)^state\s+open$`, out)
		require.Regexp(t, `(?m)^error\s+BAD_INPUT: no pages in the document$`, out)
		require.Regexp(t, `(?m)^attempts:\nATTEMPT\s+FAILED\s+CODE\s+ERROR\n1\s+.*\s+BAD_INPUT\s+no pages in the document$`, out)

		var e protocol.DLQEntry
		s.cliJSON(&e, "dlq", "show", entryA.ID)
		require.Equal(t, entryA.ID, e.ID)
		require.Equal(t, docsExtract.ID, e.PipelineRunID)
		require.Len(t, e.AttemptHistory, 1)
		require.Equal(t, "BAD_INPUT", e.AttemptHistory[0].ErrorCode)
	})

	// From here on the handlers succeed: retried runs complete.
	s.healed.Store(true)

	t.Run("retry", func(t *testing.T) {
		out := s.cli("dlq", "retry", entryA.ID)
		m := regexp.MustCompile(`^retried ` + entryA.ID + `: task extract queued as run (trun_\w+) at code v\d+\n$`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		// The pipeline run re-opens and goes on from the retried task.
		run := s.waitRun(docsExtract.ID)
		require.Equal(t, protocol.PipelineCompleted, run.Status)
		require.Equal(t, m[1], taskOf(t, run, "extract").ID)

		_, _, err := runCmd(t, s.env(), "dlq", "retry", entryA.ID)
		require.Error(t, err)
		require.Regexp(t, `\(409 ALREADY_RETRIED\)$`, err.Error())

		var res protocol.DLQRetryResult
		s.cliJSON(&res, "dlq", "retry", entryB.ID)
		require.Regexp(t, `^trun_\w+$`, res.RunID)
		require.Equal(t, "summarize", res.TaskID)
		require.Equal(t, "queued", res.Status)
		require.Equal(t, protocol.PipelineCompleted, s.waitRun(solo.ID).Status)

		var got []protocol.DLQEntry
		s.cliJSON(&got, "dlq", "list", "--state", "retried")
		require.ElementsMatch(t, []string{entryA.ID, entryB.ID}, ids(got))
		s.cliJSON(&got, "dlq", "list", "--state", "open")
		require.ElementsMatch(t, []string{entryC.ID, entryD.ID, entryE.ID}, ids(got))
		out = s.cli("dlq", "list", "--state", "retried", "--task", "extract")
		require.Regexp(t, `(?m)\sretried as `+m[1]+`\s`, out)
	})

	t.Run("retry-all", func(t *testing.T) {
		// --pipeline docs: only E is left open there.
		var res protocol.RetryAllResult
		s.cliJSON(&res, "dlq", "retry-all", "--pipeline", "docs")
		require.Equal(t, 1, res.Retried)
		require.Len(t, res.Runs, 1)
		require.Equal(t, entryE.ID, res.Runs[0].DLQID)
		require.Equal(t, "summarize", res.Runs[0].TaskID)
		require.Empty(t, res.Failed)
		require.False(t, res.More)
		require.Equal(t, protocol.PipelineCompleted, s.waitRun(docsSummarize.ID).Status)

		// --task extract: C.
		out := s.cli("dlq", "retry-all", "--task", "extract")
		m := regexp.MustCompile(`^retried 1 DLQ entry\n  ` + entryC.ID + `: task extract queued as run (trun_\w+)\n$`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		require.Equal(t, protocol.StatusCompleted, s.waitTaskRun(m[1]).Status)

		// An entry that cannot be retried: its pipeline run was cancelled meanwhile.
		s.healed.Store(false)
		cancelled := s.waitRun(s.trigger("solo", cliInput{Fail: []string{"summarize"}}))
		s.healed.Store(true)
		require.Equal(t, protocol.PipelineFailed, cancelled.Status)
		s.waitUntil("the new DLQ entry", func() bool { return len(s.dlq("state=open")) == 2 })
		_, err := s.pool.Exec(ctx, `UPDATE pipeweave.pipeline_runs SET status = 'cancelled' WHERE id = $1`, cancelled.ID)
		require.NoError(t, err)
		var entryF protocol.DLQEntry
		for _, e := range s.dlq("state=open&pipelineId=solo") {
			entryF = e
		}
		require.NotEmpty(t, entryF.ID)

		// Everything left: D is retried, F is reported.
		out, _, err = runCmd(t, s.env(), "dlq", "retry-all")
		require.Error(t, err)
		require.Equal(t, "dlq retry-all: 1 entry could not be retried", err.Error())
		require.Regexp(t, `(?m)^retried 1 DLQ entry\n  `+entryD.ID+`: task summarize queued as run trun_\w+$`, out)
		require.Regexp(t, `(?m)^could not retry `+entryF.ID+`: .*\(PIPELINE_RUN_CANCELLED\)$`, out)

		out, _, err = runCmd(t, s.env(), "dlq", "retry-all", "--json")
		require.Error(t, err)
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		require.Zero(t, res.Retried)
		require.Empty(t, res.Runs)
		require.Len(t, res.Failed, 1)
		require.Equal(t, entryF.ID, res.Failed[0].DLQID)
		require.Equal(t, "PIPELINE_RUN_CANCELLED", res.Failed[0].Code)

		require.Equal(t, "retried 0 DLQ entries\n", s.cli("dlq", "retry-all", "--task", "extract"))
	})

	t.Run("purge", func(t *testing.T) {
		_, err := s.pool.Exec(ctx, `UPDATE pipeweave.dlq SET failed_at = now() - interval '8 days' WHERE id = ANY($1)`,
			[]string{entryA.ID, entryC.ID})
		require.NoError(t, err)
		require.Equal(t, "deleted 2 DLQ entries older than 7d\n", s.cli("dlq", "purge", "--older-than", "7d"))
		var res struct {
			Deleted   *int64 `json:"deleted"`
			OlderThan string `json:"olderThan"`
		}
		s.cliJSON(&res, "dlq", "purge", "--older-than", "7d")
		require.Zero(t, deref(res.Deleted))
		require.NotNil(t, res.Deleted)
		require.Equal(t, "7d", res.OlderThan)
		var left []protocol.DLQEntry
		s.cliJSON(&left, "dlq", "list", "--limit", "0")
		require.NotContains(t, ids(left), entryA.ID)
		require.NotContains(t, ids(left), entryC.ID)
		require.Contains(t, ids(left), entryB.ID)
	})
}

// The terminal view redraws its block of lines in place, with each task's state and progress.
func TestLiveView(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC)
	created := now.Add(-10 * time.Second)
	forty := 40
	run := protocol.PipelineRun{
		ID: "prun_1", PipelineID: "docs", Status: "running", CreatedAt: created,
		Snapshot: json.RawMessage(`{"entryTasks": ["extract"], "tasks": {
			"extract": {"allowedNext": ["summarize"]}, "summarize": {"predecessors": ["extract"]}}}`),
		Tasks: []protocol.PipelineRunTask{
			{TaskRun: protocol.TaskRun{ID: "trun_2", TaskID: "summarize", Status: "waiting", Attempt: 1}},
			{TaskRun: protocol.TaskRun{ID: "trun_1", TaskID: "extract", Status: "running", Attempt: 1, Progress: &forty, ProgressMessage: "reading page 4"}},
		},
	}
	var buf strings.Builder
	v := &waitView{w: &buf, terminal: true, seen: map[string]string{}}
	v.update(run, now)
	first := buf.String()
	require.Equal(t, "\r\x1b[2Krun prun_1  pipeline docs  running  10s\n"+
		"\r\x1b[2K  ▶ extract    running      [########............]  40%  reading page 4\n"+
		"\r\x1b[2K  · summarize  waiting    \n", first)

	run.Status = "completed"
	end := now.Add(2 * time.Second)
	run.CompletedAt = &end
	run.Tasks[0].Status, run.Tasks[1].Status = "completed", "completed"
	hundred := 100
	run.Tasks[1].Progress = &hundred
	buf.Reset()
	v.update(run, end)
	v.finish(run, end)
	second := buf.String()
	require.True(t, strings.HasPrefix(second, "\x1b[3A"), "the cursor goes back up over the 3 lines: %q", second)
	require.Contains(t, second, "  ✓ extract    completed    [####################] 100%\n")
	require.True(t, strings.HasSuffix(second, "run prun_1 completed in 12s\n"), second)

	// With colours, states are painted.
	buf.Reset()
	v = &waitView{w: &buf, terminal: true, color: true, seen: map[string]string{}}
	v.update(run, end)
	require.Contains(t, buf.String(), "\x1b[32mcompleted  \x1b[0m")
}

func TestDurationsAndTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	require.Equal(t, "just now", ago(now.Add(-300*time.Millisecond), now))
	require.Equal(t, "12s ago", ago(now.Add(-12*time.Second), now))
	require.Equal(t, "5m ago", ago(now.Add(-5*time.Minute-3*time.Second), now))
	require.Equal(t, "3h ago", ago(now.Add(-3*time.Hour), now))
	require.Equal(t, "4d ago", ago(now.Add(-4*24*time.Hour), now))
	require.Equal(t, "340ms", duration(340*time.Millisecond))
	require.Equal(t, "4.1s", duration(4140*time.Millisecond))
	require.Equal(t, "3m12s", duration(3*time.Minute+12*time.Second+300*time.Millisecond))
	require.Equal(t, "[#####.....]", bar(50, 10))
	require.Equal(t, "a b", apiclient.OneLine("a\nb"))
}

// pipeweave cancel cancels a running task run and a running pipeline run, shows each as status
// does, and fails with the status of a run that already ended.
func TestCLICancel(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	var q protocol.EnqueueResult
	s.api(http.MethodPost, "/api/queue/task", map[string]any{"taskId": "extract", "input": cliInput{Hold: true}}, &q)
	s.waitUntil("the task run to run", func() bool {
		var tr protocol.TaskRun
		s.api(http.MethodGet, "/api/task-runs/"+q.RunID, nil, &tr)
		return tr.Status == "running"
	})
	out := s.cli("cancel", q.RunID)
	require.Contains(t, out, q.RunID)
	require.Contains(t, out, "cancelled")
	require.Equal(t, protocol.StatusCancelled, s.waitTaskRun(q.RunID).Status)
	_, _, err := runCmd(t, s.env(), "cancel", q.RunID)
	require.EqualError(t, err, fmt.Sprintf(`task run %q is already cancelled (409 RUN_FINISHED)`, q.RunID))

	prun := s.trigger("docs", cliInput{Hold: true})
	var run protocol.PipelineRun
	s.cliJSON(&run, "cancel", prun)
	require.Equal(t, prun, run.ID)
	require.EqualValues(t, "cancelled", run.Status)
	_, _, err = runCmd(t, s.env(), "cancel", prun)
	require.EqualError(t, err, fmt.Sprintf(`pipeline run %q is already cancelled (409 PIPELINE_RUN_FINISHED)`, prun))
	_, _, err = runCmd(t, s.env(), "cancel", "trun_nope")
	require.EqualError(t, err, `task run "trun_nope" not found (404 RUN_NOT_FOUND)`)
}

// pipeweave pause task and resume task: the task's runs wait while it is paused and complete
// once it is resumed; an unknown task is the server's 404.
func TestCLIPause(t *testing.T) {
	t.Parallel()
	s := newCLIStack(t)
	out := s.cli("pause", "task", "summarize")
	require.Regexp(t, `^task summarize is paused \(since .*\): its runs wait until pipeweave resume task summarize\n$`, out)
	var p protocol.TaskPause
	s.cliJSON(&p, "pause", "task", "summarize")
	require.True(t, p.Paused)
	require.NotNil(t, p.PausedAt)

	var q protocol.EnqueueResult
	s.api(http.MethodPost, "/api/queue/task", map[string]any{"taskId": "summarize", "input": cliInput{}}, &q)
	var tr protocol.TaskRun
	s.api(http.MethodGet, "/api/task-runs/"+q.RunID, nil, &tr)
	require.Equal(t, protocol.StatusPending, tr.Status)

	out = s.cli("resume", "task", "summarize")
	require.Equal(t, "task summarize is not paused: its waiting runs are claimed in priority order\n", out)
	require.Equal(t, protocol.StatusCompleted, s.waitTaskRun(q.RunID).Status)

	_, _, err := runCmd(t, s.env(), "pause", "task", "nope")
	require.EqualError(t, err, `task "nope" is not registered (404 TASK_NOT_FOUND)`)

	// A paused pipeline's run waits; resuming it completes the run.
	out = s.cli("pause", "pipeline", "docs")
	require.Regexp(t, `^pipeline docs is paused \(since .*\): its runs' nodes wait until pipeweave resume pipeline docs\n$`, out)
	prun := s.trigger("docs", cliInput{})
	var run protocol.PipelineRun
	s.api(http.MethodGet, "/api/runs/"+prun, nil, &run)
	require.EqualValues(t, "pending", taskOf(t, run, "extract").Status, "the paused pipeline's entry node waits (the trigger claimed inline)")
	var pp protocol.PipelinePause
	s.cliJSON(&pp, "resume", "pipeline", "docs")
	require.False(t, pp.Paused)
	require.EqualValues(t, "completed", s.waitRun(prun).Status)
	_, _, err = runCmd(t, s.env(), "resume", "pipeline", "nope")
	require.EqualError(t, err, `pipeline "nope" not found (404 PIPELINE_NOT_FOUND)`)
}
