package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// checkCallbackPaths refuses a successful callback whose outputPath, logsPath or an asset path
// is not a valid storage key under the run's own prefix runs/{runId}/ (400
// INVALID_OUTPUT_PATH naming the field). The one exception is a result reused through the
// idempotency check: the paths of a completed run of the same task recorded under an
// idempotency key, exactly as that run stored them, are accepted. The refusal writes nothing;
// the run stays running until the worker resends a corrected callback (or its heartbeats stop
// and the attempt times out).
func (e *Engine) checkCallbackPaths(ctx context.Context, runID string, cb *protocol.CallbackRequest) error {
	type field struct{ name, path string }
	fields := []field{{"outputPath", cb.OutputPath}, {"logsPath", cb.LogsPath}}
	keys := make([]string, 0, len(cb.Assets))
	for k := range cb.Assets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields = append(fields, field{"assets." + k + ".path", cb.Assets[k].Path})
	}
	own := "runs/" + runID + "/"     // where protocol.OutputPath, AssetPath and LogsPath put them
	sources := map[string][]string{} // run id → the paths it stored (nil: not a cache source)
	for _, f := range fields {
		if f.path == "" && f.name != "outputPath" && f.name != "logsPath" {
			return badPath(f.name, "an asset needs a path")
		}
		if f.path == "" {
			continue
		}
		if err := storage.ValidateKey(f.path); err != nil {
			return badPath(f.name, fmt.Sprintf("%q is not a valid storage key: %v", f.path, err))
		}
		if strings.HasPrefix(f.path, own) {
			continue
		}
		other, _, _ := strings.Cut(strings.TrimPrefix(f.path, "runs/"), "/")
		if !strings.HasPrefix(f.path, "runs/") || other == "" || other == runID {
			return badPath(f.name, fmt.Sprintf("%q is not under the run's prefix %s", f.path, own))
		}
		paths, seen := sources[other]
		if !seen {
			var err error
			if paths, err = e.idempotencySourcePaths(ctx, runID, other); err != nil {
				return err
			}
			sources[other] = paths
		}
		if !slices.Contains(paths, f.path) {
			return badPath(f.name, fmt.Sprintf("%q is not under the run's prefix %s (nor a path of a result recorded under an idempotency key of its task)", f.path, own))
		}
	}
	return nil
}

// idempotencySourcePaths returns the paths stored by run other when it is a cached result
// run runID may reuse, else nil.
func (e *Engine) idempotencySourcePaths(ctx context.Context, runID, other string) ([]string, error) {
	src, err := queries.IdempotencySourcePaths(ctx, e.db, dbsqlc.IdempotencySourcePathsParams{RunID: runID, SourceID: other})
	if errors.Is(err, database.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the cached result %s for run %s: %w", other, runID, err)
	}
	paths := []string{}
	for _, p := range []string{src.OutputPath, src.LogsPath} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	if len(src.Assets) > 0 {
		var m map[string]protocol.Asset
		if err := json.Unmarshal(src.Assets, &m); err != nil {
			return nil, fmt.Errorf("read the cached result %s for run %s: assets: %w", other, runID, err)
		}
		for _, a := range m {
			paths = append(paths, a.Path)
		}
	}
	return paths, nil
}

func badPath(field, msg string) *Error {
	return &Error{Kind: ErrInvalid, Code: "INVALID_OUTPUT_PATH", Msg: field + ": " + msg +
		"; write under runs/{runId}/ and send the callback again", Details: map[string]string{"field": field}}
}
