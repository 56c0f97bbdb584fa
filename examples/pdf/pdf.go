// Package pdf is an example worker in the shape of the seed's PDF pipeline:
//
//	download → split → ocr-page (one run per page: a map node) → merge ┐
//	         → extract-tables ─────────────────────────────────────────┴→ summarize
//
// It works on small fake documents (no network, no PDF library): download makes a "PDF" of a
// few pages from the URL it is given, split cuts it into pages, ocr-page "reads" one page (the
// pipeline declares it as a map node over split's /pages, so it runs once per page, in
// parallel), merge joins the pages' texts in page order, extract-tables reads the document's
// tables and summarize joins merge's and extract-tables' outputs. extract-tables runs only when
// the input asks for it, so a run without tables shows a skipped branch. `pipeweave dev --demo`
// starts it and triggers the pipeline.
package pdf

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
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

// Pages is the output of split: the document's pages, which ocr-page maps over.
type Pages struct {
	Pages []Page `json:"pages"`
}

// Page is one page of the document: the input of one ocr-page item, and its output once read.
type Page struct {
	Page  int    `json:"page"`
	Text  string `json:"text"`
	Words int    `json:"words,omitempty"`
}

// Text is the output of merge: the pages' texts joined in page order.
type Text struct {
	Pages int    `json:"pages"`
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
	Pages   int    `json:"pages"`
	Words   int    `json:"words"`
	Tables  int    `json:"tables"`
}

// Pipelines is the pipeline the worker declares at registration (worker.Config.Pipelines): the
// service's own, starting at download, with ocr-page a map node over the array at /pages in
// split's output.
func Pipelines() []protocol.PipelineDefinition {
	return []protocol.PipelineDefinition{{
		ID:          ServiceID,
		EntryTasks:  []string{"download"},
		Description: "download a PDF, OCR its pages in parallel, merge them, summarize",
		Nodes:       map[string]protocol.NodeConfig{"ocr-page": {Map: &protocol.MapConfig{Over: "split", Items: "/pages", MaxItems: 1000}}},
	}}
}

// Register adds the example's six tasks to w.
func Register(w *worker.Worker) error {
	tasks := []struct {
		id   string
		opts worker.Options
		h    worker.Handler
	}{
		{"download", worker.Options{AllowedNext: []string{"split", "extract-tables"}, Description: "fetch the PDF"}, download},
		{"split", worker.Options{AllowedNext: []string{"ocr-page"}, Description: "split the PDF into pages"}, split},
		{"ocr-page", worker.Options{AllowedNext: []string{"merge"}, Description: "read the text of one page (a map node: once per page)"}, ocrPage},
		{"merge", worker.Options{AllowedNext: []string{"summarize"}, Description: "join the pages' texts in page order"}, merge},
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
	next := []string{"split"}
	if in.ExtractTables {
		next = append(next, "extract-tables")
	}
	return worker.Result{Output: Downloaded{Pages: bytes.Count(doc, []byte("\npage ")), Bytes: len(doc)}, RunNext: next}, nil
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

func split(ctx *worker.Context) (any, error) {
	found, err := lines(ctx, "page ")
	if err != nil {
		return nil, err
	}
	out := Pages{Pages: make([]Page, len(found))}
	for i, l := range found {
		out.Pages[i] = Page{Page: i + 1, Text: l}
	}
	if err := ctx.Progress(100, fmt.Sprintf("%d pages", len(found))); err != nil {
		ctx.Log("progress not reported", "err", err)
	}
	return out, nil
}

// ocrPage is one item of the ocr-page map node: its input is one element of split's pages.
func ocrPage(ctx *worker.Context) (any, error) {
	var p Page
	if err := ctx.Decode(&p); err != nil || p.Page < 1 {
		return nil, worker.Fail("BAD_INPUT", "the input needs a page (one element of split's pages)")
	}
	p.Text = strings.TrimSpace(p.Text)
	p.Words = len(strings.Fields(p.Text))
	return p, nil
}

// merge reads ocr-page's output: every page's output, in page (item) order, whether each was
// kept inline or stored (worker.MapOutputs reads those from storage).
func merge(ctx *worker.Context) (any, error) {
	var pages []*Page
	if _, ok := ctx.Upstream["ocr-page"]; ok {
		var err error
		if pages, err = worker.MapOutputs[Page](ctx, "ocr-page"); err != nil {
			return nil, err
		}
	}
	var out Text
	texts := make([]string, 0, len(pages))
	for i, p := range pages {
		if p == nil {
			return nil, worker.Fail("PAGE_MISSING", fmt.Sprintf("page %d has no output", i+1))
		}
		if p.Page != i+1 {
			return nil, worker.Fail("PAGES_OUT_OF_ORDER", fmt.Sprintf("item %d holds page %d", i, p.Page))
		}
		texts = append(texts, p.Text)
		out.Words += p.Words
	}
	out.Pages, out.Text = len(pages), strings.Join(texts, "\n")
	return out, nil
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
	if up, ok := ctx.Upstream["merge"]; ok {
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
		Summary: fmt.Sprintf("%d pages, %d words; first line: %q; %d tables", text.Pages, text.Words, first, len(tables.Tables)),
		Pages:   text.Pages,
		Words:   text.Words,
		Tables:  len(tables.Tables),
	}, nil
}
