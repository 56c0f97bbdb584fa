package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
	require.Equal(t, map[string]any{"title": "Quarterly", "format": "a4", "pages": float64(2), "urgent": false}, obj.Content,
		fmt.Sprintf("the input sent: %v", obj.Content))
}
