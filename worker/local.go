package worker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// LocalInput is what RunLocal hands a handler instead of a dispatch.
type LocalInput struct {
	// Input is the run's input, encoded as JSON (a json.RawMessage or []byte is used as is).
	Input any
	// Upstream holds the outputs of the predecessors, by task id (encoded like Input).
	Upstream map[string]any
	// Assets holds the predecessors' assets by task id and key, for GetAsset and GetAssetPath.
	Assets map[string]map[string][]byte
	// Attempt is the attempt number (default 1).
	Attempt int
	// PreviousAttempts are the earlier failed attempts the handler sees.
	PreviousAttempts []protocol.Attempt
}

// LocalResult is what a handler produced under RunLocal.
type LocalResult struct {
	// Output is the output's JSON.
	Output json.RawMessage
	// RunNext are the successors the handler selected (empty: all of them).
	RunNext []string
	// Assets are the assets the handler added, by key.
	Assets map[string][]byte
	// Logs are the run's log lines (JSON objects, one per line).
	Logs []string
}

// RunLocal runs the handler of taskID in this process, with no orchestrator and no storage,
// for a debugger or a unit test: the handler's Context works as in a real attempt (assets
// are kept in a temporary directory under Config.TempDir, removed on return; Progress is only
// logged). The returned error is the handler's (a *TaskError stays one) or the failure to set
// the run up or to encode the output; the logs are returned either way. A RunNext naming a task
// outside Options.AllowedNext is an error, as the orchestrator would fail the task.
func RunLocal(w *Worker, taskID string, in LocalInput) (LocalResult, error) {
	t := w.task(taskID)
	if t == nil {
		return LocalResult{}, fmt.Errorf("worker: run %q locally: no such task", taskID)
	}
	input, err := encodeJSON(in.Input)
	if err != nil {
		return LocalResult{}, fmt.Errorf("worker: run %q locally: encode the input: %w", taskID, err)
	}
	runID := "trun_local_" + rand.Text()[:12]
	log := withAttrs(w.log, slog.String("run", runID), slog.String("task", taskID), slog.Bool("local", true))
	env := newRunEnv(w.tempDir, runID+"-", log)
	defer func() {
		env.close()
		_ = os.RemoveAll(env.madeDir()) // "" (nothing made) removes nothing
	}()
	env.local = in.Assets

	upstream := map[string]Upstream{}
	for id, out := range in.Upstream {
		raw, err := encodeJSON(out)
		if err != nil {
			return LocalResult{}, fmt.Errorf("worker: run %q locally: encode the output of upstream %q: %w", taskID, id, err)
		}
		upstream[id] = Upstream{Output: raw, OutputPath: "local/" + id + "/output.json"}
	}
	for id, assets := range in.Assets {
		up := upstream[id]
		up.Assets = make(map[string]protocol.Asset, len(assets))
		for key, data := range assets {
			up.Assets[key] = protocol.Asset{Path: "local/" + id + "/assets/" + key, Size: int64(len(data)), Type: AssetBinary}
		}
		upstream[id] = up
	}
	attemptNo := in.Attempt
	if attemptNo <= 0 {
		attemptNo = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hctx := context.Context(ctx)
	if t.opts.Timeout > 0 {
		var stop context.CancelFunc
		hctx, stop = context.WithTimeout(ctx, t.opts.Timeout)
		defer stop()
	}
	pipelineRunID := ""
	if len(upstream) > 0 {
		pipelineRunID = "prun_local"
	}
	c := &Context{
		Context:          hctx,
		RunID:            runID,
		TaskID:           taskID,
		PipelineRunID:    pipelineRunID,
		Attempt:          attemptNo,
		CodeVersion:      1,
		CodeHash:         t.hash,
		Input:            input,
		Upstream:         upstream,
		PreviousAttempts: slices.Clone(in.PreviousAttempts),
		r:                env,
	}
	out, herr := callHandler(t.handler, c, log)
	env.close()
	var res LocalResult
	logs, err := env.readLogs()
	if err != nil {
		return res, fmt.Errorf("worker: run %q locally: read the logs: %w", taskID, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(nil, len(logs)+1)
	for sc.Scan() {
		res.Logs = append(res.Logs, sc.Text())
	}
	if herr != nil {
		return res, herr
	}
	if res.Output, res.RunNext, err = encodeResult(out); err != nil {
		return res, fmt.Errorf("worker: run %q locally: %w", taskID, err)
	}
	for _, next := range res.RunNext {
		if !slices.Contains(t.opts.AllowedNext, next) {
			return res, Fail("INVALID_SELECTED_NEXT", fmt.Sprintf("RunNext names %q, which is not in AllowedNext %v", next, t.opts.AllowedNext))
		}
	}
	env.mu.Lock()
	assets := maps.Clone(env.assets)
	env.mu.Unlock()
	res.Assets = make(map[string][]byte, len(assets))
	for key, a := range assets {
		data, err := os.ReadFile(a.file)
		if err != nil {
			return res, fmt.Errorf("worker: run %q locally: read asset %q: %w", taskID, key, err)
		}
		res.Assets[key] = data
	}
	return res, nil
}
