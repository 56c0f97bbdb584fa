// Command dlq-purge deletes DLQ entries and finished runs older than DLQ_RETENTION_DAYS
// (default 30), expired idempotency keys and expired, unclaimed temporary uploads, in chunks,
// for at most PURGE_TIME_BUDGET_MS (default 20000) per invocation, and answers {"dlq",
// "idempotencyKeys","runs","pipelineRuns","tempUploads","durationMs"}. A scheduler calls it: an EventBridge schedule under AWS Lambda, Cloud Scheduler
// with POST / on Cloud Run ($PORT).
//
// Build the Lambda bootstrap with
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap ./functions/dlq-purge
//
// It links the storage drivers of core/storage/drivers: all four providers, or those the
// build tags leave in (make build-DlqPurgeFunction STORAGE_DRIVERS=local,aws-s3; see deploy/README.md).
package main

import (
	_ "github.com/pipeweave/pipeweave/core/storage/drivers"
	"github.com/pipeweave/pipeweave/functions/internal/platform"
)

func main() { platform.Main("dlq-purge", platform.DLQPurge) }
