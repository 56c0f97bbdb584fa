package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// devCommand runs the orchestrator with zero configuration: every required variable that is
// not set gets a local default, and without DATABASE_URL a private PostgreSQL cluster runs
// under the state directory for as long as the command does. Without PIPEWEAVE_API_KEYS it
// generates an API key, kept in the state directory like the secret, and prints it with a
// dashboard URL that logs in with it. It listens on 127.0.0.1 unless --listen names another
// address, and answers only to local host names unless PIPEWEAVE_ALLOWED_HOSTS says otherwise.
// Before it touches the cluster or prints anything it takes the lock of the state directory
// (another dev there is named with its URL) and binds the port. It stops the cluster only if
// it started it. The environment is read through getenv.
func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	dir := fs.String("dir", devDir(getenv), "state directory: database cluster, storage, secret, API key (default $PIPEWEAVE_DEV_DIR or .pipeweave)")
	port := fs.Int("port", 0, "HTTP port (default $PORT or 3000)")
	listen := fs.String("listen", "127.0.0.1", "address to listen on, without the port (0.0.0.0 for every interface; then also set PIPEWEAVE_ALLOWED_HOSTS)")
	demo := fs.Bool("demo", false, "also build and run the example PDF worker (examples/pdf/cmd/pdf-worker, from this checkout) and trigger its pipeline once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setServerGC(getenv)
	log, err := newLogger(stderr, true, getenv)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(*listen), "["), "]")
	if host == "" {
		return fmt.Errorf("dev: --listen must name an address, such as 127.0.0.1 or 0.0.0.0")
	}
	httpPort, err := devPort(*port, getenv)
	if err != nil {
		return err
	}
	// Start-up checks, before the cluster is touched, anything is created or printed: no
	// other dev runs from this directory (checked first, so that a second dev says how to
	// reach the first rather than that the port is taken), and the port is free.
	var lock *devLock
	if _, err := os.Stat(abs); err == nil {
		if lock, err = lockDevDir(abs); err != nil {
			return err
		}
		defer lock.release()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(httpPort))
	ln, err := listenPort(addr, "pass --port N for another one")
	if err != nil {
		return err
	}
	defer ln.Close()
	if lock == nil {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", abs, err)
		}
		if lock, err = lockDevDir(abs); err != nil {
			return err
		}
		defer lock.release()
	}
	base := "http://" + net.JoinHostPort(browseHost(host), strconv.Itoa(httpPort))
	defaults := map[string]string{}
	dbURL, err := core.DatabaseURLFromEnv(getenv) // DATABASE_URL, or upstream's DB_* variables
	if err != nil {
		return err
	}
	var afterServe []string // lines printed once the server has stopped
	defer func() {
		for _, line := range afterServe {
			fmt.Fprintln(stdout, line)
		}
	}()
	if dbURL == "" {
		pgDir := filepath.Join(abs, "pg")
		wasRunning := clusterRunning(ctx, pgDir)
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: pgDir})
		if err != nil {
			if !wasRunning {
				stopUnreadyCluster(pgDir, stderr)
			}
			return fmt.Errorf("start the private PostgreSQL cluster: %w", err)
		}
		if cluster.Reused() {
			// Someone else started it (`pipeweave pg start`, an earlier dev that crashed):
			// it is theirs to stop.
			afterServe = append(afterServe, fmt.Sprintf("pipeweave dev: left the running PostgreSQL cluster running (%s; `pipeweave pg stop --dir %s` stops it)",
				pgDir, filepath.Join(*dir, "pg")))
		} else {
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := cluster.Stop(stopCtx); err != nil {
					fmt.Fprintf(stderr, "pipeweave: stop the private PostgreSQL cluster: %v\n", err)
					return
				}
				fmt.Fprintf(stdout, "pipeweave dev: stopped the PostgreSQL cluster it started (%s)\n", pgDir)
			}()
		}
		if err := cluster.EnsureDatabase(ctx, "pipeweave"); err != nil {
			return err
		}
		dbURL = cluster.URL("pipeweave")
		defaults["DATABASE_URL"] = dbURL
	} else if err := waitForDatabase(ctx, dbURL, 30*time.Second); err != nil {
		return err
	}
	if err := migrateURL(ctx, dbURL); err != nil {
		return err
	}
	if err := checkSchema(ctx, dbURL); err != nil {
		return err
	}
	secret, err := devSecret(filepath.Join(abs, "secret"))
	if err != nil {
		return err
	}
	defaults["PIPEWEAVE_SECRET_KEY"] = secret
	// The operator API needs a key, even on this machine: any web page the developer visits
	// can send requests to localhost.
	apiKey := ""
	if getenv("PIPEWEAVE_API_KEYS") == "" {
		if apiKey, err = devSecret(filepath.Join(abs, devKeyFile)); err != nil {
			return err
		}
		defaults["PIPEWEAVE_API_KEYS"] = apiKey
	}
	backends, err := json.Marshal([]map[string]any{{
		"id": "local", "provider": "local", "isDefault": true,
		"credentials": map[string]string{"basePath": filepath.Join(abs, "storage")},
	}})
	if err != nil {
		return err
	}
	defaults["STORAGE_BACKENDS"] = string(backends)
	// Workers of a dev setup run on this machine: dispatches may go to loopback (the variable,
	// when set, replaces this list).
	defaults["WORKER_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
	defaults["PORT"] = strconv.Itoa(httpPort)
	withDefaults := func(k string) string {
		if k == "PORT" {
			return defaults[k]
		}
		if v := getenv(k); v != "" {
			return v
		}
		return defaults[k]
	}
	cfg, err := core.ConfigFromEnv(withDefaults)
	if err != nil {
		return err
	}
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = devAllowedHosts(host)
	}
	o, err := core.New(ctx, cfg, core.Options{Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	keyFile := ""
	if apiKey != "" {
		keyFile = filepath.Join(abs, devKeyFile)
	}
	if err := lock.write(devLockInfo{PID: os.Getpid(), URL: base, KeyFile: keyFile}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "PipeWeave orchestrator (dev, %s mode) on %s (pid %d)\n", cfg.Mode, base, os.Getpid())
	if apiKey != "" {
		fmt.Fprintf(stdout, "  dashboard: %s/ui/#key=%s   (this URL logs in; keep it to yourself)\n", base, apiKey)
		fmt.Fprintf(stdout, "  API key:   %s (in %s; the CLI reads it there; curl -H \"Authorization: Bearer $(cat %s)\")\n",
			apiKey, filepath.Join(abs, devKeyFile), filepath.Join(*dir, devKeyFile))
	} else {
		fmt.Fprintf(stdout, "  dashboard: %s/ui/   (API key: one of PIPEWEAVE_API_KEYS)\n", base)
	}
	fmt.Fprintf(stdout, "  metrics:   %s/metrics\n", base)
	fmt.Fprintf(stdout, "  database: %s\n", redactURL(dbURL))
	fmt.Fprintf(stdout, "  storage:  %s\n", filepath.Join(abs, "storage"))
	fmt.Fprintf(stdout, "  secret:   %s (PIPEWEAVE_SECRET_KEY for your workers)\n", filepath.Join(abs, "secret"))
	defer fmt.Fprintf(stdout, "pipeweave dev: stopped serving on %s\n", base)
	if !*demo {
		fmt.Fprintf(stdout, "Press Ctrl+C (or kill -TERM %d) to stop.\n", os.Getpid())
		return o.Serve(ctx, ln)
	}
	served := make(chan error, 1)
	go func() { served <- o.Serve(ctx, ln) }()
	demoKey := apiKey
	if demoKey == "" {
		demoKey = cfg.APIKeys[0]
	}
	workerExited, err := runDemo(ctx, base, cfg.SecretKey, demoKey, filepath.Join(abs, "demo-worker"), stdout)
	if err != nil {
		fmt.Fprintf(stdout, "demo: %v\n", err)
	}
	fmt.Fprintf(stdout, "Press Ctrl+C (or kill -TERM %d) to stop.\n", os.Getpid())
	err = <-served
	if workerExited != nil {
		// The worker got SIGTERM when ctx ended; dev ends after it, so nothing it started outlives it.
		<-workerExited
		fmt.Fprintln(stdout, "pipeweave dev: stopped the demo worker")
	}
	return err
}

// demoService is the service id of the example PDF worker (examples/pdf), whose pipeline the
// demo triggers.
const demoService = "pdf-processor"

// demoWorkerPackage is the example worker's command, which the demo builds and runs as its own
// process: the CLI does not link it.
const demoWorkerPackage = "./examples/pdf/cmd/pdf-worker"

// runDemo builds the example PDF worker from the checkout the command runs in and starts it as
// a process of its own, waits for its registration, triggers the pdf-processor pipeline and
// reports each task's state until the run ends. The worker keeps serving until ctx ends, when
// it gets SIGTERM (a kill 10 s later); exited, non-nil once the worker started, is closed when
// it has ended.
func runDemo(ctx context.Context, orchURL, secret, apiKey, dir string, out io.Writer) (exited <-chan struct{}, err error) {
	// The worker gets its service's key, as a deployed worker would, not the master secret.
	svcKey, err := token.ServiceKey(secret, demoService)
	if err != nil {
		return nil, err
	}
	bin, err := buildDemoWorker(ctx, dir)
	if err != nil {
		return nil, err
	}
	worker := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0")
	worker.Env = append(os.Environ(), "PIPEWEAVE_ORCHESTRATOR_URL="+orchURL, "PIPEWEAVE_SERVICE_KEY="+hex.EncodeToString(svcKey),
		"PIPEWEAVE_WORKER_URL=", "TMPDIR="+dir)
	var werr bytes.Buffer
	worker.Stderr = &werr
	// When dev stops, the worker drains like a deployed one: SIGTERM, then a kill after 10 s.
	worker.Cancel = func() error { return worker.Process.Signal(syscall.SIGTERM) }
	worker.WaitDelay = 10 * time.Second
	if err := worker.Start(); err != nil {
		return nil, fmt.Errorf("start the example worker: %w", err)
	}
	done := make(chan struct{})
	go func() {
		if err := worker.Wait(); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "demo worker: %v: %s\n", err, bytes.TrimSpace(werr.Bytes()))
		}
		close(done)
	}()
	fmt.Fprintf(out, "demo: example PDF worker running as pid %d (%s)\n", worker.Process.Pid, demoWorkerPackage)
	client, err := apiclient.New(orchURL, apiKey)
	if err != nil {
		return done, err
	}
	var trig protocol.TriggerResult
	input := map[string]any{"input": map[string]any{"pdfUrl": "https://example.com/annual-report.pdf", "extractTables": true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The pipeline exists once the worker has registered.
		_, err := client.Post(ctx, "/api/pipelines/"+demoService+"/trigger", input, &trig)
		if err == nil {
			break
		}
		select {
		case <-done:
			return done, fmt.Errorf("the example worker stopped before its pipeline could be triggered: %w", err)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return done, fmt.Errorf("trigger the pipeline: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(out, "demo: triggered %s run %s; follow it with: %s status %s (or %s/ui/#/runs/%s)\n",
		demoService, trig.PipelineRunID, selfCommand(), trig.PipelineRunID, orchURL, trig.PipelineRunID)
	seen := map[string]string{}
	for ctx.Err() == nil {
		var run protocol.PipelineRun
		// Without the map node's items (one per page): maps counts them by state.
		if _, err := client.Get(ctx, "/api/runs/"+trig.PipelineRunID, nodesOnly, &run); err != nil {
			return done, err
		}
		summary := ""
		for _, t := range run.Tasks {
			if isItem(run, t) {
				continue
			}
			if line := string(t.Status) + mapSuffix(run, t.TaskRun); seen[t.TaskID] != line {
				seen[t.TaskID] = line
				fmt.Fprintf(out, "demo:   %-15s %s\n", t.TaskID, line)
			}
			if t.TaskID == "summarize" && t.OutputPath != nil {
				summary = *t.OutputPath
			}
		}
		if run.Status != protocol.PipelineRunning {
			fmt.Fprintf(out, "demo: run %s %s\n", trig.PipelineRunID, run.Status)
			if summary != "" {
				var obj struct {
					Content struct {
						Summary string `json:"summary"`
					} `json:"content"`
				}
				if _, err := client.Get(ctx, "/api/storage/"+summary, nil, &obj); err == nil {
					fmt.Fprintf(out, "demo: summary: %s\n", obj.Content.Summary)
				}
			}
			return done, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return done, ctx.Err()
}

// buildDemoWorker builds the example worker into dir with the go command, from the checkout of
// this module that the working directory is in, and returns the binary's path.
func buildDemoWorker(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	bin := filepath.Join(dir, "pdf-worker")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, demoWorkerPackage)
	build.Dir = root
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the example worker (go build %s in %s): %w: %s", demoWorkerPackage, root, err, bytes.TrimSpace(msg))
	}
	return bin, nil
}

// moduleRoot finds the checkout of github.com/pipeweave/pipeweave that holds the working
// directory: the nearest directory upwards whose go.mod declares that module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(mod) == "github.com/pipeweave/pipeweave" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("--demo builds the example worker from the source: run it inside a checkout of github.com/pipeweave/pipeweave (or start examples/pdf/cmd/pdf-worker yourself)")
		}
		dir = parent
	}
}

// modulePath is the module path a go.mod declares, or "".
func modulePath(gomod []byte) string {
	for line := range strings.Lines(string(gomod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// devPort is the HTTP port of dev: --port, else $PORT, else 3000.
func devPort(flagPort int, getenv func(string) string) (int, error) {
	if flagPort != 0 {
		if flagPort < 0 || flagPort > 65535 {
			return 0, fmt.Errorf("dev: --port must be between 1 and 65535, got %d", flagPort)
		}
		return flagPort, nil
	}
	v := strings.TrimSpace(getenv("PORT"))
	if v == "" {
		return 3000, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("environment variable PORT: must be a port number (1-65535), got %q", v)
	}
	return p, nil
}

// clusterRunning reports whether a server runs from the cluster in pgDir (false when there
// is no cluster or it cannot tell).
func clusterRunning(ctx context.Context, pgDir string) bool {
	c, err := pgcluster.Lookup(pgDir)
	if err != nil {
		return false
	}
	running, err := c.Running(ctx)
	return err == nil && running
}

// stopUnreadyCluster stops the cluster in pgDir after a start that failed or was interrupted
// (pg_ctl may have launched the server before it was killed). The caller checked that it was
// not running before: it is this start's to stop.
func stopUnreadyCluster(pgDir string, stderr io.Writer) {
	c, err := pgcluster.Lookup(pgDir)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		fmt.Fprintf(stderr, "pipeweave: stop the private PostgreSQL cluster: %v\n", err)
	}
}

// devKeyFile is the file under the dev state directory that keeps the generated API key.
const devKeyFile = "api-key"

// devDir is the dev state directory: $PIPEWEAVE_DEV_DIR, else .pipeweave (of the working
// directory).
func devDir(getenv func(string) string) string {
	if d := strings.TrimSpace(getenv("PIPEWEAVE_DEV_DIR")); d != "" {
		return d
	}
	return ".pipeweave"
}

// devAllowedHosts are the Host names dev answers to when listening on host: the local names,
// and host itself when it is a specific address or name (not 0.0.0.0 or ::, where the names
// the machine is reached by are not known: PIPEWEAVE_ALLOWED_HOSTS lists them).
func devAllowedHosts(host string) []string {
	hosts := append([]string(nil), core.LocalHosts...)
	h := strings.ToLower(host)
	if ip := net.ParseIP(h); (ip == nil || !ip.IsUnspecified()) && !slices.Contains(hosts, h) {
		hosts = append(hosts, h)
	}
	return hosts
}

// browseHost is the host to print in URLs for a server listening on host: 127.0.0.1 for every
// interface.
func browseHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}

// devSecret reads the secret kept at path or makes one (32 random bytes, hex) and keeps it.
func devSecret(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(raw)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

func migrateURL(ctx context.Context, url string) error {
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return fmt.Errorf("migrate the database: %w", err)
	}
	return nil
}

// redactURL hides a password in a database URL.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	creds := u[scheme+3 : at]
	if user, _, ok := strings.Cut(creds, ":"); ok {
		return u[:scheme+3] + user + ":xxxxx" + u[at:]
	}
	return u
}

// selfCommand is how the user can run this binary again from the current directory: its path
// relative to it (scripts/dev runs .pipeweave/bin/pipeweave, which is not on the PATH), its
// absolute path, or "go run ./cmd/pipeweave" when it runs from go run's temporary build.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/pipeweave"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && filepath.IsLocal(rel) {
			return "./" + filepath.ToSlash(rel)
		}
	}
	return exe
}
