// Package pdf is an example worker in the shape of the seed's PDF pipeline:
//
//	download → extract-text ┐
//	         → extract-tables ┴→ summarize
//
// It works on small fake documents (no network, no PDF library): download makes a "PDF" of a
// few pages from the URL it is given, the extractors read that asset, and summarize joins
// their outputs. extract-tables runs only when the input asks for it, so a run without tables
// shows a skipped branch. `pipeweave dev --demo` starts it and triggers the pipeline.
package pdf

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/pipeweave/pipeweave/worker"
)

// ServiceID is the service (and implicit pipeline) id of the example.
const ServiceID = "pdf-processor"

// Input is what a trigger of the pipeline carries.
type Input struct {
	PDFURL        string `json:"pdfUrl"`
	ExtractTables bool   `json:"extractTables"`
}

// Downloaded is the output of download.
type Downloaded struct {
	Pages int `json:"pages"`
	Bytes int `json:"bytes"`
}

// Text is the output of extract-text.
type Text struct {
	Words int    `json:"words"`
	Text  string `json:"text"`
}

// Tables is the output of extract-tables.
type Tables struct {
	Tables []Table `json:"tables"`
}

// Table is one table found in the document.
type Table struct {
	Page int        `json:"page"`
	Rows [][]string `json:"rows"`
}

// Summary is the output of summarize.
type Summary struct {
	Summary string `json:"summary"`
	Words   int    `json:"words"`
	Tables  int    `json:"tables"`
}

// Register adds the example's four tasks to w.
func Register(w *worker.Worker) error {
	tasks := []struct {
		id   string
		opts worker.Options
		h    worker.Handler
	}{
		{"download", worker.Options{AllowedNext: []string{"extract-text", "extract-tables"}, Description: "fetch the PDF"}, download},
		{"extract-text", worker.Options{AllowedNext: []string{"summarize"}, Description: "extract the text"}, extractText},
		{"extract-tables", worker.Options{AllowedNext: []string{"summarize"}, Description: "extract the tables"}, extractTables},
		{"summarize", worker.Options{Description: "summarize text and tables"}, summarize},
	}
	for _, t := range tasks {
		if err := w.Register(t.id, t.opts, t.h); err != nil {
			return err
		}
	}
	return nil
}

// fakePDF makes a small document from url: a few pages of words, one table on each even page.
func fakePDF(url string) []byte {
	h := fnv.New32a()
	_, _ = h.Write([]byte(url))
	pages := 2 + int(h.Sum32()%4)
	var b bytes.Buffer
	b.WriteString("%PDF-1.7 (fake)\n")
	for p := 1; p <= pages; p++ {
		fmt.Fprintf(&b, "page %d: this page of %s says something about pipelines and workers\n", p, url)
		if p%2 == 0 {
			fmt.Fprintf(&b, "table %d: quarter,revenue;Q%d,%d\n", p, p/2, 100*p)
		}
	}
	return b.Bytes()
}

func download(ctx *worker.Context) (any, error) {
	var in Input
	if err := ctx.Decode(&in); err != nil || in.PDFURL == "" {
		return nil, worker.Fail("BAD_INPUT", "the input needs a pdfUrl")
	}
	doc := fakePDF(in.PDFURL)
	if err := ctx.AddAsset("pdf-file", doc, worker.AssetBinary); err != nil {
		return nil, err
	}
	ctx.Log("downloaded", "url", in.PDFURL, "bytes", len(doc))
	next := []string{"extract-text"}
	if in.ExtractTables {
		next = append(next, "extract-tables")
	}
	return worker.Result{Output: Downloaded{Pages: bytes.Count(doc, []byte("page ")), Bytes: len(doc)}, RunNext: next}, nil
}

func lines(ctx *worker.Context, prefix string) ([]string, error) {
	doc, err := ctx.GetAsset("download", "pdf-file")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

func extractText(ctx *worker.Context) (any, error) {
	pages, err := lines(ctx, "page ")
	if err != nil {
		return nil, err
	}
	text := strings.Join(pages, "\n")
	if err := ctx.Progress(100, fmt.Sprintf("%d pages", len(pages))); err != nil {
		ctx.Log("progress not reported", "err", err)
	}
	return Text{Words: len(strings.Fields(text)), Text: text}, nil
}

func extractTables(ctx *worker.Context) (any, error) {
	found, err := lines(ctx, "table ")
	if err != nil {
		return nil, err
	}
	var out Tables
	for _, l := range found {
		var page int
		head, body, _ := strings.Cut(l, ": ")
		_, _ = fmt.Sscanf(head, "table %d", &page)
		t := Table{Page: page}
		for _, row := range strings.Split(body, ";") {
			t.Rows = append(t.Rows, strings.Split(row, ","))
		}
		out.Tables = append(out.Tables, t)
	}
	return out, nil
}

func summarize(ctx *worker.Context) (any, error) {
	var text Text
	if up, ok := ctx.Upstream["extract-text"]; ok {
		if err := up.Decode(&text); err != nil {
			return nil, err
		}
	}
	var tables Tables
	if up, ok := ctx.Upstream["extract-tables"]; ok {
		if err := up.Decode(&tables); err != nil {
			return nil, err
		}
	}
	first, _, _ := strings.Cut(text.Text, "\n")
	return Summary{
		Summary: fmt.Sprintf("%d words; first line: %q; %d tables", text.Words, first, len(tables.Tables)),
		Words:   text.Words,
		Tables:  len(tables.Tables),
	}, nil
}
