package deploytest

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// cloudBuild is the part of the Cloud Build configuration schema that cloudbuild.yaml uses;
// decoding rejects any other key, so a misspelt one (waitfor, entryPoint) fails the test.
type cloudBuild struct {
	Steps         []buildStep       `yaml:"steps"`
	Substitutions map[string]string `yaml:"substitutions"`
	Options       struct {
		DynamicSubstitutions bool   `yaml:"dynamicSubstitutions"`
		SubstitutionOption   string `yaml:"substitutionOption"`
		Logging              string `yaml:"logging"`
		MachineType          string `yaml:"machineType"`
	} `yaml:"options"`
	Images  []string `yaml:"images"`
	Timeout string   `yaml:"timeout"`
}

type buildStep struct {
	ID         string   `yaml:"id"`
	Name       string   `yaml:"name"`
	Entrypoint string   `yaml:"entrypoint"`
	Args       []string `yaml:"args"`
	Env        []string `yaml:"env"`
	SecretEnv  []string `yaml:"secretEnv"`
	WaitFor    []string `yaml:"waitFor"`
	Dir        string   `yaml:"dir"`
	Script     string   `yaml:"script"`
	Timeout    string   `yaml:"timeout"`
}

func parseCloudBuild(t *testing.T) cloudBuild {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(readRepoFile(t, "cloudbuild.yaml")))
	dec.KnownFields(true)
	var cb cloudBuild
	require.NoError(t, dec.Decode(&cb), "cloudbuild.yaml")
	require.NotEmpty(t, cb.Steps)
	return cb
}

// gcloudCall is a step's gcloud command: its positional words and its --flags.
type gcloudCall struct {
	words []string          // e.g. run deploy pipeweave-api
	flags map[string]string // --name=value, or "" for a switch
}

func (s buildStep) gcloud() (gcloudCall, bool) {
	if s.Entrypoint != "gcloud" {
		return gcloudCall{}, false
	}
	c := gcloudCall{flags: map[string]string{}}
	for _, a := range s.Args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			k, v, _ := strings.Cut(name, "=")
			c.flags[k] = v
			continue
		}
		c.words = append(c.words, a)
	}
	return c, true
}

func (c gcloudCall) is(words ...string) bool {
	return len(c.words) > len(words) && slices.Equal(c.words[:len(words)], words)
}

// dependsOn reports whether step i of steps runs after step j finished: Cloud Build starts a
// step without waitFor after every earlier step, one with waitFor after the steps it names
// ("-": at once).
func dependsOn(steps []buildStep, i, j int) bool {
	seen := map[int]bool{}
	var walk func(k int) bool
	walk = func(k int) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		var deps []int
		if len(steps[k].WaitFor) == 0 {
			for d := range k {
				deps = append(deps, d)
			}
		}
		for _, id := range steps[k].WaitFor {
			for d, s := range steps {
				if s.ID == id && id != "" {
					deps = append(deps, d)
				}
			}
		}
		for _, d := range deps {
			if d == j || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(i)
}

// dockerfile is what the Cloud Run Dockerfile builds and where the binaries end up.
type dockerfile struct {
	binaries map[string]string // path in the image → the package it is built from
	cmd      []string
	env      map[string]string // ENV of the build stage
}

var (
	dockerFrom = regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)$`)
	dockerCopy = regexp.MustCompile(`^COPY\s+--from=(\S+)\s+(\S+)\s+(\S+)$`)
)

// parseDockerfile reads deploy/cloudrun/Dockerfile: the `go build -o DIR/ ./pkg…` of the
// build stage and the COPY --from=stage DIR/ DEST/ of the final one.
func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	text := strings.ReplaceAll(readRepoFile(t, "deploy/cloudrun/Dockerfile"), "\\\n", " ")
	d := dockerfile{binaries: map[string]string{}, env: map[string]string{}}
	stages := map[string]bool{}
	built := map[string][]string{} // output directory → packages
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case dockerFrom.MatchString(line):
			stages[dockerFrom.FindStringSubmatch(line)[1]] = true
		case strings.HasPrefix(line, "ENV "):
			for _, kv := range strings.Fields(strings.TrimPrefix(line, "ENV ")) {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case strings.HasPrefix(line, "RUN "):
			for cmd := range strings.SplitSeq(strings.TrimPrefix(line, "RUN "), "&&") {
				if b, ok := parseGoBuild(strings.TrimSpace(cmd)); ok {
					require.True(t, strings.HasSuffix(b.output, "/"), "go build -o must name a directory: %q", b.output)
					built[b.output] = append(built[b.output], b.packages...)
				}
			}
		case dockerCopy.MatchString(line):
			sm := dockerCopy.FindStringSubmatch(line)
			require.True(t, stages[sm[1]], "COPY --from=%s: no such stage", sm[1])
			require.True(t, strings.HasSuffix(sm[3], "/"), "COPY destination must be a directory: %q", sm[3])
			for _, pkg := range built[sm[2]] {
				d.binaries[sm[3]+path.Base(pkg)] = pkg
			}
		case strings.HasPrefix(line, "CMD "):
			require.NoError(t, yaml.Unmarshal([]byte(strings.TrimPrefix(line, "CMD ")), &d.cmd), "CMD must be in exec form")
		}
	}
	require.NotEmpty(t, d.binaries, "deploy/cloudrun/Dockerfile builds no binary that it copies into the image")
	return d
}

func TestDockerfileBuildsEveryFunction(t *testing.T) {
	t.Parallel()
	d := parseDockerfile(t)
	require.Equal(t, "0", d.env["CGO_ENABLED"], "distroless/static needs static binaries")
	require.Equal(t, "linux", d.env["GOOS"])
	for _, f := range functions {
		require.Equal(t, "./functions/"+f.dir, d.binaries["/usr/local/bin/"+f.dir])
	}
	require.Equal(t, "./cmd/pipeweave", d.binaries["/usr/local/bin/pipeweave"], "the CLI, for the migration job")
	for _, pkg := range d.binaries {
		requireMainPackage(t, pkg, "amd64")
	}
	require.Len(t, d.cmd, 1)
	require.Contains(t, d.binaries, d.cmd[0], "the default command must be a binary of the image")
}

func TestCloudBuildDeploysTheFourServices(t *testing.T) {
	t.Parallel()
	cb := parseCloudBuild(t)
	d := parseDockerfile(t)
	require.True(t, cb.Options.DynamicSubstitutions, "_IMAGE and the service accounts use other substitutions")

	// One image, built from the Dockerfile and pushed.
	build, push := -1, -1
	var tags []string
	for i, s := range cb.Steps {
		if s.Name != "gcr.io/cloud-builders/docker" || len(s.Args) == 0 {
			continue
		}
		switch s.Args[0] {
		case "build":
			require.Equal(t, -1, build, "one image only")
			build = i
			for j, a := range s.Args {
				if v, ok := strings.CutPrefix(a, "--tag="); ok {
					tags = append(tags, v)
				}
				if a == "-t" || a == "--tag" {
					tags = append(tags, s.Args[j+1])
				}
			}
			require.Contains(t, s.Args, "--file=deploy/cloudrun/Dockerfile")
			require.Equal(t, ".", s.Args[len(s.Args)-1], "the build context is the repository root (one go.mod)")
		case "push":
			push = i
		}
	}
	require.NotEqual(t, -1, build, "a docker build step")
	require.NotEqual(t, -1, push, "a docker push step")
	require.True(t, dependsOn(cb.Steps, push, build))
	require.NotEmpty(t, tags)
	repo, _, _ := strings.Cut(tags[0], ":")
	for _, tag := range tags {
		r, _, _ := strings.Cut(tag, ":")
		require.Equal(t, repo, r)
	}
	require.Contains(t, cb.Steps[push].Args, repo, "push the image that was built")
	deployed := tags[0]
	require.Contains(t, deployed, "${BUILD_ID}", "deploy the image of this build, not :latest")
	require.Contains(t, cb.Images, deployed, "images: lists what the build made")

	// The migration job runs the CLI's `db migrate` before any service is deployed.
	migrate := -1
	var migrateJob string
	for i, s := range cb.Steps {
		c, ok := s.gcloud()
		switch {
		case ok && c.is("run", "jobs", "deploy"):
			migrateJob = c.words[3]
			require.Equal(t, deployed, c.flags["image"])
			require.Contains(t, d.binaries, c.flags["command"])
			require.Equal(t, "./cmd/pipeweave", d.binaries[c.flags["command"]])
			require.Equal(t, "db,migrate", c.flags["args"])
			require.Contains(t, c.flags["set-secrets"], "DATABASE_URL=")
		case ok && c.is("run", "jobs", "execute"):
			require.Equal(t, migrateJob, c.words[3], "execute the job that was deployed")
			require.Contains(t, c.flags, "wait", "the build must fail when the migration fails")
			migrate = i
		}
	}
	require.NotEqual(t, -1, migrate, "a step that runs the migration job")
	require.True(t, dependsOn(cb.Steps, migrate, push))

	// The four services, each running its own binary of the image.
	services := map[string]int{}
	for i, s := range cb.Steps {
		if c, ok := s.gcloud(); ok && c.is("run", "deploy") {
			require.NotContains(t, services, c.words[2], "service %s deployed twice", c.words[2])
			services[c.words[2]] = i
		}
	}
	var names, want []string
	for name := range services {
		names = append(names, name)
	}
	for _, f := range functions {
		want = append(want, f.service)
	}
	slices.Sort(names)
	slices.Sort(want)
	require.Equal(t, want, names, "cloudbuild.yaml must deploy exactly the four services")

	for _, f := range functions {
		i := services[f.service]
		c, _ := cb.Steps[i].gcloud()
		require.Equal(t, deployed, c.flags["image"], f.service)
		require.Equal(t, "/usr/local/bin/"+f.dir, c.flags["command"], "%s must run its own binary", f.service)
		require.Equal(t, "./functions/"+f.dir, d.binaries[c.flags["command"]], "%s: the image has no such binary", f.service)
		require.True(t, dependsOn(cb.Steps, i, migrate), "%s must be deployed after the migration", f.service)
		require.NotEmpty(t, c.flags["region"])
		require.NotEmpty(t, c.flags["service-account"])

		secrets := keys(c.flags["set-secrets"])
		for _, name := range []string{"DATABASE_URL", "PIPEWEAVE_SECRET_KEY", "STORAGE_BACKENDS"} {
			require.Contains(t, secrets, name, "%s: %s from Secret Manager", f.service, name)
		}
		env := keys(c.flags["set-env-vars"])
		require.Equal(t, "serverless", env["MODE"], f.service)
		for name := range env {
			require.NotContains(t, secrets, name, "%s: %s set twice", f.service, name)
			require.NotContains(t, []string{"DATABASE_URL", "PIPEWEAVE_SECRET_KEY", "STORAGE_BACKENDS", "PIPEWEAVE_API_KEYS"}, name,
				"%s: a secret in plain environment", f.service)
		}
		if f.schedule == "" {
			require.Contains(t, c.flags, "allow-unauthenticated", "the API is public")
			require.Contains(t, secrets, "PIPEWEAVE_API_KEYS", "a public API needs API keys")
		} else {
			require.Contains(t, c.flags, "no-allow-unauthenticated", "%s is only for Cloud Scheduler", f.service)
			require.NotContains(t, c.flags, "allow-unauthenticated")
		}
	}

	// A process batch must fit in its service's request timeout.
	pc, _ := cb.Steps[services["pipeweave-process"]].gcloud()
	budget, err := strconv.Atoi(cb.Substitutions["_PROCESS_TIME_BUDGET_MS"])
	require.NoError(t, err)
	require.Contains(t, pc.flags["set-env-vars"], "PROCESS_TIME_BUDGET_MS=${_PROCESS_TIME_BUDGET_MS}")
	require.Greater(t, seconds(t, pc.flags["timeout"])*1000, budget+dispatchTimeoutMs)
}

func TestCloudBuildSchedulesTheThreeJobs(t *testing.T) {
	t.Parallel()
	cb := parseCloudBuild(t)
	root := repoRoot(t)
	const script = "deploy/gcp/scheduler-job.sh"
	info, err := os.Stat(filepath.Join(root, script))
	require.NoError(t, err)
	require.NotZero(t, info.Mode().Perm()&0o111, "%s must be executable", script)
	body := readRepoFile(t, script)
	require.Contains(t, body, `gcloud scheduler jobs "$verb" http`)
	require.Contains(t, body, "--oidc-service-account-email")
	require.Contains(t, body, "--http-method=POST")

	services := map[string]int{}
	for i, s := range cb.Steps {
		if c, ok := s.gcloud(); ok && c.is("run", "deploy") {
			services[c.words[2]] = i
		}
	}
	scheduled := map[string]bool{}
	for i, s := range cb.Steps {
		if len(s.Args) == 0 || s.Args[0] != script {
			continue
		}
		require.Equal(t, "bash", s.Entrypoint)
		require.Len(t, s.Args, 5, "%s JOB SERVICE SCHEDULE ATTEMPT_DEADLINE", script)
		service, schedule, deadline := s.Args[2], s.Args[3], s.Args[4]
		idx := slices.IndexFunc(functions, func(f function) bool { return f.service == service })
		require.NotEqual(t, -1, idx, "scheduler job for unknown service %s", service)
		f := functions[idx]
		require.NotEmpty(t, f.cron, "%s is not a scheduled function", service)
		require.Equal(t, f.cron, schedule, "%s runs at the same times as %s on AWS (%s)", service, f.logicalID, f.schedule)
		require.NotContains(t, scheduled, service, "two jobs for %s", service)
		scheduled[service] = true
		require.True(t, dependsOn(cb.Steps, i, services[service]), "the job for %s needs the service deployed first", service)
		c, _ := cb.Steps[services[service]].gcloud()
		require.GreaterOrEqual(t, seconds(t, deadline), seconds(t, c.flags["timeout"]),
			"the job's attempt deadline must cover %s's request timeout", service)
		env := keys(strings.Join(s.Env, ","))
		require.Contains(t, env, "REGION")
		require.Contains(t, env, "SCHEDULER_SA")
	}
	require.Equal(t, map[string]bool{"pipeweave-process": true, "pipeweave-heartbeat-sweep": true, "pipeweave-dlq-purge": true}, scheduled)
}

func TestCloudBuildSubstitutionsAreDefined(t *testing.T) {
	t.Parallel()
	cb := parseCloudBuild(t)
	text := readRepoFile(t, "cloudbuild.yaml")
	for _, m := range regexp.MustCompile(`\$\{?(_[A-Z0-9_]+)`).FindAllStringSubmatch(text, -1) {
		require.Contains(t, cb.Substitutions, m[1], "cloudbuild.yaml uses %s but does not define it", m[1])
	}
	for name, value := range cb.Substitutions {
		require.True(t, strings.HasPrefix(name, "_"), "user substitutions start with _: %s", name)
		require.NotContains(t, strings.ToLower(value), "postgres://", "%s: secrets belong in Secret Manager", name)
	}
}

// keys parses "K=V,K2=V2" (gcloud's --set-env-vars, --set-secrets) into a map.
func keys(list string) map[string]string {
	m := map[string]string{}
	for kv := range strings.SplitSeq(list, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// seconds parses a gcloud duration: "120", "120s".
func seconds(t *testing.T, d string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSuffix(d, "s"))
	require.NoError(t, err, "duration %q", d)
	return n
}
