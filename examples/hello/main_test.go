package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/worker"
)

// The handler works as docs/worker.md says, run in-process.
func TestShout(t *testing.T) {
	t.Parallel()
	w, err := worker.New(worker.Config{OrchestratorURL: "http://localhost:3000", ServiceID: "hello", Version: "1.0.0",
		ServiceKey: strings.Repeat("5e", 32), TempDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, w.Register("shout", worker.Options{}, shout))
	res, err := worker.RunLocal(w, "shout", worker.LocalInput{Input: map[string]string{"text": "hello"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"HELLO"}`, string(res.Output))

	_, err = worker.RunLocal(w, "shout", worker.LocalInput{Input: []int{1}})
	var te *worker.TaskError
	require.ErrorAs(t, err, &te)
	require.Equal(t, "BAD_INPUT", te.Code)
}

// docs/worker.md shows this file's main and handler as they are, so the example there compiles.
func TestDocsShowThisProgram(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "worker.md"))
	require.NoError(t, err)
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	// The program from its package clause on (the doc comment above it is the file's own).
	program := string(src[strings.Index(string(src), "package main"):])
	require.Contains(t, string(doc), "```go\n"+program+"```\n", "docs/worker.md's complete example differs from examples/hello/main.go")
}
