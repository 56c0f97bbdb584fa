package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
)

var (
	sqlIdempotencyLookup = q("idempotency_lookup")
	sqlIdempotencyRecord = q("idempotency_record")
)

// maxKeyLen bounds idempotency keys.
const maxKeyLen = 255

// CheckIdempotency tells a worker whether its run's task has a completed result recorded under
// key within the TTL, and where that result is.
func (e *Engine) CheckIdempotency(ctx context.Context, call WorkerCall, key string) (protocol.IdempotencyCheckResponse, error) {
	if key == "" || len(key) > maxKeyLen {
		return protocol.IdempotencyCheckResponse{}, invalid("INVALID_IDEMPOTENCY_KEY", "key must be 1 to %d bytes", maxKeyLen)
	}
	var res protocol.IdempotencyCheckResponse
	var assets []byte
	err := e.pool.QueryRow(ctx, sqlIdempotencyLookup, call.RunID, key).Scan(&res.RunID, &res.OutputPath, &res.OutputSize, &assets, &res.SelectedNext)
	if err == pgx.ErrNoRows {
		if _, _, err := e.runState(ctx, e.pool, call.RunID); err != nil {
			return protocol.IdempotencyCheckResponse{}, err
		}
		return protocol.IdempotencyCheckResponse{Hit: false}, nil
	}
	if err != nil {
		return protocol.IdempotencyCheckResponse{}, fmt.Errorf("idempotency lookup for %s: %w", call.RunID, err)
	}
	if len(assets) > 0 {
		if err := json.Unmarshal(assets, &res.Assets); err != nil {
			return protocol.IdempotencyCheckResponse{}, fmt.Errorf("idempotency lookup for %s: assets: %w", call.RunID, err)
		}
	}
	res.Hit = true
	return res, nil
}

// recordIdempotency records a completed run's result under key.
func (e *Engine) recordIdempotency(ctx context.Context, db dbtx, runID, key string) error {
	if _, err := db.Exec(ctx, sqlIdempotencyRecord, runID, key); err != nil {
		return fmt.Errorf("record idempotency key of %s: %w", runID, err)
	}
	return nil
}
