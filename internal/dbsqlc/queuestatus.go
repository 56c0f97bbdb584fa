package dbsqlc

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// BatchDBTX is what sends several statements in one round trip: a pool or a transaction.
type BatchDBTX interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// QueueCounts is what [Queries.QueueStatus] reads.
type QueueCounts struct {
	// ByStatus counts the runs of each status: the live ones (QueueLiveCounts) and the final
	// ones (QueueFinalCounts).
	ByStatus map[string]int64
	// OldestPending is the earliest available_at of a pending run (nil: none is pending).
	OldestPending *time.Time
	// DLQ counts the dead letter queue's entries.
	DLQ int64
}

// QueueStatus runs QueueLiveCounts, QueueFinalCounts, QueueOldestPending and DLQCount in one
// batch: one round trip.
func (q *Queries) QueueStatus(ctx context.Context, db BatchDBTX) (QueueCounts, error) {
	out := QueueCounts{ByStatus: map[string]int64{}}
	collect := func(rows pgx.Rows) error {
		for rows.Next() {
			var status string
			var n int64
			if err := rows.Scan(&status, &n); err != nil {
				return err
			}
			out.ByStatus[status] += n
		}
		return rows.Err()
	}
	batch := &pgx.Batch{}
	batch.Queue(queueLiveCounts).Query(collect)
	batch.Queue(queueFinalCounts).Query(collect)
	batch.Queue(queueOldestPending).QueryRow(func(row pgx.Row) error { return row.Scan(&out.OldestPending) })
	batch.Queue(dLQCount).QueryRow(func(row pgx.Row) error { return row.Scan(&out.DLQ) })
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		return QueueCounts{}, err
	}
	return out, nil
}
