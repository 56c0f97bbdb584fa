package pdf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/examples/pdf"
	"github.com/pipeweave/pipeweave/internal/testdb"
	"github.com/pipeweave/pipeweave/internal/testorch"
	"github.com/pipeweave/pipeweave/worker"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const secret = testorch.Secret

func getJSON(t require.TestingT, url string, v any) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.NoError(t, json.Unmarshal(body, v), string(body))
}

// The example pipeline runs end to end against a real orchestrator, with and without the
// optional tables branch.
func TestPDFPipelineEndToEnd(t *testing.T) {
	t.Parallel()
	orchSrv := testorch.Start(t, testorch.Options{})

	w, err := worker.New(worker.Config{OrchestratorURL: orchSrv.URL, ServiceID: pdf.ServiceID, Version: "1.0.0", ServiceKey: testorch.ServiceKey(t, secret, pdf.ServiceID),
		TempDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Pipelines: pdf.Pipelines()})
	require.NoError(t, err)
	require.NoError(t, pdf.Register(w))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-served)
	})
	// Serve registers the worker; the pipeline exists once it has.
	require.Eventually(t, func() bool {
		resp, err := http.Get(orchSrv.URL + "/api/pipelines/" + pdf.ServiceID)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 10*time.Millisecond)

	for _, tables := range []bool{false, true} {
		body, _ := json.Marshal(map[string]any{"input": pdf.Input{PDFURL: "https://example.com/report.pdf", ExtractTables: tables}})
		resp, err := http.Post(orchSrv.URL+"/api/pipelines/"+pdf.ServiceID+"/trigger", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		var trig struct {
			PipelineRunID string `json:"pipelineRunId"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&trig))
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusCreated, resp.StatusCode)

		var run struct {
			Status string `json:"status"`
			Tasks  []struct {
				TaskID     string  `json:"taskId"`
				Status     string  `json:"status"`
				OutputPath *string `json:"outputPath"`
			} `json:"tasks"`
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			getJSON(c, orchSrv.URL+"/api/runs/"+trig.PipelineRunID, &run)
			assert.NotEqual(c, "running", run.Status)
		}, 30*time.Second, 20*time.Millisecond)
		require.Equal(t, "completed", run.Status)
		states := map[string]string{}
		paths := map[string]string{}
		items := 0
		for _, task := range run.Tasks {
			if task.TaskID == "ocr-page" {
				items++
				require.Equal(t, "completed", task.Status)
				continue
			}
			states[task.TaskID] = task.Status
			if task.OutputPath != nil {
				paths[task.TaskID] = *task.OutputPath
			}
		}
		want := "skipped"
		if tables {
			want = "completed"
		}
		require.Equal(t, map[string]string{"download": "completed", "split": "completed", "merge": "completed",
			"extract-tables": want, "summarize": "completed"}, states)
		// The download's page count: one ocr-page item per page, and the map row.
		var dl struct {
			Content pdf.Downloaded `json:"content"`
		}
		getJSON(t, orchSrv.URL+"/api/storage/"+paths["download"], &dl)
		require.GreaterOrEqual(t, dl.Content.Pages, 2)
		require.Equal(t, dl.Content.Pages+1, items, "one task run per page and the map row")
		var merged struct {
			Content pdf.Text `json:"content"`
		}
		getJSON(t, orchSrv.URL+"/api/storage/"+paths["merge"], &merged)
		require.Equal(t, dl.Content.Pages, merged.Content.Pages, "merge got every page")
		for p := 1; p <= dl.Content.Pages; p++ {
			require.Contains(t, merged.Content.Text, fmt.Sprintf("page %d:", p))
		}
		var obj struct {
			Content pdf.Summary `json:"content"`
		}
		getJSON(t, orchSrv.URL+"/api/storage/"+paths["summarize"], &obj)
		require.Positive(t, obj.Content.Words)
		require.Equal(t, dl.Content.Pages, obj.Content.Pages)
		if tables {
			require.Positive(t, obj.Content.Tables)
		} else {
			require.Zero(t, obj.Content.Tables)
		}
		require.Contains(t, obj.Content.Summary, fmt.Sprintf("%d words", obj.Content.Words))
	}
}

// The handlers run in-process with RunLocal, as in a debugger.
func TestHandlersLocally(t *testing.T) {
	t.Parallel()
	w, err := worker.New(worker.Config{OrchestratorURL: "http://127.0.0.1:1", ServiceID: pdf.ServiceID, Version: "1", ServiceKey: testorch.ServiceKey(t, secret, pdf.ServiceID),
		TempDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, pdf.Register(w))
	dl, err := worker.RunLocal(w, "download", worker.LocalInput{Input: pdf.Input{PDFURL: "https://x/y.pdf", ExtractTables: true}})
	require.NoError(t, err)
	require.Equal(t, []string{"split", "extract-tables"}, dl.RunNext)
	doc := dl.Assets["pdf-file"]
	require.NotEmpty(t, doc)
	tables, err := worker.RunLocal(w, "extract-tables", worker.LocalInput{Assets: map[string]map[string][]byte{"download": {"pdf-file": doc}}})
	require.NoError(t, err)
	var tb pdf.Tables
	require.NoError(t, json.Unmarshal(tables.Output, &tb))
	require.NotEmpty(t, tb.Tables)
	split, err := worker.RunLocal(w, "split", worker.LocalInput{Assets: map[string]map[string][]byte{"download": {"pdf-file": doc}}})
	require.NoError(t, err)
	var pages pdf.Pages
	require.NoError(t, json.Unmarshal(split.Output, &pages))
	require.GreaterOrEqual(t, len(pages.Pages), 2)
	var read []json.RawMessage
	for _, p := range pages.Pages {
		out, err := worker.RunLocal(w, "ocr-page", worker.LocalInput{Input: p})
		require.NoError(t, err)
		read = append(read, out.Output)
	}
	arr, err := json.Marshal(read)
	require.NoError(t, err)
	merged, err := worker.RunLocal(w, "merge", worker.LocalInput{Upstream: map[string]any{"ocr-page": json.RawMessage(arr)}})
	require.NoError(t, err)
	var text pdf.Text
	require.NoError(t, json.Unmarshal(merged.Output, &text))
	require.Equal(t, len(pages.Pages), text.Pages)
	require.Positive(t, text.Words)
	_, err = worker.RunLocal(w, "download", worker.LocalInput{Input: map[string]any{}})
	var te *worker.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "BAD_INPUT", te.Code)
}
