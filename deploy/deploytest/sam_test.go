package deploytest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/stretchr/testify/require"
)

// refMarker stands for `!Ref Name` after parsing: goformation would otherwise resolve a Ref
// to the parameter's default (or to nothing), and the tests want to see which parameter an
// environment variable comes from.
const refMarker = "ref:"

// goformationMu serialises goformation's YAML parsing: it registers its tag handlers in a
// package-level map on every call, which parallel tests would otherwise write concurrently.
var goformationMu sync.Mutex

// openTemplate parses template.yaml with goformation, keeping Refs visible as refMarker+Name.
func openTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	goformationMu.Lock()
	defer goformationMu.Unlock()
	tpl, err := goformation.OpenWithOptions(filepath.Join(repoRoot(t), "template.yaml"), &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref": func(_ string, input, _ any) any {
				name, ok := input.(string)
				if !ok || name == "AWS::NoValue" {
					return nil
				}
				return refMarker + name
			},
		},
	})
	require.NoError(t, err, "template.yaml must parse as a SAM template")
	return tpl
}

// rawTemplate is template.yaml as plain JSON data with the intrinsic functions in their long
// form ({"Fn::Sub": …}) and unresolved.
func rawTemplate(t *testing.T) map[string]any {
	t.Helper()
	goformationMu.Lock()
	defer goformationMu.Unlock()
	data, err := intrinsics.ProcessYAML([]byte(readRepoFile(t, "template.yaml")), &intrinsics.ProcessorOptions{NoProcess: true})
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(data, &raw))
	return raw
}

func globalFunction(t *testing.T, tpl *cloudformation.Template) *global.Function {
	t.Helper()
	g, err := tpl.GetServerlessGlobalFunction()
	require.NoError(t, err, "template.yaml must have Globals: Function")
	return g
}

// templateArch is the one architecture of every function (Globals, or each function's own).
func templateArch(t *testing.T, tpl *cloudformation.Template) string {
	t.Helper()
	g := globalFunction(t, tpl)
	archs := map[string]bool{}
	for id, fn := range tpl.GetAllServerlessFunctionResources() {
		a := fn.Architectures
		if len(a) == 0 && g.Architectures != nil {
			a = *g.Architectures
		}
		require.Len(t, a, 1, "%s must name exactly one architecture", id)
		archs[a[0]] = true
	}
	require.Len(t, archs, 1, "every function must have the same architecture, the Makefile builds one")
	for a := range archs {
		require.Contains(t, goarch, a, "unknown Lambda architecture")
		return a
	}
	return ""
}

func TestTemplateDeclaresTheFourFunctions(t *testing.T) {
	t.Parallel()
	tpl := openTemplate(t)
	require.NotNil(t, tpl.Transform)
	require.NotNil(t, tpl.Transform.String)
	require.Equal(t, "AWS::Serverless-2016-10-31", *tpl.Transform.String)

	fns := tpl.GetAllServerlessFunctionResources()
	var ids, want []string
	for id := range fns {
		ids = append(ids, id)
	}
	for _, f := range functions {
		want = append(want, f.logicalID)
	}
	sort.Strings(ids)
	sort.Strings(want)
	require.Equal(t, want, ids, "template.yaml must declare exactly the four functions")

	g := globalFunction(t, tpl)
	str := func(own, global *string) string {
		switch {
		case own != nil:
			return *own
		case global != nil:
			return *global
		}
		return ""
	}
	arch := templateArch(t, tpl)
	require.Equal(t, "x86_64", arch, "the Makefile and the READMEs say x86_64; change them together")
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			t.Parallel()
			fn := fns[f.logicalID]
			require.Equal(t, "provided.al2023", str(fn.Runtime, g.Runtime))
			require.Equal(t, "bootstrap", str(fn.Handler, g.Handler))
			require.Equal(t, "makefile", fn.AWSCloudFormationMetadata["BuildMethod"],
				"Metadata: BuildMethod: makefile (sam build calls make build-%s)", f.logicalID)
			require.NotNil(t, fn.CodeUri)
			require.NotNil(t, fn.CodeUri.String)
			require.Equal(t, ".", *fn.CodeUri.String, "one go.mod at the root: CodeUri must be the root")
			require.Nil(t, fn.PackageType, "zip packages, not images")
		})
	}
}

func TestTemplateEventsMatchTheFunctions(t *testing.T) {
	t.Parallel()
	fns := openTemplate(t).GetAllServerlessFunctionResources()
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			t.Parallel()
			fn := fns[f.logicalID]
			require.NotNil(t, fn)
			if f.schedule == "" {
				routes := map[string]bool{}
				for name, ev := range fn.Events {
					require.Equal(t, "HttpApi", ev.Type, "event %s", name)
					require.NotNil(t, ev.Properties)
					require.NotNil(t, ev.Properties.HttpApiEvent, "event %s", name)
					h := ev.Properties.HttpApiEvent
					require.NotNil(t, h.Method)
					require.NotNil(t, h.Path)
					routes[*h.Method+" "+*h.Path] = true
				}
				require.Equal(t, map[string]bool{"ANY /": true, "ANY /{proxy+}": true}, routes,
					"the API serves every path, the root (/health is at the root) included")
				return
			}
			require.Len(t, fn.Events, 1)
			for name, ev := range fn.Events {
				require.Equal(t, "Schedule", ev.Type, "event %s", name)
				require.NotNil(t, ev.Properties)
				require.NotNil(t, ev.Properties.ScheduleEvent, "event %s", name)
				require.Equal(t, f.schedule, ev.Properties.ScheduleEvent.Schedule)
				require.True(t, ev.Properties.ScheduleEvent.Enabled == nil || *ev.Properties.ScheduleEvent.Enabled)
			}
		})
	}
}

func TestTemplateTimeouts(t *testing.T) {
	t.Parallel()
	tpl := openTemplate(t)
	g := globalFunction(t, tpl)
	fns := tpl.GetAllServerlessFunctionResources()
	timeout := func(id string) int {
		fn := fns[id]
		require.NotNil(t, fn, id)
		if fn.Timeout != nil {
			return *fn.Timeout
		}
		require.NotNil(t, g.Timeout, "%s has no timeout", id)
		return *g.Timeout
	}
	require.LessOrEqual(t, timeout("ApiFunction"), 30, "API Gateway ends an HTTP API integration after 30 s")

	budget := tpl.Parameters["ProcessTimeBudgetMs"]
	require.NotNil(t, budget.MaxValue, "ProcessTimeBudgetMs needs a MaxValue below the function's timeout")
	require.Greater(t, float64(timeout("ProcessFunction")*1000), *budget.MaxValue+dispatchTimeoutMs,
		"ProcessFunction must outlive PROCESS_TIME_BUDGET_MS plus one dispatch")
	def, ok := budget.Default.(float64)
	require.True(t, ok, "ProcessTimeBudgetMs needs a numeric default")
	require.LessOrEqual(t, def, *budget.MaxValue)
	for _, f := range functions {
		require.LessOrEqual(t, timeout(f.logicalID), 900, "Lambda's limit")
	}
}

func TestTemplateParametersAndEnvironment(t *testing.T) {
	t.Parallel()
	tpl := openTemplate(t)
	g := globalFunction(t, tpl)
	require.NotNil(t, g.Environment, "Globals: Function: Environment")
	vars := g.Environment.Variables
	require.Equal(t, "serverless", vars["MODE"])

	// variable → parameter, and whether the value is a secret.
	want := []struct {
		variable, parameter string
		secret              bool
	}{
		{"DATABASE_URL", "DatabaseUrl", true},
		{"PIPEWEAVE_SECRET_KEY", "SecretKey", true},
		{"STORAGE_BACKENDS", "StorageBackends", true},
		{"PIPEWEAVE_API_KEYS", "ApiKeys", true},
		{"DEFAULT_STORAGE_BACKEND_ID", "DefaultStorageBackendId", false},
		{"PROCESS_TIME_BUDGET_MS", "ProcessTimeBudgetMs", false},
	}
	for _, w := range want {
		require.Equal(t, refMarker+w.parameter, vars[w.variable], "%s must come from the parameter %s", w.variable, w.parameter)
		p, ok := tpl.Parameters[w.parameter]
		require.True(t, ok, "parameter %s", w.parameter)
		if w.secret {
			require.NotNil(t, p.NoEcho, "parameter %s holds a secret: NoEcho", w.parameter)
			require.True(t, *p.NoEcho, "parameter %s holds a secret: NoEcho", w.parameter)
			require.Nil(t, p.Default, "parameter %s holds a secret: no default", w.parameter)
		}
	}

	// Every variable is one the orchestrator reads (README.md's configuration table) and every
	// Ref names a declared parameter.
	known := configurationVariables(t)
	for name, value := range vars {
		require.Contains(t, known, name, "%s is not in README.md's configuration table", name)
		if param, ok := strings.CutPrefix(value, refMarker); ok {
			require.Contains(t, tpl.Parameters, param, "%s refers to an undeclared parameter", name)
		}
	}
	// No secret sneaks in as a plain default.
	for name, p := range tpl.Parameters {
		if p.NoEcho == nil || !*p.NoEcho {
			lower := strings.ToLower(name)
			require.False(t, strings.Contains(lower, "secret") || strings.Contains(lower, "password") ||
				strings.Contains(lower, "apikey") || strings.Contains(lower, "databaseurl"),
				"parameter %s looks secret but is not NoEcho", name)
		}
	}
}

func TestTemplateOutputsTheApiUrl(t *testing.T) {
	t.Parallel()
	raw := rawTemplate(t)
	outputs, ok := raw["Outputs"].(map[string]any)
	require.True(t, ok, "template.yaml needs Outputs")
	apiURL, ok := outputs["ApiUrl"].(map[string]any)
	require.True(t, ok, "Outputs: ApiUrl")
	value, ok := apiURL["Value"].(map[string]any)
	require.True(t, ok, "ApiUrl: Value must be an !Sub")
	sub, ok := value["Fn::Sub"].(string)
	require.True(t, ok, "ApiUrl: Value must be an !Sub")
	// ServerlessHttpApi is the HTTP API that SAM makes for the HttpApi events.
	require.Regexp(t, `^https://\$\{ServerlessHttpApi\}\.execute-api\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}/$`, sub)

	// The API's reserved concurrency is optional: an account with the minimum concurrency
	// limit cannot reserve any, so 0 must leave it unset.
	resources := raw["Resources"].(map[string]any)
	api := resources["ApiFunction"].(map[string]any)["Properties"].(map[string]any)
	cond := api["ReservedConcurrentExecutions"].(map[string]any)["Fn::If"].([]any)
	require.Len(t, cond, 3)
	require.Contains(t, raw["Conditions"], cond[0])
	require.Equal(t, map[string]any{"Ref": "AWS::NoValue"}, cond[2])
}

// makeDryRun returns the command lines `make -n` prints for args in the repository root
// (ARTIFACTS_DIR is /ARTIFACTS_DIR unless args set it). It skips the test when GNU make is
// not on PATH.
func makeDryRun(t *testing.T, args ...string) ([]string, error) {
	t.Helper()
	makePath, env := lookMake(t)
	cmd := exec.Command(makePath, append([]string{"-n", "--no-print-directory", "ARTIFACTS_DIR=/ARTIFACTS_DIR"}, args...)...)
	cmd.Dir, cmd.Env = repoRoot(t), env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("make %v: %w\n%s", args, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// lookMake returns GNU make and the environment to run it in: this one without the
// variables that would change what the Makefile builds. It skips the test when make is not
// on PATH.
func lookMake(t *testing.T) (string, []string) {
	t.Helper()
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make is not on PATH: cannot evaluate the Makefile (install GNU make)")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ARTIFACTS_DIR=") && !strings.HasPrefix(kv, "MAKEFLAGS=") && !strings.HasPrefix(kv, "STORAGE_DRIVERS=") {
			env = append(env, kv)
		}
	}
	return makePath, env
}

// goBuilds returns the go build commands among lines.
func goBuilds(lines []string) []goBuild {
	var builds []goBuild
	for _, line := range lines {
		if b, ok := parseGoBuild(line); ok {
			builds = append(builds, b)
		}
	}
	return builds
}

// goBuild is one `go build` command line of a recipe: its environment assignments, flags and
// package arguments.
type goBuild struct {
	env      map[string]string
	output   string
	tags     string
	packages []string
}

func parseGoBuild(line string) (goBuild, bool) {
	fields := strings.Fields(line)
	b := goBuild{env: map[string]string{}}
	i := 0
	for ; i < len(fields) && strings.Contains(fields[i], "=") && !strings.HasPrefix(fields[i], "-"); i++ {
		k, v, _ := strings.Cut(fields[i], "=")
		b.env[k] = v
	}
	if i+1 >= len(fields) || fields[i] != "go" || fields[i+1] != "build" {
		return b, false
	}
	for i += 2; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == "-o" && i+1 < len(fields):
			i++
			b.output = fields[i]
		case strings.HasPrefix(f, "-o="):
			b.output = strings.TrimPrefix(f, "-o=")
		case f == "-tags" && i+1 < len(fields):
			i++
			b.tags = fields[i]
		case strings.HasPrefix(f, "./"):
			b.packages = append(b.packages, f)
		}
	}
	return b, true
}

func TestMakefileBuildsEachFunctionFromItsMainPackage(t *testing.T) {
	t.Parallel()
	arch := goarch[templateArch(t, openTemplate(t))]
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			t.Parallel()
			lines, err := makeDryRun(t, "build-"+f.logicalID)
			require.NoError(t, err, "sam build calls make build-%s", f.logicalID)
			builds := goBuilds(lines)
			require.Len(t, builds, 1, "build-%s must run one go build", f.logicalID)
			b := builds[0]
			require.Equal(t, "linux", b.env["GOOS"])
			require.Equal(t, arch, b.env["GOARCH"], "GOARCH must match the template's architecture")
			require.Equal(t, "0", b.env["CGO_ENABLED"], "provided.al2023 wants a static binary")
			require.Equal(t, "lambda.norpc", b.tags, "every storage driver by default")
			require.Equal(t, "/ARTIFACTS_DIR/bootstrap", b.output, "the runtime runs the file bootstrap")
			require.Equal(t, []string{"./functions/" + f.dir}, b.packages)
			requireMainPackage(t, b.packages[0], arch)
		})
	}
}

// STORAGE_DRIVERS leaves the other providers' drivers out of the functions with build tags.
func TestMakefileStorageDrivers(t *testing.T) {
	t.Parallel()
	for drivers, want := range map[string]string{
		"local,aws-s3,gcs,minio": "lambda.norpc",
		"local,aws-s3":           "lambda.norpc,pipeweave_no_gcs,pipeweave_no_minio",
		"minio":                  "lambda.norpc,pipeweave_no_local,pipeweave_no_s3,pipeweave_no_gcs",
	} {
		lines, err := makeDryRun(t, "build-ProcessFunction", "STORAGE_DRIVERS="+drivers)
		require.NoError(t, err)
		builds := goBuilds(lines)
		require.Len(t, builds, 1)
		require.Equal(t, want, builds[0].tags, "STORAGE_DRIVERS=%s", drivers)
	}
	_, err := makeDryRun(t, "build-ApiFunction", "STORAGE_DRIVERS=local,s3")
	require.ErrorContains(t, err, "STORAGE_DRIVERS: unknown provider(s) s3")
}

func TestMakeBuildsALinuxBootstrap(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: not building the Lambda bootstrap")
	}
	makePath, env := lookMake(t)
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// Without ARTIFACTS_DIR it stops with a clear message instead of writing /bootstrap.
	cmd := exec.CommandContext(ctx, makePath, "-s", "build-ApiFunction")
	cmd.Dir, cmd.Env = root, env
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "ARTIFACTS_DIR is not set")

	artifacts := t.TempDir()
	cmd = exec.CommandContext(ctx, makePath, "-s", "build-ApiFunction", "ARTIFACTS_DIR="+artifacts)
	cmd.Dir, cmd.Env = root, env
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "make build-ApiFunction:\n%s", out)

	bootstrap := filepath.Join(artifacts, "bootstrap")
	info, err := os.Stat(bootstrap)
	require.NoError(t, err)
	require.NotZero(t, info.Mode().Perm()&0o111, "bootstrap must be executable")
	require.Less(t, info.Size(), int64(250<<20), "Lambda's limit for an unzipped function is 250 MB")
	f, err := os.Open(bootstrap)
	require.NoError(t, err)
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	require.NoError(t, err)
	require.True(t, bytes.Equal([]byte("\x7fELF"), magic), "bootstrap is not an ELF file: % x", magic)

	e, err := elf.NewFile(f)
	require.NoError(t, err)
	wantMachine := map[string]elf.Machine{"x86_64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[templateArch(t, openTemplate(t))]
	require.Equal(t, wantMachine, e.Machine, "bootstrap is built for the wrong architecture")
	require.Equal(t, elf.ELFCLASS64, e.Class)
	require.Equal(t, elf.ET_EXEC, e.Type, "a static executable")
	require.Contains(t, []elf.OSABI{elf.ELFOSABI_NONE, elf.ELFOSABI_LINUX}, e.OSABI)
	require.False(t, slices.ContainsFunc(e.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }),
		"bootstrap must be statically linked (CGO_ENABLED=0): it asks for a dynamic loader")
}
