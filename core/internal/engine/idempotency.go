package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// maxKeyLen bounds idempotency keys.
const maxKeyLen = 255

// CheckIdempotency tells a worker whether its run's task has a completed result recorded under
// key within the TTL, and where that result is.
func (e *Engine) CheckIdempotency(ctx context.Context, call WorkerCall, key string) (protocol.IdempotencyCheckResponse, error) {
	if key == "" || len(key) > maxKeyLen {
		return protocol.IdempotencyCheckResponse{}, invalid("INVALID_IDEMPOTENCY_KEY", "key must be 1 to %d bytes", maxKeyLen)
	}
	hit, err := queries.IdempotencyLookup(ctx, e.db, dbsqlc.IdempotencyLookupParams{RunID: call.RunID, Key: key})
	if errors.Is(err, database.ErrNotFound) {
		if _, _, err := e.runState(ctx, e.db, call.RunID); err != nil {
			return protocol.IdempotencyCheckResponse{}, err
		}
		return protocol.IdempotencyCheckResponse{Hit: false}, nil
	}
	if err != nil {
		return protocol.IdempotencyCheckResponse{}, fmt.Errorf("idempotency lookup for %s: %w", call.RunID, err)
	}
	res := protocol.IdempotencyCheckResponse{Hit: true, RunID: hit.ID, OutputPath: hit.OutputPath, OutputSize: hit.OutputSize,
		SelectedNext: hit.SelectedNext}
	if len(hit.Assets) > 0 {
		if err := json.Unmarshal(hit.Assets, &res.Assets); err != nil {
			return protocol.IdempotencyCheckResponse{}, fmt.Errorf("idempotency lookup for %s: assets: %w", call.RunID, err)
		}
	}
	return res, nil
}

// recordIdempotency records a completed run's result under key.
func (e *Engine) recordIdempotency(ctx context.Context, db dbtx, runID, key string) error {
	if err := queries.IdempotencyRecord(ctx, db, dbsqlc.IdempotencyRecordParams{RunID: runID, Key: key}); err != nil {
		return fmt.Errorf("record idempotency key of %s: %w", runID, err)
	}
	return nil
}
