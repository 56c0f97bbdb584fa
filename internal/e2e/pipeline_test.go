package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/examples/pdf"
	"github.com/pipeweave/pipeweave/internal/fakegcs"
	"github.com/pipeweave/pipeweave/internal/fakes3"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// apiObject is GET /api/storage/{path}.
type apiObject struct {
	Path        string          `json:"path"`
	Backend     string          `json:"backend"`
	Content     json.RawMessage `json:"content"`
	ContentType string          `json:"contentType"`
	Size        int64           `json:"size"`
	Encoding    string          `json:"encoding"`
}

// bytes returns the object's content as stored.
func (o apiObject) bytes(t *testing.T) []byte {
	t.Helper()
	switch o.Encoding {
	case "json":
		return o.Content
	case "text", "base64":
		var s string
		require.NoError(t, json.Unmarshal(o.Content, &s))
		if o.Encoding == "text" {
			return []byte(s)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	t.Fatalf("object %s: unknown encoding %q", o.Path, o.Encoding)
	return nil
}

// emulatorLog is what the fake servers had seen when the run finished, before
// the test itself read anything.
type emulatorLog struct {
	aws, minio []fakes3.Request
	gcs        []fakegcs.Request
	gcsGrants  []fakegcs.Assertion
	gcsRefused []string
	gcsAuth    int64
	gcsUnauth  int64
}

func (b *backends) snapshot() emulatorLog {
	l := emulatorLog{aws: b.aws.Requests(), minio: b.minio.Requests(), gcs: b.gcs.Requests(),
		gcsAuth: b.gcs.Authorized(), gcsUnauth: b.gcs.Unauthorized()}
	l.gcsGrants, l.gcsRefused = b.gcs.Grants()
	return l
}

// The example PDF pipeline runs end to end with each backend as the default
// one: the orchestrator stores the input there, the worker reads it and
// writes every output, asset and log there with the credentials sealed in its
// run tokens, the extractors read the downloaded asset back from it, and the
// other backends are never touched. It runs over both inline thresholds: with
// inline payloads on, the input and the outputs (all small) are kept in
// PostgreSQL instead, are never also in the backend, and read the same.
func TestPDFPipelineOnEachBackend(t *testing.T) {
	t.Parallel()
	for _, id := range backendIDs {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
				testPDFPipelineOn(t, id, inline)
			})
		})
	}
}

func testPDFPipelineOn(t *testing.T, id string, inline func(*core.Config)) {
	s := startStack(t, id, inline)
	run, tasks := s.runPDF(t)
	seen := s.backends.snapshot()
	dispatches := s.dispatches(t)

	// Every node completed (ocr-page's map row stands for its items).
	require.Len(t, tasks, 6)
	for _, task := range []string{"download", "split", "ocr-page", "merge", "extract-tables", "summarize"} {
		require.Contains(t, tasks, task)
		require.Equal(t, "completed", tasks[task].Status, "task %s: error %v", task, tasks[task].Error)
		require.NotNil(t, tasks[task].OutputPath, "task %s", task)
	}

	b := open(t, s.def)
	// read reads path through the orchestrator's API and from the
	// default backend directly, requires both to agree and returns it.
	// An inline payload (the input and the outputs with inline payloads
	// on) reads the same through the API and is not in the backend.
	read := func(path string) []byte {
		t.Helper()
		var obj apiObject
		s.getJSON(t, "/api/storage/"+path, &obj)
		require.Equal(t, id, obj.Backend, "GET /api/storage/%s", path)
		require.Equal(t, path, obj.Path)
		got := obj.bytes(t)
		require.Equal(t, int64(len(got)), obj.Size)
		direct, err := storage.ReadAll(t.Context(), b, path)
		if s.inline && (path == run.InputPath || strings.HasSuffix(path, "/output.json")) {
			require.Equal(t, "application/json", obj.ContentType, "GET /api/storage/%s", path)
			require.ErrorIs(t, err, storage.ErrNotFound, "an inline payload is not also in backend %s: %s", id, path)
			return got
		}
		require.NoError(t, err, "read %s from backend %s", path, id)
		require.Equal(t, direct, got, "GET /api/storage/%s", path)
		return direct
	}

	// The pipeline input.
	require.Equal(t, protocol.PipelineInputPath(run.ID), run.InputPath)
	want, err := json.Marshal(pdfInput)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(read(run.InputPath)))

	// Each task's output.
	outputs := map[string][]byte{}
	for task, tr := range tasks {
		require.Equal(t, protocol.OutputPath(tr.ID), *tr.OutputPath, "task %s", task)
		outputs[task] = read(*tr.OutputPath)
		require.True(t, json.Valid(outputs[task]), "output of %s: %s", task, outputs[task])
	}

	// The downloaded document, as an asset.
	dl := tasks["download"]
	asset, ok := dl.Assets["pdf-file"]
	require.True(t, ok, "download has no pdf-file asset: %+v", dl.Assets)
	require.Equal(t, protocol.AssetPath(dl.ID, "pdf-file"), asset.Path)
	doc := read(asset.Path)
	require.True(t, strings.HasPrefix(string(doc), "%PDF-1.7"), "asset: %q", doc)
	require.Equal(t, int64(len(doc)), asset.Size)

	// The logs: download logs what it fetched; every task that logged
	// has its logs in the backend.
	require.NotNil(t, dl.LogsPath, "download has no logs")
	require.Equal(t, protocol.LogsPath(dl.ID), *dl.LogsPath)
	require.Contains(t, string(read(*dl.LogsPath)), "downloaded")
	for task, tr := range tasks {
		if tr.LogsPath != nil {
			require.Equal(t, protocol.LogsPath(tr.ID), *tr.LogsPath, "task %s", task)
			require.NotEmpty(t, read(*tr.LogsPath), "logs of %s", task)
		}
	}

	// split and the extractor read the asset download passed them; ocr-page ran once per page
	// and merge joined the pages in order (read through worker.MapOutputs, inline or stored).
	var pages pdf.Pages
	require.NoError(t, json.Unmarshal(outputs["split"], &pages))
	require.Greater(t, len(pages.Pages), 1)
	var mapped []json.RawMessage
	require.NoError(t, json.Unmarshal(outputs["ocr-page"], &mapped))
	require.Len(t, mapped, len(pages.Pages), "the map's output has one entry per page")
	var text pdf.Text
	require.NoError(t, json.Unmarshal(outputs["merge"], &text))
	require.Positive(t, text.Words)
	require.Equal(t, len(pages.Pages), text.Pages)
	require.Contains(t, text.Text, "page 1: this page of "+pdfInput["pdfUrl"].(string))
	var tables pdf.Tables
	require.NoError(t, json.Unmarshal(outputs["extract-tables"], &tables))
	require.NotEmpty(t, tables.Tables)
	var summary pdf.Summary
	require.NoError(t, json.Unmarshal(outputs["summarize"], &summary))
	require.Positive(t, summary.Tables)
	require.Equal(t, len(tables.Tables), summary.Tables)
	require.Equal(t, text.Words, summary.Words)

	// The dispatches of split and the extractor pointed at that asset.
	extracts := 0
	for _, d := range dispatches {
		if d.method != http.MethodPost || (!strings.HasPrefix(d.path, "/tasks/extract-") && d.path != "/tasks/split") {
			continue
		}
		var req protocol.DispatchRequest
		require.NoError(t, json.Unmarshal(d.body, &req))
		require.Equal(t, asset.Path, req.UpstreamRefs["download"].Assets["pdf-file"].Path, "dispatch of %s", req.TaskID)
		if s.inline {
			require.JSONEq(t, string(outputs["download"]), string(req.UpstreamRefs["download"].Output), "dispatch of %s", req.TaskID)
			require.JSONEq(t, string(want), string(req.Input), "dispatch of %s", req.TaskID)
		} else {
			require.Nil(t, req.UpstreamRefs["download"].Output)
			require.Nil(t, req.Input)
		}
		extracts++
	}
	require.Equal(t, 2, extracts, "dispatches of split and extract-tables")

	// Nothing is in the other backends.
	paths := []string{run.InputPath, asset.Path, *dl.LogsPath}
	for _, tr := range tasks {
		paths = append(paths, *tr.OutputPath)
	}
	// What the backend itself holds: with inline payloads, the asset and
	// the logs only.
	stored := paths
	if s.inline {
		stored = []string{asset.Path, *dl.LogsPath}
	}
	for _, other := range backendIDs {
		if other == id {
			continue
		}
		for _, path := range paths {
			a := s.do(t, http.MethodGet, "/api/storage/"+path+"?backend="+other, nil)
			require.Equal(t, http.StatusNotFound, a.status, "%s in backend %s: %s", path, other, a.body)
		}
	}

	// The storage itself saw the worker.
	switch id {
	case idLocal:
		for _, path := range stored {
			_, err := os.Stat(filepath.Join(s.backends.localDir, filepath.FromSlash(path)))
			require.NoError(t, err, "%s under the base path", path)
		}
	case idS3, idMinIO:
		reqs := seen.aws
		if id == idMinIO {
			reqs = seen.minio
		}
		requireWorkerOnS3(t, reqs, tasks, asset.Path, s.inline)
	case idGCS:
		// The orchestrator and the worker each exchanged the service
		// account's assertion for a token, and every API request
		// carried it.
		require.Empty(t, seen.gcsRefused, "refused token requests")
		// (With inline payloads the orchestrator writes nothing there: the worker's alone.)
		exchanges := 2
		if s.inline {
			exchanges = 1
		}
		require.GreaterOrEqual(t, len(seen.gcsGrants), exchanges, "token exchanges (orchestrator and worker)")
		for _, g := range seen.gcsGrants {
			require.Equal(t, fakegcs.ClientEmail, g.Claims["iss"])
		}
		require.Zero(t, seen.gcsUnauth, "API requests without the access token")
		// One upload by the orchestrator (the input); the worker
		// uploaded four outputs, an asset and logs, and read more.
		// With inline payloads: the asset and logs only.
		if s.inline {
			require.GreaterOrEqual(t, seen.gcsAuth, int64(2))
		} else {
			require.GreaterOrEqual(t, seen.gcsAuth, int64(1+len(tasks)+2))
		}
		for _, r := range seen.gcs {
			require.True(t, r.Authorized, "%s %s", r.Method, r.Path)
		}
		for _, path := range stored {
			obj, err := s.backends.gcs.Emulator().GetObject(bucket, path)
			require.NoError(t, err, "%s in the emulator's bucket", path)
			require.NotEmpty(t, obj.Content)
		}
	}
	// The other fakes saw nothing at all.
	if id != idS3 {
		require.Empty(t, seen.aws, "requests to the aws-s3 fake")
	}
	if id != idMinIO {
		require.Empty(t, seen.minio, "requests to the minio fake")
	}
	if id != idGCS {
		require.Empty(t, seen.gcs, "requests to the gcs emulator")
		require.Empty(t, seen.gcsGrants, "token requests to the gcs emulator")
	}
	if id != idLocal {
		entries, err := os.ReadDir(s.backends.localDir)
		require.NoError(t, err)
		require.Empty(t, entries, "files in the local backend")
	}
}

// requireWorkerOnS3 checks what an S3-protocol fake had received when the run
// finished: no request was refused, and only the worker writes under runs/ —
// each task's output (unless outputs are inline: then none), the asset — and the
// extractors read the asset.
func requireWorkerOnS3(t *testing.T, reqs []fakes3.Request, tasks map[string]taskRun, assetPath string, inline bool) {
	t.Helper()
	require.NotEmpty(t, reqs)
	count := func(method, path string) int {
		n := 0
		for _, r := range reqs {
			if r.Method == method && r.Path == "/"+bucket+"/"+path {
				n++
			}
		}
		return n
	}
	for _, r := range reqs {
		require.False(t, r.Refused, "request %s %s refused by the signature check", r.Method, r.Path)
	}
	for task, tr := range tasks {
		if inline {
			require.Zero(t, count(http.MethodPut, *tr.OutputPath), "the output of %s is inline", task)
		} else {
			require.Positive(t, count(http.MethodPut, *tr.OutputPath), "upload of the output of %s", task)
		}
	}
	require.Positive(t, count(http.MethodPut, assetPath), "upload of the asset")
	require.Positive(t, count(http.MethodGet, assetPath), "download of the asset by the extractors")
}
