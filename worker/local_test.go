package worker_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// localWorker is a worker that never talks to an orchestrator.
func localWorker(t *testing.T) (*worker.Worker, string) {
	t.Helper()
	dir := t.TempDir()
	w, err := worker.New(worker.Config{OrchestratorURL: "http://127.0.0.1:1", ServiceID: "local", Version: "dev",
		SecretKey: testSecret, TempDir: dir, Logger: quietLogger()})
	require.NoError(t, err)
	return w, dir
}

// RunLocal runs a handler in-process with upstream outputs and assets, and returns its output,
// selected successors, assets and logs.
func TestRunLocal(t *testing.T) {
	t.Parallel()
	w, dir := localWorker(t)
	require.NoError(t, w.Register("merge", worker.Options{AllowedNext: []string{"publish", "archive"}}, func(ctx *worker.Context) (any, error) {
		var in struct{ Title string }
		if err := ctx.Decode(&in); err != nil {
			return nil, err
		}
		var pages struct{ Count int }
		if err := ctx.Upstream["split"].Decode(&pages); err != nil {
			return nil, err
		}
		cover, err := ctx.GetAsset("split", "cover")
		if err != nil {
			return nil, err
		}
		path, err := ctx.GetAssetPath("split", "cover")
		if err != nil {
			return nil, err
		}
		fromFile, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if _, err := ctx.GetAsset("split", "missing"); !errors.Is(err, worker.ErrAssetNotFound) {
			return nil, errors.New("a missing asset must be ErrAssetNotFound")
		}
		if err := ctx.AddAsset("summary", []byte(`{"ok":true}`), worker.AssetJSON); err != nil {
			return nil, err
		}
		file := filepath.Join(ctx.TempDir(), "book.txt")
		if err := os.WriteFile(file, append(cover, fromFile...), 0o600); err != nil {
			return nil, err
		}
		if err := ctx.AddAssetFromPath("book", file); err != nil {
			return nil, err
		}
		if err := ctx.Progress(50, "halfway"); err != nil {
			return nil, err
		}
		ctx.Log("merged", "pages", pages.Count, "attempt", ctx.Attempt, "previous", len(ctx.PreviousAttempts))
		return &worker.Result{Output: map[string]any{"title": in.Title, "pages": pages.Count}, RunNext: []string{"publish"}}, nil
	}))

	res, err := worker.RunLocal(w, "merge", worker.LocalInput{
		Input:            map[string]string{"title": "Dune"},
		Upstream:         map[string]any{"split": json.RawMessage(`{"count":412}`)},
		Assets:           map[string]map[string][]byte{"split": {"cover": []byte("COVER")}},
		Attempt:          2,
		PreviousAttempts: []protocol.Attempt{{Attempt: 1, Error: "flaky", ErrorCode: "TASK_ERROR"}},
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"title":"Dune","pages":412}`, string(res.Output))
	require.Equal(t, []string{"publish"}, res.RunNext)
	require.Equal(t, map[string][]byte{"summary": []byte(`{"ok":true}`), "book": []byte("COVERCOVER")}, res.Assets)
	require.Len(t, res.Logs, 2) // progress (debug) and the handler's line
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.Logs[1]), &line))
	require.Equal(t, "merged", line["msg"])
	require.EqualValues(t, 412, line["pages"])
	require.EqualValues(t, 2, line["attempt"])
	require.EqualValues(t, 1, line["previous"])

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "RunLocal removes its temporary directory")
}

// RunLocal returns a handler's TaskError as is, and refuses a RunNext outside AllowedNext.
func TestRunLocalErrors(t *testing.T) {
	t.Parallel()
	w, _ := localWorker(t)
	require.NoError(t, w.Register("fails", worker.Options{}, func(ctx *worker.Context) (any, error) {
		ctx.Log("trying")
		return nil, worker.Retry("UPSTREAM_DOWN", "try later")
	}))
	require.NoError(t, w.Register("strays", worker.Options{AllowedNext: []string{"x"}}, func(*worker.Context) (any, error) {
		return worker.Result{RunNext: []string{"y"}}, nil
	}))
	require.NoError(t, w.Register("panics", worker.Options{}, func(*worker.Context) (any, error) {
		panic("oops")
	}))

	res, err := worker.RunLocal(w, "fails", worker.LocalInput{})
	var te *worker.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "UPSTREAM_DOWN", te.Code)
	require.True(t, te.Retryable)
	require.Len(t, res.Logs, 1)

	_, err = worker.RunLocal(w, "strays", worker.LocalInput{})
	require.ErrorAs(t, err, &te)
	require.Equal(t, "INVALID_SELECTED_NEXT", te.Code)

	_, err = worker.RunLocal(w, "panics", worker.LocalInput{})
	require.ErrorAs(t, err, &te)
	require.Equal(t, worker.CodePanic, te.Code)

	_, err = worker.RunLocal(w, "nope", worker.LocalInput{})
	require.ErrorContains(t, err, "no such task")
}

// New validates its configuration; Register refuses duplicates and bad options.
func TestNewAndRegisterValidate(t *testing.T) {
	t.Parallel()
	good := worker.Config{OrchestratorURL: "http://o:3000", ServiceID: "s", Version: "1", ServiceKey: strings.Repeat("ab", 32), TempDir: t.TempDir()}
	for name, mod := range map[string]func(*worker.Config){
		"no key":                func(c *worker.Config) { c.ServiceKey = "" },
		"both keys":             func(c *worker.Config) { c.SecretKey = testSecret },
		"short service key":     func(c *worker.Config) { c.ServiceKey = "abcd" },
		"non-hex service key":   func(c *worker.Config) { c.ServiceKey = strings.Repeat("zz", 32) },
		"master as service key": func(c *worker.Config) { c.ServiceKey = "a secret that is long enough but not hex" },
		"no url":                func(c *worker.Config) { c.OrchestratorURL = "" },
		"relative url":          func(c *worker.Config) { c.OrchestratorURL = "orchestrator:3000/x" },
		"no service":            func(c *worker.Config) { c.ServiceID = " " },
		"no version":            func(c *worker.Config) { c.Version = "" },
		"short secret":          func(c *worker.Config) { c.ServiceKey, c.SecretKey = "", "too short" },
		"bad base url":          func(c *worker.Config) { c.BaseURL = "ftp://x" },
	} {
		cfg := good
		mod(&cfg)
		_, err := worker.New(cfg)
		require.Error(t, err, name)
	}
	w, err := worker.New(good)
	require.NoError(t, err)
	h := func(*worker.Context) (any, error) { return nil, nil }
	require.NoError(t, w.Register("t", worker.Options{}, h))
	require.ErrorContains(t, w.Register("t", worker.Options{}, h), "already registered")
	require.Error(t, w.Register("bad id", worker.Options{}, h))
	require.Error(t, w.Register("u", worker.Options{}, nil))
	require.Error(t, w.Register("u", worker.Options{RetryBackoff: "linear"}, h))
	require.Error(t, w.Register("u", worker.Options{AllowedNext: []string{"../x"}}, h))
	require.Error(t, w.Register("u", worker.Options{Retries: new(-1)}, h))
	require.ErrorContains(t, w.Register("u", worker.Options{RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: 1}, RateLimitKey: "k"}, h), "not both")
	require.ErrorContains(t, w.Register("u", worker.Options{RateLimit: &protocol.RateLimit{Limit: 0, PeriodMs: 1000}}, h), "Limit")
	require.ErrorContains(t, w.Register("u", worker.Options{ConcurrencyKey: "/c"}, h), "together")
	require.ErrorContains(t, w.Register("u", worker.Options{ConcurrencyPerKey: 2}, h), "together")
	require.Error(t, w.Register("u", worker.Options{InputSchema: json.RawMessage("{")}, h))
	require.ErrorContains(t, w.Register("u", worker.Options{InputSchema: json.RawMessage(`{"fields": [{"name": "a", "type": "text"}]}`)}, h), `type "text"`)
	require.ErrorContains(t, w.Register("u", worker.Options{InputJSONSchema: json.RawMessage(`{"$ref": "https://example.com/s.json"}`)}, h), "is not loaded")
}
