// Command gcf-local serves one of the PipeWeave functions through the Functions Framework for
// Go, exactly as Cloud Run functions (Cloud Functions 2nd gen) run it: FUNCTION_TARGET names
// the function (API, Process, HeartbeatSweep or DLQPurge) and PORT the port (default 8080).
//
//	FUNCTION_TARGET=Process PORT=8081 DATABASE_URL=… go run ./functions/gcf/cmd/gcf-local
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	"github.com/pipeweave/pipeweave/functions/gcf"
)

var targets = map[string]func(http.ResponseWriter, *http.Request){
	"API":            gcf.API,
	"Process":        gcf.Process,
	"HeartbeatSweep": gcf.HeartbeatSweep,
	"DLQPurge":       gcf.DLQPurge,
}

func main() {
	target := os.Getenv("FUNCTION_TARGET")
	fn, ok := targets[target]
	if !ok {
		fmt.Fprintf(os.Stderr, "gcf-local: environment variable FUNCTION_TARGET: must be API, Process, HeartbeatSweep or DLQPurge, got %q\n", target)
		os.Exit(1)
	}
	if err := funcframework.RegisterHTTPFunctionContext(context.Background(), "/", fn); err != nil {
		fmt.Fprintln(os.Stderr, "gcf-local:", err)
		os.Exit(1)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		fmt.Fprintln(os.Stderr, "gcf-local:", err)
		os.Exit(1)
	}
}
