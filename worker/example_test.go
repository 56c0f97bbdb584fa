package worker_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/pipeweave/pipeweave/worker"
)

// A handler run in-process with RunLocal, as in a debugger: no orchestrator, no storage.
func ExampleRunLocal() {
	w, err := worker.New(worker.Config{
		OrchestratorURL: "http://localhost:3000",
		ServiceID:       "text-tools",
		Version:         "1.0.0",
		ServiceKey:      strings.Repeat("5e", 32), // in production: os.Getenv("PIPEWEAVE_SERVICE_KEY")
		TempDir:         os.TempDir(),
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = w.Register("shout", worker.Options{AllowedNext: []string{"store"}}, func(ctx *worker.Context) (any, error) {
		var in struct{ Text string }
		if err := ctx.Decode(&in); err != nil {
			return nil, worker.Fail("BAD_INPUT", err.Error())
		}
		loud := strings.ToUpper(in.Text)
		if err := ctx.AddAsset("loud.txt", []byte(loud), worker.AssetText); err != nil {
			return nil, err
		}
		return worker.Result{Output: map[string]int{"length": len(loud)}, RunNext: []string{"store"}}, nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := worker.RunLocal(w, "shout", worker.LocalInput{Input: map[string]string{"text": "hello"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(res.Output), res.RunNext, string(res.Assets["loud.txt"]))
	// Output: {"length":5} [store] HELLO
}
