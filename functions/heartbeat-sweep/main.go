// Command heartbeat-sweep ends the attempts whose heartbeat deadline, hard timeout or dispatch
// lease has passed, sending them to retry or to failure and the DLQ, and answers
// {"swept","durationMs"}. A scheduler calls it: an EventBridge schedule under AWS Lambda, Cloud
// Scheduler with POST / on Cloud Run ($PORT).
//
// Build the Lambda bootstrap with
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap ./functions/heartbeat-sweep
package main

import "github.com/pipeweave/pipeweave/functions/internal/platform"

func main() { platform.Main("heartbeat-sweep", platform.HeartbeatSweep) }
