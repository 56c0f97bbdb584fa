// Package gcf exposes the PipeWeave functions as plain HTTP functions for Google Cloud Run
// functions (Cloud Functions 2nd gen) and the Functions Framework for Go:
//
//	API             the HTTP API (every /api/* endpoint and /health)
//	Process         POST / → one bounded batch, {"swept","claimed","dispatched","failed","durationMs"}
//	HeartbeatSweep  POST / → {"swept","durationMs"}
//	DLQPurge        POST / → {"dlq","idempotencyKeys","runs","pipelineRuns","tempUploads","durationMs"}
//
// Each has the signature func(http.ResponseWriter, *http.Request) that
// funcframework.RegisterHTTPFunctionContext takes. An instance opens one orchestrator on its
// first request, from the same environment variables as the functions/* commands (MODE
// defaults to serverless), and keeps its small pool for the requests that follow. A
// configuration error is answered 500 naming the variable, and retried on the next request; an
// unreachable database is 503.
//
// Deploying with the Functions Framework buildpack (gcloud functions deploy): the entry point
// is an exported function of the package at the root of the uploaded source, so upload a tiny
// module whose root package forwards to this one,
//
//	package fn
//
//	import (
//		"net/http"
//
//		"github.com/pipeweave/pipeweave/functions/gcf"
//	)
//
//	func API(w http.ResponseWriter, r *http.Request)     { gcf.API(w, r) }
//	func Process(w http.ResponseWriter, r *http.Request) { gcf.Process(w, r) }
//	// … HeartbeatSweep, DLQPurge likewise
//
// and deploy each function from it, the scheduled ones private (Cloud Scheduler calls POST /
// with an OIDC token):
//
//	gcloud functions deploy pipeweave-api --gen2 --runtime=go126 --trigger-http \
//	    --entry-point=API --set-env-vars=MODE=serverless,... --set-secrets=DATABASE_URL=...,...
//	gcloud functions deploy pipeweave-process --gen2 --runtime=go126 --trigger-http \
//	    --no-allow-unauthenticated --entry-point=Process ...
//
// The buildpack generates the main that registers the entry point with
// funcframework.RegisterHTTPFunctionContext(ctx, "/", fn.API) and calls funcframework.Start.
// Your own main does the same to run all four in one process (the module then needs
// github.com/GoogleCloudPlatform/functions-framework-go/funcframework):
//
//	ctx := context.Background()
//	_ = funcframework.RegisterHTTPFunctionContext(ctx, "/", gcf.API)
//	_ = funcframework.RegisterHTTPFunctionContext(ctx, "/process", gcf.Mount("/process", gcf.Process))
//	_ = funcframework.RegisterHTTPFunctionContext(ctx, "/heartbeat-sweep", gcf.Mount("/heartbeat-sweep", gcf.HeartbeatSweep))
//	_ = funcframework.RegisterHTTPFunctionContext(ctx, "/dlq-purge", gcf.Mount("/dlq-purge", gcf.DLQPurge))
//	log.Fatal(funcframework.Start(os.Getenv("PORT")))
//
// On Cloud Run itself, the functions/* commands (one binary per service, $PORT) are simpler.
package gcf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	_ "github.com/pipeweave/pipeweave/core/storage/drivers" // one orchestrator serves every function
	"github.com/pipeweave/pipeweave/functions/internal/platform"
)

// instance is the Set of this process, configured from os.Getenv.
var instance = New(os.Getenv)

// API serves the HTTP API (the entry point named "API").
func API(w http.ResponseWriter, r *http.Request) { instance.API(w, r) }

// Process runs one bounded batch on POST / (the entry point named "Process").
func Process(w http.ResponseWriter, r *http.Request) { instance.Process(w, r) }

// HeartbeatSweep sweeps expired attempts on POST / (the entry point named "HeartbeatSweep").
func HeartbeatSweep(w http.ResponseWriter, r *http.Request) { instance.HeartbeatSweep(w, r) }

// DLQPurge purges past retention on POST / (the entry point named "DLQPurge").
func DLQPurge(w http.ResponseWriter, r *http.Request) { instance.DLQPurge(w, r) }

// Mount serves a scheduled function under prefix, for a server that serves several functions
// by path: POST <prefix> runs it (and, routed to it as well, <prefix>/health is its health).
func Mount(prefix string, h http.HandlerFunc) func(http.ResponseWriter, *http.Request) {
	return http.StripPrefix(prefix, h).ServeHTTP
}

// Set is the four functions over one orchestrator, opened on first use.
type Set struct {
	getenv func(string) string

	mu        sync.Mutex
	o         *core.Orchestrator
	cfg       core.Config
	functions map[string]*platform.Function
}

// New makes a Set configured through getenv.
func New(getenv func(string) string) *Set { return &Set{getenv: getenv} }

// builders are the functions of a Set, by name.
var builders = map[string]platform.Builder{
	"api":             platform.API,
	"process":         platform.Process,
	"heartbeat-sweep": platform.HeartbeatSweep,
	"dlq-purge":       platform.DLQPurge,
}

// API serves the HTTP API.
func (s *Set) API(w http.ResponseWriter, r *http.Request) { s.serve("api", w, r) }

// Process runs one bounded batch on POST /.
func (s *Set) Process(w http.ResponseWriter, r *http.Request) { s.serve("process", w, r) }

// HeartbeatSweep sweeps expired attempts on POST /.
func (s *Set) HeartbeatSweep(w http.ResponseWriter, r *http.Request) {
	s.serve("heartbeat-sweep", w, r)
}

// DLQPurge purges past retention on POST /.
func (s *Set) DLQPurge(w http.ResponseWriter, r *http.Request) { s.serve("dlq-purge", w, r) }

// Close releases the orchestrator, if one was opened.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o != nil {
		s.o.Close()
		s.o, s.functions = nil, nil
	}
}

func (s *Set) serve(name string, w http.ResponseWriter, r *http.Request) {
	f, err := s.function(name)
	if err != nil {
		code := "INTERNAL"
		var ce *core.ConfigError
		if errors.As(err, &ce) {
			code = "CONFIGURATION"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(protocol.ErrorBody{Error: name + ": " + err.Error(), Code: code})
		return
	}
	f.ServeHTTP(w, r)
}

// function returns the named function, opening the orchestrator on first use.
func (s *Set) function(name string) (*platform.Function, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.functions[name]; f != nil {
		return f, nil
	}
	log := platform.Logger(name, s.getenv)
	if s.o == nil {
		cfg, err := platform.Config(s.getenv)
		if err != nil {
			return nil, err
		}
		if cfg.Mode != core.ModeServerless {
			return nil, fmt.Errorf("configuration: %w", &core.ConfigError{Var: "MODE",
				Msg: "Cloud Functions run per request, with no background loop: use serverless (the default)"})
		}
		o, err := core.New(context.Background(), cfg, core.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open the orchestrator: %w", err)
		}
		s.o, s.cfg, s.functions = o, cfg, map[string]*platform.Function{}
	}
	f, err := builders[name](platform.Env{Orchestrator: s.o, Config: s.cfg, Getenv: s.getenv, Log: log})
	if err != nil {
		return nil, fmt.Errorf("build the %s function: %w", name, err)
	}
	s.functions[name] = f
	return f, nil
}
