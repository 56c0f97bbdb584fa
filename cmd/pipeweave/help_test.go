package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runMainIfAsked runs main instead of the tests when the test binary was started as the
// pipeweave command by runBinary (called first in TestMain): the exit status is then main's.
func runMainIfAsked() {
	if os.Getenv("PIPEWEAVE_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
}

// runBinary runs this test binary as `pipeweave args...` and returns its stdout, stderr and
// exit status.
func runBinary(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PIPEWEAVE_TEST_RUN_MAIN=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// secretEnvForHelp holds secrets that a help must never print, and addresses that nothing
// listens on: a help that connected anywhere would fail.
var secretEnvForHelp = map[string]string{
	"DATABASE_URL":               "postgres://u:db-password-in-env@127.0.0.1:1/none",
	"PIPEWEAVE_SECRET_KEY":       "secret-key-in-env-0123456789abcdef0123456789",
	"PIPEWEAVE_SERVICE_KEY":      strings.Repeat("ab", 32),
	"PIPEWEAVE_API_TOKEN":        "api-token-in-env",
	"PIPEWEAVE_API_KEYS":         "api-keys-in-env",
	"PIPEWEAVE_ORCHESTRATOR_URL": "http://127.0.0.1:1",
	"STORAGE_BACKENDS":           `[{"id":"local","provider":"local","credentials":{"basePath":"/nonexistent"}}]`,
}

// Every command and subcommand answers --help, -h and `help CMD` alike: exit status 0, on
// stdout, the usage line, every flag of the FlagSet the command parses, the environment
// variables and an example; nothing runs, nothing is read from the environment.
func TestHelpEveryCommand(t *testing.T) {
	t.Parallel()
	for i := range commands {
		c := &commands[i]
		t.Run(c.path, func(t *testing.T) {
			t.Parallel()
			words := strings.Fields(c.path)
			forms := [][]string{
				append(slices.Clone(words), "--help"),
				append(slices.Clone(words), "-h"),
				append([]string{"help"}, words...),
			}
			if c.path == "help" {
				forms = forms[2:] // `help --help` is the general usage, like `help`
			}
			var first string
			for _, args := range forms {
				out, stderr, err := runCmd(t, secretEnvForHelp, args...)
				require.NoError(t, err, "%v\nstderr:\n%s", args, stderr)
				require.Equal(t, 0, exitCode(err))
				require.Empty(t, stderr, "%v", args)
				if first == "" {
					first = out
				}
				require.Equal(t, first, out, "%v prints the same help as %v", args, forms[0])
			}
			out := first
			require.True(t, strings.HasPrefix(out, "pipeweave "+c.path+": "+c.summary+"\n"), out)
			require.Contains(t, out, "\nUsage:\n  "+c.usage+"\n")
			require.Contains(t, out, "\nEnvironment:\n")
			require.Regexp(t, `\nExample:\n  (?s:.*)pipeweave `+regexp.QuoteMeta(words[0]), out)
			require.Contains(t, out, "\nExample:\n  "+strings.Split(c.example, "\n")[0]+"\n")
			require.NotEmpty(t, c.summary)
			require.NotEmpty(t, c.example)
			for _, v := range c.env {
				require.Contains(t, out, "\n  "+v.name+" ")
			}
			for _, s := range secretEnvForHelp {
				require.NotContains(t, out, s, "a help never shows the environment's values")
			}
			for _, sub := range subcommands(c.path) {
				require.Regexp(t, `\n  `+regexp.QuoteMeta(strings.TrimPrefix(sub.path, c.path+" "))+`\s+`+regexp.QuoteMeta(sub.summary)+"\n", out)
			}

			// The flags listed are those of the FlagSet the command really parses.
			fs, err := printHelp(context.Background(), c, io.Discard)
			require.NoError(t, err)
			if !c.flags {
				require.Nil(t, fs)
				require.NotContains(t, out, "\nFlags:\n")
				return
			}
			require.NotNil(t, fs)
			require.Equal(t, c.path, fs.Name())
			require.Contains(t, out, "\nFlags:\n")
			n := 0
			fs.VisitAll(func(f *flag.Flag) {
				n++
				require.Regexp(t, `\n  -`+regexp.QuoteMeta(f.Name)+`[ \n]`, out)
				_, text := flag.UnquoteUsage(f)
				require.Contains(t, out, text)
			})
			require.Positive(t, n)
		})
	}

	// A few flags by name, so that the test above cannot pass on empty FlagSets.
	for path, flags := range map[string][]string{
		"serve":          {"migrate"},
		"dev":            {"dir", "port", "listen", "demo"},
		"db migrate":     {"url"},
		"pg start":       {"dir", "port", "set"},
		"trigger":        {"i", "wait", "url", "token", "json"},
		"dlq purge":      {"older-than"},
		"bench":          {"tasks", "database-url"},
		"token register": {"service", "body", "service-key", "secret"},
	} {
		fs, err := printHelp(context.Background(), lookup(path), io.Discard)
		require.NoError(t, err, path)
		for _, name := range flags {
			require.NotNil(t, fs.Lookup(name), "%s --%s", path, name)
		}
	}
}

// The help of serve names the required variables (issue 11: it showed only -migrate).
func TestHelpServeNamesTheRequiredVariables(t *testing.T) {
	t.Parallel()
	out, _, err := runCmd(t, nil, "serve", "--help")
	require.NoError(t, err)
	for _, v := range []string{"DATABASE_URL", "STORAGE_BACKENDS", "PIPEWEAVE_SECRET_KEY", "PIPEWEAVE_API_KEYS"} {
		require.Regexp(t, `\n  `+v+`\s+required: `, out)
	}
	require.Contains(t, out, "-migrate")
	require.Contains(t, out, `README.md, section "Configuration"`)
}

// --help anywhere before "--" wins over the other arguments, and nothing runs: db --help does
// not ask for --url, a database that does not exist is not reached, a bad flag value is not
// checked.
func TestHelpWinsOverTheOtherArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"db", "--help"},
		{"db", "migrate", "--url", "postgres://127.0.0.1:1/none", "--help"},
		{"db", "reset", "-h", "--url", "postgres://127.0.0.1:1/none"},
		{"serve", "--migrate", "--help"},
		{"trigger", "docs", "-i", "{bad", "--help"},
		{"pg", "start", "--help", "--dir", "/nonexistent/x"},
		{"bench", "--tasks", "-5", "--help"},
		{"token", "register", "--help"},
		{"dlq", "purge", "-help"},
	} {
		out, stderr, err := runCmd(t, nil, args...)
		require.NoError(t, err, "%v", args)
		require.Empty(t, stderr, "%v", args)
		path := args[0]
		if len(args) > 1 && lookup(args[0]+" "+args[1]) != nil {
			path += " " + args[1]
		}
		require.True(t, strings.HasPrefix(out, "pipeweave "+path+": "), "%v:\n%s", args, out)
	}
	// After "--", -h is an argument: status looks the run "-h" up (and fails to connect).
	_, _, err := runCmd(t, map[string]string{"PIPEWEAVE_ORCHESTRATOR_URL": "http://127.0.0.1:1"}, "status", "--", "-h")
	require.ErrorContains(t, err, "cannot reach the orchestrator")
}

// No command, an unknown command or subcommand: exit status 2, the usage on stderr, nothing
// on stdout. help alone, -h and --help print the general usage on stdout.
func TestHelpUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"frobnicate"}, {"--frobnicate"}, {"help", "frobnicate"}, {"help", "db", "migrate", "now"}} {
		out, stderr, err := runCmd(t, nil, args...)
		require.Equal(t, 2, exitCode(err), "%v: %v", args, err)
		require.Empty(t, out, "%v", args)
		require.Equal(t, usage, stderr, "%v", args)
	}
	_, _, err := runCmd(t, nil, "help", "db", "frobnicate")
	require.EqualError(t, err, `unknown db command "frobnicate"`)
	_, _, err = runCmd(t, nil, "help", "db", "migrate", "now")
	require.ErrorContains(t, err, `help: unexpected argument "now"`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"db"}, "db: give a command first: init, migrate, status, reset"},
		{[]string{"db", "frobnicate"}, `unknown db command "frobnicate"`},
		{[]string{"pg", "--dir", "x"}, "pg: give a command first: start, stop, url"},
		{[]string{"bench", "frobnicate"}, `unknown bench command "frobnicate"`},
		{[]string{"token"}, "token: give a command first: service, register"},
		{[]string{"queue", "frobnicate"}, `unknown queue command "frobnicate"`},
		{[]string{"maintenance"}, "maintenance: give a command first: status, enter, exit"},
	} {
		out, stderr, err := runCmd(t, nil, tc.args...)
		require.Equal(t, 2, exitCode(err), "%v: %v", tc.args, err)
		require.EqualError(t, err, tc.want)
		require.Empty(t, out, "%v", tc.args)
		require.Contains(t, stderr, "\nUsage:\n  pipeweave "+tc.args[0], "%v", tc.args)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "--help"}} {
		out, stderr, err := runCmd(t, nil, args...)
		require.NoError(t, err, "%v", args)
		require.Equal(t, usage, out, "%v", args)
		require.Empty(t, stderr, "%v", args)
	}
	// A bad flag: the flag package's message, the usage line and the flags on stderr, exit 1.
	out, stderr, err := runCmd(t, nil, "db", "status", "--frobnicate")
	require.Equal(t, 1, exitCode(err))
	require.Empty(t, out)
	require.Contains(t, stderr, "flag provided but not defined: -frobnicate\nusage: pipeweave db status [--url URL]\n\nflags:\n  -url")
	require.Contains(t, stderr, "Run 'pipeweave help db status' for the environment variables")
}

// The real process: exit statuses and streams.
func TestHelpExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // a prefix; "" for none
		stderr string // contained; "" for none
	}{
		{[]string{"serve", "--help"}, 0, "pipeweave serve: ", ""},
		{[]string{"db", "--help"}, 0, "pipeweave db: ", ""},
		{[]string{"help", "trigger"}, 0, "pipeweave trigger: ", ""},
		{[]string{"dlq", "retry-all", "-h"}, 0, "pipeweave dlq retry-all: ", ""},
		{[]string{"help"}, 0, "usage: pipeweave <command>", ""},
		{[]string{}, 2, "", "usage: pipeweave <command>"},
		{[]string{"frobnicate"}, 2, "", `pipeweave: unknown command "frobnicate"`},
		{[]string{"db"}, 2, "", "pipeweave: db: give a command first"},
		{[]string{"help", "frobnicate"}, 2, "", `pipeweave: unknown command "frobnicate"`},
		{[]string{"db", "status", "--frobnicate"}, 1, "", "flag provided but not defined"},
	} {
		out, stderr, code := runBinary(t, secretEnvForHelp, tc.args...)
		require.Equal(t, tc.code, code, "%v\nstdout:\n%s\nstderr:\n%s", tc.args, out, stderr)
		if tc.stdout == "" {
			require.Empty(t, out, "%v", tc.args)
		} else {
			require.True(t, strings.HasPrefix(out, tc.stdout), "%v:\n%s", tc.args, out)
		}
		if tc.stderr == "" {
			require.Empty(t, stderr, "%v", tc.args)
		} else {
			require.Contains(t, stderr, tc.stderr, "%v", tc.args)
		}
	}
}

// The command table of help.go and the dispatcher agree: every command dispatch switches on
// has an entry and every entry is dispatched; the same for the subcommands of each group
// (found in the group's function), and the general usage names every command.
func TestHelpCoversTheDispatcher(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	funcs := map[string]*ast.FuncDecl{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	// subject says whether e is what a dispatcher switches on: args[0] or sub.
	subject := func(e ast.Expr) bool {
		if id, ok := e.(*ast.Ident); ok {
			return id.Name == "sub"
		}
		ix, ok := e.(*ast.IndexExpr)
		if !ok {
			return false
		}
		id, ok1 := ix.X.(*ast.Ident)
		lit, ok2 := ix.Index.(*ast.BasicLit)
		return ok1 && ok2 && id.Name == "args" && lit.Value == "0"
	}
	// literals are the strings a function compares args[0] or sub with: case values of a switch
	// on them and operands of == or !=.
	literals := func(fn string) []string {
		fd := funcs[fn]
		require.NotNil(t, fd, fn)
		var out []string
		add := func(e ast.Expr) {
			if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, err := strconv.Unquote(lit.Value)
				require.NoError(t, err)
				if s != "" && !isHelpFlag(s) && s != "help" {
					out = append(out, s)
				}
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SwitchStmt:
				if n.Tag != nil && subject(n.Tag) {
					for _, st := range n.Body.List {
						for _, e := range st.(*ast.CaseClause).List {
							add(e)
						}
					}
				}
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (subject(n.X) || subject(n.Y)) {
					add(n.X)
					add(n.Y)
				}
			}
			return true
		})
		slices.Sort(out)
		return slices.Compact(out)
	}

	var top []string
	for _, c := range commands {
		if !strings.Contains(c.path, " ") && c.path != "help" {
			top = append(top, c.path)
		}
	}
	slices.Sort(top)
	require.Equal(t, top, literals("dispatch"), "the commands of dispatch (main.go) and of the table (help.go)")
	for _, name := range literals("opsCommand") {
		require.Contains(t, top, name, "opsCommand dispatches %s", name)
	}

	groups := map[string]string{
		"db": "dbCommand", "pg": "pgCommand", "bench": "benchCommand", "token": "tokenCommand", "webhooks": "webhooksCommand",
		"queue": "queueCommand", "dlq": "dlqCommand", "maintenance": "maintenanceCommand", "schedules": "schedulesCommand",
		"pause": "pauseCommand", "resume": "pauseCommand", "rate-limits": "rateLimitsCommand",
	}
	for _, c := range commands {
		if len(subcommands(c.path)) > 0 {
			require.Contains(t, groups, c.path, "a new group: name the function that dispatches its subcommands here")
		}
	}
	for group, fn := range groups {
		want := strings.Split(subNames(group), ", ")
		slices.Sort(want)
		require.Equal(t, want, literals(fn), "the subcommands of %s: %s and the table (help.go)", group, fn)
	}

	for _, name := range top {
		require.Regexp(t, `(?m)^  `+regexp.QuoteMeta(name)+` `, usage, "the general usage names %s", name)
	}
	require.Contains(t, usage, "pipeweave help COMMAND")
}

// token register and token service without a secret name the variables and the file to use
// (issue 11: "secret has 0 bytes").
func TestTokenWithoutSecret(t *testing.T) {
	t.Parallel()
	body := filepath.Join(t.TempDir(), "register.json")
	require.NoError(t, os.WriteFile(body, []byte(`{}`), 0o600))
	_, _, err := runCmd(t, nil, "token", "register", "--service", "svc", "--body", body)
	require.Error(t, err)
	for _, s := range []string{"PIPEWEAVE_SERVICE_KEY", "PIPEWEAVE_SECRET_KEY", "--service-key", "--secret", ".pipeweave/secret"} {
		require.Contains(t, err.Error(), s)
	}
	require.NotContains(t, err.Error(), "0 bytes")

	_, _, err = runCmd(t, map[string]string{"PIPEWEAVE_DEV_DIR": "/srv/pw"}, "token", "service", "--service", "svc")
	require.Error(t, err)
	for _, s := range []string{"PIPEWEAVE_SECRET_KEY", "--secret", "/srv/pw/secret"} {
		require.Contains(t, err.Error(), s)
	}
	require.NotContains(t, err.Error(), "0 bytes")
}

// The demo's "follow it with" line names a command that runs: this binary by a path that
// exists (relative to the working directory when inside it), or go run from a checkout.
func TestSelfCommand(t *testing.T) {
	t.Parallel()
	cmd := selfCommand()
	if cmd == "go run ./cmd/pipeweave" {
		return
	}
	require.FileExists(t, cmd)
}

// A group called directly without a known subcommand answers a usage error (route refuses
// such command lines first, with exit status 2).
func TestGroupsRefuseAMissingOrUnknownSubcommand(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }
	var out, errOut bytes.Buffer
	ctx := context.Background()
	for name, call := range map[string]func([]string) error{
		"db":          func(a []string) error { return dbCommand(ctx, a, &out, &errOut, getenv) },
		"pg":          func(a []string) error { return pgCommand(ctx, a, &out, &errOut) },
		"token":       func(a []string) error { return tokenCommand(a, nil, &out, &errOut, getenv) },
		"queue":       func(a []string) error { return queueCommand(ctx, a, &out, &errOut, getenv) },
		"dlq":         func(a []string) error { return dlqCommand(ctx, a, &out, &errOut, getenv) },
		"maintenance": func(a []string) error { return maintenanceCommand(ctx, a, &out, &errOut, getenv) },
		"pause":       func(a []string) error { return pauseCommand(ctx, a, false, &out, &errOut, getenv) },
		"resume":      func(a []string) error { return pauseCommand(ctx, a, true, &out, &errOut, getenv) },
		"rate-limits": func(a []string) error { return rateLimitsCommand(ctx, a, &out, &errOut, getenv) },
	} {
		var ue *usageError
		err := call(nil)
		require.ErrorAs(t, err, &ue, name)
		require.Contains(t, err.Error(), "give a command first", name)
		require.Equal(t, 2, exitCode(err), name)
		if name == "db" {
			continue // db reads its subcommand after the flags: an unknown one fails there
		}
		err = call([]string{"frobnicate"})
		require.ErrorAs(t, err, &ue, name)
		require.Contains(t, err.Error(), `unknown `+name+` command "frobnicate"`)
	}
}
