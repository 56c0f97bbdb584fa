package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/examples/pdf"
)

// encodedRun matches a run of base64 or base64url characters long enough to
// hide a secret (a JWT splits at its dots into such runs).
var encodedRun = regexp.MustCompile(`[A-Za-z0-9+/_=-]{16,}`)

// expand returns text and, recursively (to depth levels), what each encoded
// run in it decodes to, so that a secret merely encoded, such as in a JWT's
// claims, is found as well as a plain one.
func expand(text string, depth int) []string {
	out := []string{text}
	if depth == 0 {
		return out
	}
	encodings := []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding}
	for _, run := range encodedRun.FindAllString(text, -1) {
		for _, enc := range encodings {
			if b, err := enc.DecodeString(run); err == nil {
				out = append(out, expand(string(b), depth-1)...)
				break
			}
		}
	}
	return out
}

// requireNoSecrets fails if text, or anything encoded in it, contains a
// secret, as it is or escaped as in a JSON string.
func requireNoSecrets(t *testing.T, what string, text []byte, secrets []secret) {
	t.Helper()
	for _, part := range expand(string(text), 3) {
		for _, s := range secrets {
			quoted, err := json.Marshal(s.value)
			require.NoError(t, err)
			for _, needle := range []string{s.value, strings.Trim(string(quoted), `"`)} {
				if strings.Contains(part, needle) {
					t.Fatalf("%s contains %s", what, s.name)
				}
			}
		}
	}
}

// No answer of the orchestrator's API and no dispatch to the worker shows a
// credential value of any backend, whichever is the default: the dispatches
// carry the default backend's credentials only sealed in the run token.
func TestCredentialsStayOutOfAPIAndDispatches(t *testing.T) {
	t.Parallel()
	for _, id := range backendIDs {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, id)
			run, tasks := s.runPDF(t)
			secrets := s.backends.secrets()
			require.Greater(t, len(secrets), 8)

			// The API answers, beyond those the run's polling collected.
			paths := []string{
				"/api/runs/" + run.ID, "/api/runs", "/api/pipelines", "/api/pipelines/" + pdf.ServiceID,
				"/api/services", "/api/services/" + pdf.ServiceID + "/tasks", "/api/queue/status", "/api/dlq",
				"/api/storage/" + run.InputPath, "/api/storage/no/such/object.json", "/health",
			}
			for _, tr := range tasks {
				paths = append(paths, "/api/task-runs/"+tr.ID, "/api/tasks/"+tr.TaskID+"/history", "/api/storage/"+*tr.OutputPath)
				for _, a := range tr.Assets {
					paths = append(paths, "/api/storage/"+a.Path)
				}
				if tr.LogsPath != nil {
					paths = append(paths, "/api/storage/"+*tr.LogsPath)
				}
			}
			for _, other := range backendIDs {
				paths = append(paths, "/api/storage/"+run.InputPath+"?backend="+other)
			}
			for _, path := range paths {
				s.do(t, http.MethodGet, path, nil)
			}
			answered := map[string]bool{}
			for _, a := range s.recordedAnswers() {
				answered[a.request] = a.status == http.StatusOK
				requireNoSecrets(t, "the answer to "+a.request, a.body, secrets)
			}
			for _, path := range []string{"/api/runs/" + run.ID, "/api/pipelines", "/api/services"} {
				require.True(t, answered["GET "+path], "GET %s answered 200", path)
			}

			// The dispatches.
			dispatches := s.dispatches(t)
			seen := map[string]bool{}
			for _, d := range dispatches {
				if d.method != http.MethodPost || !strings.HasPrefix(d.path, "/tasks/") {
					continue
				}
				requireNoSecrets(t, "the dispatch "+d.path, d.raw, secrets)
				var req protocol.DispatchRequest
				require.NoError(t, json.Unmarshal(d.body, &req))
				seen[req.TaskID] = true

				// The checks above do look inside the run token: its claims
				// decode to the run's...
				claims, err := s.keys.VerifyRun(req.StorageToken, time.Now())
				require.NoError(t, err)
				found := false
				for _, part := range expand(string(d.raw), 3) {
					found = found || strings.Contains(part, `"sub":"`+req.RunID+`"`)
				}
				require.True(t, found, "the run token's claims were not decoded")
				// ... and it does carry the default backend, credentials and
				// all, sealed.
				// Sealed for the pdf service: its key opens it, the master-derived K_enc does not.
				_, err = s.keys.OpenBackend(req.RunID, claims.Storage)
				require.ErrorIs(t, err, token.ErrInvalid)
				svc, err := token.ServiceKey(secretKey, pdf.ServiceID)
				require.NoError(t, err)
				svcKeys, err := token.ServiceKeys(svc)
				require.NoError(t, err)
				plain, err := svcKeys.OpenBackend(req.RunID, claims.Storage)
				require.NoError(t, err)
				var sealed storage.Config
				require.NoError(t, json.Unmarshal(plain, &sealed))
				require.Equal(t, s.def.ID, sealed.ID)
				require.Equal(t, s.def.Provider, sealed.Provider)
				require.Equal(t, s.def.Credentials, sealed.Credentials)
			}
			require.Len(t, seen, 6, "dispatched tasks (ocr-page's items among them): %v", seen)

			// Nor do the orchestrator's and the worker's logs.
			requireNoSecrets(t, "the orchestrator's logs", []byte(s.orchLogs.String()), secrets)
			requireNoSecrets(t, "the worker's logs", []byte(s.workerLogs.String()), secrets)
		})
	}
}
