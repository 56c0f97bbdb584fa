package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// newRoutesServer builds a Server without an engine: enough to list its routes and to serve
// the endpoints that do not touch the engine.
func newRoutesServer() *Server {
	return New(nil, nil, Options{}, nil)
}

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	return doc
}

func TestOpenAPIDocumentShape(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	for _, k := range []string{"openapi", "info", "paths", "components"} {
		require.Contains(t, doc, k)
	}
	require.Regexp(t, `^3\.`, doc["openapi"])
	info, ok := doc["info"].(map[string]any)
	require.True(t, ok)
	require.Equal(t, "PipeWeave orchestrator API", info["title"])
	require.NotEmpty(t, info["version"])
	comps, ok := doc["components"].(map[string]any)
	require.True(t, ok)
	schemes, ok := comps["securitySchemes"].(map[string]any)
	require.True(t, ok)
	require.Contains(t, schemes, "bearerAuth")
	schemas, ok := comps["schemas"].(map[string]any)
	require.True(t, ok)
	for _, name := range []string{"Error", "TaskRun", "PipelineRun", "Pipeline", "Service", "Task", "HistoryEntry",
		"DLQEntry", "QueueStatus", "ProcessSummary", "EnqueueRequest", "EnqueueResult", "TriggerRequest",
		"TriggerResult", "DryRun", "RegisterRequest", "RegisterResponse", "HeartbeatRequest", "HeartbeatResponse",
		"CallbackRequest", "IdempotencyCheckRequest", "IdempotencyCheckResponse", "StorageObject"} {
		require.Contains(t, schemas, name)
	}
}

var wildcard = regexp.MustCompile(`\{([^}]*?)(\.\.\.)?\}`)

// TestOpenAPIMatchesRoutes keeps the document true: its (method, path) pairs are exactly the
// routes the server registers, and every operation has an id and responses.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var registered []string
	for _, p := range newRoutesServer().Routes() {
		method, path, ok := strings.Cut(p, " ")
		require.True(t, ok, "route %q has no method", p)
		registered = append(registered, method+" "+wildcard.ReplaceAllString(path, "{$1}"))
	}
	require.NotEmpty(t, registered)

	doc := loadOpenAPI(t)
	paths, ok := doc["paths"].(map[string]any)
	require.True(t, ok)
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	var documented []string
	opIDs := map[string]string{}
	for path, item := range paths {
		ops, ok := item.(map[string]any)
		require.True(t, ok, path)
		for m, o := range ops {
			if !slices.Contains(methods, m) {
				continue
			}
			key := strings.ToUpper(m) + " " + path
			documented = append(documented, key)
			op, ok := o.(map[string]any)
			require.True(t, ok, key)
			id, _ := op["operationId"].(string)
			require.NotEmpty(t, id, "%s has no operationId", key)
			require.NotContains(t, opIDs, id, "operationId %s is used twice", id)
			opIDs[id] = key
			require.NotEmpty(t, op["summary"], "%s has no summary", key)
			require.NotEmpty(t, op["responses"], "%s has no responses", key)
			for _, name := range wildcard.FindAllStringSubmatch(path, -1) {
				require.True(t, hasPathParam(op, name[1]), "%s does not declare path parameter %s", key, name[1])
			}
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	require.Equal(t, registered, documented)
}

func hasPathParam(op map[string]any, name string) bool {
	params, _ := op["parameters"].([]any)
	for _, p := range params {
		m, _ := p.(map[string]any)
		if m["in"] == "path" && m["name"] == name && m["required"] == true {
			return true
		}
	}
	return false
}

// TestOpenAPIRefsResolve checks every $ref points at something the document defines.
func TestOpenAPIRefsResolve(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "$ref" {
					s, ok := e.(string)
					require.True(t, ok, "$ref is not a string: %v", e)
					refs = append(refs, s)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	require.NotEmpty(t, refs)
	for _, ref := range refs {
		ptr, ok := strings.CutPrefix(ref, "#/")
		require.True(t, ok, "$ref %q is not local", ref)
		var cur any = doc
		for _, seg := range strings.Split(ptr, "/") {
			seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
			m, ok := cur.(map[string]any)
			require.True(t, ok, "$ref %q goes through a non-object", ref)
			cur, ok = m[seg]
			require.True(t, ok, "$ref %q does not resolve", ref)
		}
		require.IsType(t, map[string]any{}, cur, "$ref %q", ref)
	}
}

func TestServeOpenAPI(t *testing.T) {
	t.Parallel()
	// Open even when API keys are configured.
	s := New(nil, nil, Options{APIKeys: []string{"k"}}, nil)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	resp, err := http.Get(ts.URL + "/api/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, openAPI, body)
}
