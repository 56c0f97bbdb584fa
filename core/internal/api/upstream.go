package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// The routes upstream's orchestrator has beside ours (packages/orchestrator/src/routes):
// GET /api/info, POST /api/tick (the same batch as POST /api/process), GET /api/services/{id}
// and GET /api/storage/backends; and the dry run's optional {input} body.

// version is the orchestrator's version: the main module's, "dev" for a build from a work tree.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	b := s.eng.StorageBackends()
	ids := make([]string, len(b.Backends))
	for i, x := range b.Backends {
		ids[i] = x.ID
	}
	writeJSON(w, http.StatusOK, protocol.Info{
		Version:               version(),
		Mode:                  s.opts.Mode,
		MaxConcurrency:        s.opts.MaxConcurrency,
		PollIntervalMs:        s.opts.PollInterval.Milliseconds(),
		StorageBackends:       ids,
		DefaultStorageBackend: b.Default,
		Uptime:                time.Since(s.started).Seconds(),
		Timestamp:             time.Now().UTC(),
	})
}

// storageBackends lists the storage backends: ids, providers, endpoints, buckets, regions,
// never credentials.
func (s *Server) storageBackends(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, wire.StorageBackends(s.eng.StorageBackends()))
}

// dryRunRequest is upstream's DryRunRequest: {input}, where input may be anything. The plan
// does not depend on it.
type dryRunRequest struct {
	Input json.RawMessage `json:"input"`
}

// dryRun plans a pipeline run without running it. The body is optional; when present it must
// be a JSON object ({input?}).
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request) {
	body := bufio.NewReader(r.Body)
	if _, err := body.Peek(1); err == nil {
		r.Body = io.NopCloser(body)
		var req dryRunRequest
		if !s.decode(w, r, &req) {
			return
		}
	} else if !errors.Is(err, io.EOF) {
		r.Body = io.NopCloser(body)
		var req dryRunRequest
		s.decode(w, r, &req) // answers the read error (a body over the cap is 413)
		return
	}
	out, err := s.eng.DryRunPipeline(r.Context(), r.PathValue("id"))
	answer(s, w, r, http.StatusOK, out, err, wire.DryRun)
}
