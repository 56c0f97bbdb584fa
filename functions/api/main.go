// Command api serves the PipeWeave HTTP API (every /api/* endpoint and /health) as a stateless
// function. Under AWS Lambda it answers API Gateway proxy events (REST API and HTTP API
// payloads); anywhere else it serves HTTP on $PORT (Cloud Run). It is configured from the
// environment like `pipeweave serve`, except that MODE defaults to serverless: no background
// loop, and the process function (or POST /api/process) is what a scheduler calls.
//
// Build the Lambda bootstrap with
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap ./functions/api
//
// It links the storage drivers of core/storage/drivers: all four providers, or those the
// build tags leave in (make build-ApiFunction STORAGE_DRIVERS=local,aws-s3; see deploy/README.md).
package main

import (
	_ "github.com/pipeweave/pipeweave/core/storage/drivers"
	"github.com/pipeweave/pipeweave/functions/internal/platform"
)

func main() { platform.Main("api", platform.API) }
