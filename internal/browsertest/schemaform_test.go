package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// reportSchema is the entry task's input schema in upstream's field-list format.
const reportSchema = `{"fields": [
	{"name": "title", "type": "string", "label": "Title", "required": true, "minLength": 3},
	{"name": "format", "type": "select", "label": "Format", "default": "a4",
	 "options": [{"label": "A4", "value": "a4"}, {"label": "Letter", "value": "letter"}]},
	{"name": "notes", "type": "textarea", "label": "Notes for letter", "required": true,
	 "showIf": {"field": "format", "operator": "eq", "value": "letter"}},
	{"name": "pages", "type": "integer", "label": "Pages", "min": 1},
	{"name": "urgent", "type": "boolean", "label": "Urgent"}
], "strict": true}`

// The trigger form of a pipeline whose entry task has an input schema is generated from it:
// labels, required marks, defaults, select options; showIf shows a field live; strict mode
// lists the violations and starts nothing; the raw JSON stays editable both ways.
func TestTriggerFormFromInputSchema(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	w := s.o.Worker(t, "reports")
	require.NoError(t, w.Register("report", worker.Options{InputSchema: json.RawMessage(reportSchema)},
		func(*worker.Context) (any, error) { return map[string]bool{"ok": true}, nil }))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)

	b := newBrowser(t, s.url)
	b.open("/pipelines/reports")
	b.wait(`[data-testid="schema-form"]`)
	b.gone(`[data-testid="trigger-input"]`)
	require.Contains(t, b.text(`[data-testid="field-title"] label`), "Title")
	require.Contains(t, b.text(`[data-testid="field-title"] label`), "*")
	require.Equal(t, "a4", b.evalString(`document.querySelector('[data-field="format"]').selectedOptions[0].textContent.toLowerCase()`))
	b.gone(`[data-testid="field-notes"]`)

	// showIf: choosing Letter shows the notes.
	b.eval(`(() => { const e = document.querySelector('[data-field="format"]'); e.value = '1'; e.dispatchEvent(new Event('change', {bubbles: true})); })()`)
	b.wait(`[data-testid="field-notes"]`)
	b.screenshot("trigger-schema-form")

	// Strict: every violation is listed and nothing starts.
	b.fill(`[data-field="title"]`, "ab")
	b.eval(`(() => { const e = document.querySelector('[data-testid="trigger-validation-mode"]'); e.value = 'strict'; e.dispatchEvent(new Event('change', {bubbles: true})); })()`)
	b.click(`[data-testid="trigger-submit"]`)
	b.wait(`[data-testid="trigger-violations"]`)
	v := b.text(`[data-testid="trigger-violations"]`)
	require.Contains(t, v, "Minimum length is 3")
	require.Contains(t, v, "notes")
	require.Equal(t, "#/pipelines/reports", b.evalString(`location.hash`))
	var runs struct {
		Items []json.RawMessage `json:"items"`
	}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/runs?pipelineId=reports", nil, &runs))
	require.Empty(t, runs.Items)

	// The raw JSON shows what the form holds; edited, it fills the form back.
	b.eval(`document.querySelector('[data-testid="trigger-raw-json"]').click()`)
	b.wait(`[data-testid="trigger-input"]`)
	b.gone(`[data-testid="schema-form"]`)
	require.Equal(t, `{"format":"letter","title":"ab","urgent":false}`,
		b.evalString(`(() => { const v = JSON.parse(document.querySelector('[data-testid="trigger-input"]').value); return JSON.stringify(v, Object.keys(v).sort()); })()`))
	b.fill(`[data-testid="trigger-input"]`, `{"title": "Quarterly", "format": "a4", "pages": 2}`)
	b.eval(`document.querySelector('[data-testid="trigger-raw-json"]').click()`)
	b.wait(`[data-testid="schema-form"]`)
	require.Equal(t, "Quarterly", b.evalString(`document.querySelector('[data-field="title"]').value`))
	require.Equal(t, "2", b.evalString(`document.querySelector('[data-field="pages"]').value`))
	b.gone(`[data-testid="field-notes"]`)

	_, input := submitAndReadInput(t, b, s)
	require.Equal(t, map[string]any{"title": "Quarterly", "format": "a4", "pages": float64(2), "urgent": false}, input,
		fmt.Sprintf("the input sent: %v", input))
}

// uploadSchema has a file field that takes text files up to 8 KiB.
const uploadSchema = `{"fields": [
	{"name": "title", "type": "string", "label": "Title"},
	{"name": "document", "type": "file", "label": "Document", "required": true,
	 "accept": ".txt,text/plain", "maxSize": 8192}
]}`

// A file field of the trigger form is a file picker: a file over the field's maxSize is refused
// before anything is sent, the server's refusal (413 over MAX_UPLOAD_BYTES) is shown, and a
// file that fits is uploaded at once with the stored API key; its upload id fills the field,
// goes out with the trigger and is claimed by the pipeline run.
func TestTriggerFormFileUpload(t *testing.T) {
	t.Parallel()
	const key = "upload-test-key"
	s := newStack(t, func(c *core.Config) {
		c.APIKeys = []string{key}
		c.MaxUploadBytes = 4096
	})
	w := s.o.Worker(t, "docs")
	require.NoError(t, w.Register("ingest", worker.Options{InputSchema: json.RawMessage(uploadSchema)},
		func(ctx *worker.Context) (any, error) { return map[string]any{"input": ctx.Input}, nil }))
	_, err := w.RegisterWithOrchestrator(context.Background())
	require.NoError(t, err)

	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o600))
		return p
	}
	small := write("notes.txt", 300)
	overServer := write("medium.txt", 6000) // under the field's maxSize, over MAX_UPLOAD_BYTES
	overField := write("big.txt", 10000)
	wrongType := write("table.csv", 10)
	uploads := func() int64 {
		var st protocol.TempUploadStats
		require.Equal(t, http.StatusOK, s.api("GET", "/api/upload/stats", nil, &st))
		return st.Total
	}

	b := newBrowser(t, s.url)
	b.open("/pipelines/docs")
	b.wait(`[data-testid="key-prompt"]`)
	b.fill(`[data-testid="key-input"]`, key)
	b.click(`[data-testid="key-submit"]`)
	b.wait(`[data-testid="schema-form"]`)
	picker := `[data-testid="file-picker-document"]`
	status := `[data-testid="file-status-document"]`
	require.Equal(t, ".txt,text/plain", b.evalString(`document.querySelector(`+js(picker)+`).accept`))
	require.Contains(t, b.text(`[data-testid="field-document"]`), "at most 8.0 KiB")
	state := func(want string) {
		t.Helper()
		b.waitJS("file state "+want, `document.querySelector(`+js(status)+`).dataset.state === `+js(want))
	}

	// Over the field's maxSize: refused in the page, nothing sent.
	b.do("choose big.txt", chromedp.SetUploadFiles(chromedp.CSS(picker), []string{overField}))
	state("refused")
	require.Contains(t, b.text(status), "big.txt is 9.8 KiB, more than the 8.0 KiB this field allows")
	require.Equal(t, "", b.evalString(`document.querySelector('[data-field="document"]').value`))
	require.Zero(t, uploads())

	// Not of an accepted type (the picker's "all files" choice lets it through): refused too.
	b.do("choose table.csv", chromedp.SetUploadFiles(chromedp.CSS(picker), []string{wrongType}))
	state("refused")
	require.Contains(t, b.text(status), "table.csv is not an accepted file type (.txt,text/plain)")
	require.Zero(t, uploads())

	// Over the server's cap: its 413 is shown and nothing is stored.
	b.do("choose medium.txt", chromedp.SetUploadFiles(chromedp.CSS(picker), []string{overServer}))
	state("error")
	require.Contains(t, b.text(status), "413 UPLOAD_TOO_LARGE")
	require.Equal(t, "", b.evalString(`document.querySelector('[data-field="document"]').value`))
	require.Zero(t, uploads())

	// A file that fits: uploaded at once, its id in the (editable) field.
	b.fill(`[data-field="title"]`, "Minutes")
	b.do("choose notes.txt", chromedp.SetUploadFiles(chromedp.CSS(picker), []string{small}))
	state("done")
	uploadID := b.evalString(`document.querySelector('[data-field="document"]').value`)
	require.Regexp(t, `^tmp_[0-9a-z]{26}$`, uploadID)
	require.Equal(t, "notes.txt", b.text(`[data-testid="file-name"]`))
	require.Contains(t, b.text(status), "300 B")
	require.Equal(t, "text", b.evalString(`document.querySelector('[data-field="document"]').type`))
	require.Equal(t, int64(1), uploads())
	var info protocol.TempUploadInfo
	require.Equal(t, http.StatusOK, s.api("GET", "/api/upload/temp/"+uploadID, nil, &info))
	require.Equal(t, "notes.txt", info.Filename)
	require.Equal(t, int64(300), info.Size)
	require.False(t, info.Claimed)
	b.screenshot("trigger-file-upload")

	// The id stays editable: typing another clears the picker's state; pasting an existing id
	// is as good as choosing the file.
	b.fill(`[data-field="document"]`, "tmp_typed")
	state("idle")
	require.Equal(t, "", b.evalString(`document.querySelector(`+js(picker)+`).value`))
	b.fill(`[data-field="document"]`, uploadID)

	// The raw JSON holds the id as the field's value.
	b.eval(`document.querySelector('[data-testid="trigger-raw-json"]').click()`)
	b.wait(`[data-testid="trigger-input"]`)
	require.Equal(t, uploadID, b.evalString(`JSON.parse(document.querySelector('[data-testid="trigger-input"]').value).document`))
	b.eval(`document.querySelector('[data-testid="trigger-raw-json"]').click()`)
	b.wait(`[data-testid="schema-form"]`)
	require.Equal(t, uploadID, b.evalString(`document.querySelector('[data-field="document"]').value`))

	runID, input := submitAndReadInput(t, b, s)
	require.Equal(t, map[string]any{"title": "Minutes", "document": uploadID}, input)
	info = protocol.TempUploadInfo{}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/upload/temp/"+uploadID, nil, &info))
	require.True(t, info.Claimed)
	require.NotNil(t, info.ClaimedByRunID)
	require.Equal(t, runID, *info.ClaimedByRunID)
	require.Equal(t, int64(1), uploads())
}

// submitAndReadInput submits the trigger form, waits on the run page until the run completed
// and returns its id and the input the orchestrator stored for it.
func submitAndReadInput(t *testing.T, b *browser, s *stack) (string, map[string]any) {
	t.Helper()
	b.click(`[data-testid="trigger-submit"]`)
	b.waitJS("the run detail page", `location.hash.startsWith('#/runs/prun_')`)
	runID := strings.TrimPrefix(b.evalString(`location.hash`), "#/runs/")
	s.waitRun(runID, "completed")
	var run struct {
		InputPath string `json:"inputPath"`
	}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/runs/"+runID, nil, &run))
	var obj struct {
		Content map[string]any `json:"content"`
	}
	require.Equal(t, http.StatusOK, s.api("GET", "/api/storage/"+run.InputPath, nil, &obj))
	return runID, obj.Content
}
