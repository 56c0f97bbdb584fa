// Package defaults holds the orchestrator's default settings in one place: core.DefaultConfig
// starts from them, and the engine and the HTTP API fall back on them for a zero setting, so
// that the three cannot drift apart. Each value is the default of the environment variable
// named beside it (README.md, Configuration).
package defaults

import "time"

// Run settings.
const (
	// MaxConcurrency bounds the runs a standalone orchestrator dispatches at once (MAX_CONCURRENCY).
	MaxConcurrency = 10
	// PollInterval is how often a standalone orchestrator looks for work (POLL_INTERVAL_MS).
	PollInterval = time.Second
	// DispatchTimeout bounds a dispatch request to a worker (DISPATCH_TIMEOUT_MS).
	DispatchTimeout = 10 * time.Second
	// IdempotencyTTL is how long a task's idempotency keys last (IDEMPOTENCY_TTL_SECONDS).
	IdempotencyTTL = 24 * time.Hour
	// MaxRetryDelay caps a retry's backoff (MAX_RETRY_DELAY_MS).
	MaxRetryDelay = 24 * time.Hour
	// DLQRetention is how long dead-letter entries are kept (DLQ_RETENTION_DAYS).
	DLQRetention = 30 * 24 * time.Hour
	// ProcessBatchSize is the most runs one /api/process batch claims (PROCESS_BATCH_SIZE).
	ProcessBatchSize = 100
	// ProcessTimeBudget bounds one /api/process batch (PROCESS_TIME_BUDGET_MS).
	ProcessTimeBudget = 20 * time.Second
)

// HTTP caps.
const (
	// MaxBodyBytes caps a request body (MAX_BODY_BYTES).
	MaxBodyBytes = 10 << 20
	// MaxUploadBytes caps an upload (MAX_UPLOAD_BYTES).
	MaxUploadBytes = 100 << 20
	// MaxBatchSize caps the tasks of one batch enqueue (MAX_BATCH_SIZE).
	MaxBatchSize = 1000
	// MaxTasksPerRegistration caps the tasks of one registration (MAX_TASKS_PER_REGISTRATION).
	MaxTasksPerRegistration = 500
	// MaxWorkerBodyBytes caps the body of a worker's heartbeat, progress or callback
	// (MAX_WORKER_BODY_BYTES).
	MaxWorkerBodyBytes = 64 << 10
	// InlinePayloadMaxBytes is the largest input or output kept in PostgreSQL rather than in
	// the storage backend (INLINE_PAYLOAD_MAX_BYTES).
	InlinePayloadMaxBytes = 64 << 10
	// MaxInlinePayloadMaxBytes bounds INLINE_PAYLOAD_MAX_BYTES: the claim-check pattern is for
	// small payloads, and a join's dispatch carries every predecessor's inline output.
	MaxInlinePayloadMaxBytes = 1 << 20
	// MapMaxItems is the most items a map node may declare, and its default (MAP_MAX_ITEMS).
	MapMaxItems = 10_000
	// MaxMapMaxItems bounds MAP_MAX_ITEMS.
	MaxMapMaxItems = 1_000_000
	// MaxConcurrentBodies bounds the request bodies read at once (MAX_CONCURRENT_BODIES).
	MaxConcurrentBodies = 128
	// MaxUnauthenticatedBodies bounds the bodies read at once before the caller is
	// authenticated (MAX_UNAUTHENTICATED_BODIES).
	MaxUnauthenticatedBodies = 16
)
