// Package functions holds the stateless entry points of a serverless deployment, one command
// per directory, each a one-line main around package core:
//
//	functions/api              the HTTP API (all /api/* endpoints and /health)
//	functions/process          one bounded batch: fire due schedule slots, sweep expired, claim, dispatch, send due webhook deliveries → {"swept","claimed","dispatched","failed","webhookDeliveries","durationMs"}
//	functions/heartbeat-sweep  only the sweep of expired heartbeats, timeouts and leases → {"swept","durationMs"}
//	functions/dlq-purge        delete DLQ entries, finished runs and idempotency keys past retention, expired temporary uploads, schedule slot records and finished webhook deliveries → {"dlq","idempotencyKeys","runs","pipelineRuns","tempUploads","scheduleSlots","webhookDeliveries","durationMs"}
//	functions/gcf              the same four as HTTP functions for Cloud Run functions / the Functions Framework
//
// Each command picks its platform at start-up (package functions/internal/platform):
//
//   - Under AWS Lambda (AWS_LAMBDA_RUNTIME_API is set) it serves invocations through
//     aws-lambda-go. The api function takes API Gateway proxy events, REST API and HTTP API
//     (payload 1.0 and 2.0) alike, and answers the matching proxy response, base64-encoding
//     bodies that are not text. The scheduled functions take EventBridge/CloudWatch scheduled
//     events (or any JSON) and return their summary; when PostgreSQL cannot be reached they
//     fail with errorType DatabaseUnavailableError.
//   - Anywhere else it serves HTTP on $PORT (Cloud Run) and shuts down gracefully on SIGTERM.
//     The scheduled functions answer POST / with their JSON summary (503 with Retry-After while
//     the database is unreachable) and GET /health. POST / takes no API key: deploy them as
//     private services that Cloud Scheduler invokes with an OIDC token.
//
// Configuration is the environment of README.md (Configuration; docs/protocol.md for the
// worker-facing part), read once per process, with MODE defaulting to serverless (standalone
// is refused under Lambda and in functions/gcf) and DB_MAX_CONNS to 4; the orchestrator, and
// so its pool, is opened once per process, outside the handler, and reused by every warm
// invocation. The functions also read LOG_LEVEL (debug, info, warn, error)
// and dlq-purge reads PURGE_TIME_BUDGET_MS (default 20000), the most one invocation spends
// deleting, in chunks of 1000 rows. An invocation of process claims at most
// PROCESS_BATCH_SIZE runs and stops claiming after PROCESS_TIME_BUDGET_MS; concurrent
// invocations never dispatch the same run. Give a function a timeout above its budget plus
// DISPATCH_TIMEOUT_MS.
//
// A Lambda bootstrap is the command built static, without the RPC mode of aws-lambda-go:
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o bootstrap ./functions/api
//
// api, process, dlq-purge and gcf link the storage drivers of core/storage/drivers (all four
// providers by default; build tags pipeweave_no_<driver>, set by the Makefile's
// STORAGE_DRIVERS, leave some out); heartbeat-sweep reads and writes no object and links none.
//
// The same binary serves HTTP outside Lambda, so one build serves both platforms. The tests of
// this package run each built binary as a Cloud Run server and under the AWS Lambda runtime
// interface emulator, with the recorded events of testdata/; functions/internal/coldstart
// measures the cold start of the api function and the latency of one process invocation.
package functions
