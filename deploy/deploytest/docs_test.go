package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
)

// configurationVariables are the variables of README.md's configuration table.
func configurationVariables(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	row := regexp.MustCompile("^\\| `([A-Z][A-Z0-9_]*)` \\|")
	for line := range strings.SplitSeq(readRepoFile(t, "README.md"), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			vars[m[1]] = true
		}
	}
	require.Contains(t, vars, "DATABASE_URL", "README.md's configuration table was not found")
	return vars
}

func TestSampleEvents(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "deploy", "aws", "events")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	routes := map[string]bool{"ANY /": true, "ANY /{proxy+}": true}
	seen := map[string]bool{}
	for _, e := range entries {
		require.True(t, strings.HasSuffix(e.Name(), ".json"), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		var ev map[string]any
		require.NoError(t, json.Unmarshal(b, &ev), e.Name())
		switch {
		case ev["detail-type"] == "Scheduled Event":
			require.Equal(t, "aws.events", ev["source"], e.Name())
			seen["schedule"] = true
		case ev["version"] == "2.0":
			require.Contains(t, routes, ev["routeKey"], "%s: a route of ApiFunction's HttpApi events", e.Name())
			rc := ev["requestContext"].(map[string]any)
			require.Equal(t, ev["rawPath"], rc["http"].(map[string]any)["path"], e.Name())
			seen["http-api"] = true
		case ev["httpMethod"] != nil:
			require.Equal(t, "/{proxy+}", ev["resource"], e.Name())
			seen["rest-api"] = true
		default:
			t.Fatalf("%s is not a scheduled, HTTP API or REST API event", e.Name())
		}
	}
	require.Equal(t, map[string]bool{"schedule": true, "http-api": true, "rest-api": true}, seen)
}

func TestLocalEnvVarsAreAValidConfiguration(t *testing.T) {
	t.Parallel()
	var file struct {
		Parameters map[string]string `json:"Parameters"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "deploy/aws/env-vars.json")), &file))
	require.NotEmpty(t, file.Parameters)

	// sam local only overrides variables that the template declares.
	g := globalFunction(t, openTemplate(t))
	for name := range file.Parameters {
		require.Contains(t, g.Environment.Variables, name, "deploy/aws/env-vars.json sets %s, which template.yaml does not declare", name)
	}
	env := map[string]string{"MODE": g.Environment.Variables["MODE"]}
	for k, v := range file.Parameters {
		env[k] = v
	}
	cfg, err := core.ConfigFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err, "deploy/aws/env-vars.json must be a configuration the functions accept")
	require.Equal(t, core.ModeServerless, cfg.Mode)

	// The sample API event carries one of its API keys.
	var ev struct {
		Headers map[string]string `json:"headers"`
	}
	require.NoError(t, json.Unmarshal([]byte(readRepoFile(t, "deploy/aws/events/http-api-process.json")), &ev))
	key, ok := strings.CutPrefix(ev.Headers["authorization"], "Bearer ")
	require.True(t, ok)
	require.Contains(t, strings.Split(file.Parameters["PIPEWEAVE_API_KEYS"], ","), key)
}

func TestReadmesGiveTheCommands(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"deploy/README.md": {
			"go run ./cmd/pipeweave db migrate --url",
			"PORT=8080 go run ./functions/api",
			"go run ./functions/process",
			"go run ./functions/heartbeat-sweep",
			"go run ./functions/dlq-purge",
		},
		"deploy/aws/README.md": {
			"sam build && sam deploy --guided",
			"sam local start-api",
			"sam local invoke ProcessFunction --event deploy/aws/events/schedule.json",
			"sam local invoke HeartbeatSweepFunction",
			"sam local invoke DlqPurgeFunction",
			"sam local invoke ApiFunction --event deploy/aws/events/http-api-health.json",
			"go run ./cmd/pipeweave db migrate --url",
		},
		"deploy/gcp/README.md": {
			"gcloud builds submit --config cloudbuild.yaml --substitutions=",
			"go run ./cmd/pipeweave db migrate --url",
			"docker build -f deploy/cloudrun/Dockerfile",
		},
	}
	root := repoRoot(t)
	paths := regexp.MustCompile(`(?:^|[\s(\x60'"])((?:deploy|functions|cmd|docs|scripts)/[A-Za-z0-9_./-]*[A-Za-z0-9_-])`)
	links := regexp.MustCompile(`\]\(([^)#:]+)(?:#[^)]*)?\)`)
	for readme, commands := range want {
		text := readRepoFile(t, readme)
		for _, c := range commands {
			require.Contains(t, text, c, "%s must show `%s`", readme, c)
		}
		// Every repository path and relative link it mentions exists.
		for _, m := range paths.FindAllStringSubmatch(text, -1) {
			_, err := os.Stat(filepath.Join(root, filepath.FromSlash(m[1])))
			require.NoError(t, err, "%s mentions %s", readme, m[1])
		}
		for _, m := range links.FindAllStringSubmatch(text, -1) {
			_, err := os.Stat(filepath.Join(root, filepath.Dir(readme), filepath.FromSlash(m[1])))
			require.NoError(t, err, "%s links to %s", readme, m[1])
		}
	}
}
