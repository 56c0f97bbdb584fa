// Command process runs one bounded batch per invocation: sweep expired attempts, then claim and
// dispatch up to PROCESS_BATCH_SIZE ready runs within PROCESS_TIME_BUDGET_MS, and answer the
// summary {"swept","claimed","dispatched","failed","durationMs"}. A scheduler calls it: an
// EventBridge schedule under AWS Lambda, Cloud Scheduler with POST / on Cloud Run ($PORT).
// Concurrent invocations never dispatch the same run.
//
// Build the Lambda bootstrap with
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap ./functions/process
//
// It links the storage drivers of core/storage/drivers: all four providers, or those the
// build tags leave in (make build-ProcessFunction STORAGE_DRIVERS=local,aws-s3; see deploy/README.md).
package main

import (
	_ "github.com/pipeweave/pipeweave/core/storage/drivers"
	"github.com/pipeweave/pipeweave/functions/internal/platform"
)

func main() { platform.Main("process", platform.Process) }
