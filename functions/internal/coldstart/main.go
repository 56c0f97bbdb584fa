// Command coldstart measures the serverless functions as they are deployed: it builds the api
// and process functions the way the Lambda bootstraps are built (static, -tags lambda.norpc,
// -trimpath, -ldflags='-s -w'), starts a private PostgreSQL cluster, and prints
//
//   - the cold start of the api function as a Cloud Run server: from exec of the binary to the
//     first 200 on GET /health (which needs a database connection);
//   - the cold start of the api function under the AWS Lambda runtime interface emulator: from
//     starting aws-lambda-rie to the first answered invocation (a REST API GET /health event);
//   - the same for the heartbeat-sweep function, invoked with an EventBridge scheduled event
//     (the function links no storage driver);
//   - the latency of one process invocation (POST / on the process function's server) over
//     ready tasks dispatched to a no-op worker (it answers 202 at once and calls back after the
//     invocation), with the durationMs of its summary.
//
// Run it from the repository root:
//
//	go run ./functions/internal/coldstart -n 20 -tasks 1000 -rounds 5
//
// -bootstraps DIR measures bootstraps built elsewhere (DIR/api, DIR/process,
// DIR/heartbeat-sweep), for example from an older commit, instead of building this tree's.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/fakeworker"
	"github.com/pipeweave/pipeweave/internal/freeport"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// The AWS Lambda runtime interface emulator, built from the module proxy outside this module.
const (
	rieModule  = "github.com/aws/aws-lambda-runtime-interface-emulator"
	rieVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

const secret = "pipeweave-coldstart-secret-0123456789abcdef"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		os.Exit(1)
	}
}

type options struct {
	n, tasks, rounds       int
	dbURL, rie, bootstraps string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coldstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.n, "n", 20, "cold starts measured per platform (after one untimed start)")
	fs.IntVar(&o.tasks, "tasks", 1000, "ready tasks for the process invocation (its PROCESS_BATCH_SIZE)")
	fs.IntVar(&o.rounds, "rounds", 5, "process invocations measured, each over -tasks ready tasks")
	fs.StringVar(&o.dbURL, "database-url", "", "use this migrated database instead of a private cluster")
	fs.StringVar(&o.bootstraps, "bootstraps", "", "measure the bootstraps api, process and heartbeat-sweep of this directory instead of building them")
	fs.StringVar(&o.rie, "rie", "", "aws-lambda-rie binary (default: go install "+rieModule+"/cmd/aws-lambda-rie@"+rieVersion+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.n < 1 || o.tasks < 1 || o.rounds < 1 {
		return errors.New("-n, -tasks and -rounds must be at least 1")
	}
	work, err := os.MkdirTemp("", "pipeweave-coldstart-")
	if err != nil {
		return fmt.Errorf("make a work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(work) }()
	// Reachable by the unprivileged account that runs postgres when we are root.
	if err := os.Chmod(work, 0o755); err != nil {
		return fmt.Errorf("open the work directory: %w", err)
	}

	fmt.Fprintln(stderr, "coldstart: building the functions and the emulator…")
	bins, err := bootstraps(ctx, work, o.bootstraps)
	if err != nil {
		return err
	}
	if o.rie == "" {
		if o.rie, err = buildRIE(ctx, work); err != nil {
			return err
		}
	}
	dbURL := o.dbURL
	if dbURL == "" {
		fmt.Fprintln(stderr, "coldstart: starting a private PostgreSQL cluster…")
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(work, "pg"), Attached: true,
			Settings: map[string]string{"max_connections": "200"}})
		if err != nil {
			return fmt.Errorf("start the private PostgreSQL cluster: %w", err)
		}
		defer func() { _ = cluster.Stop(context.Background()) }()
		if err := cluster.EnsureDatabase(ctx, "pipeweave_coldstart"); err != nil {
			return fmt.Errorf("create the database: %w", err)
		}
		dbURL = cluster.URL("pipeweave_coldstart")
	}
	pool, err := database.Open(ctx, dbURL, database.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	pgVersion, err := database.ServerVersion(ctx, pool)
	if err != nil {
		return err
	}
	backends, err := json.Marshal([]map[string]any{{"id": "local", "provider": "local", "credentials": map[string]string{"basePath": filepath.Join(work, "storage")}}})
	if err != nil {
		return err
	}
	env := map[string]string{
		"DATABASE_URL":         dbURL,
		"STORAGE_BACKENDS":     string(backends),
		"PIPEWEAVE_SECRET_KEY": secret,
		"LOG_LEVEL":            "warn",

		"PIPEWEAVE_INSECURE_NO_AUTH": "1",
		"WORKER_ALLOWED_NETWORKS":    "127.0.0.0/8,::1/128", // its workers listen on loopback
	}
	built := "functions built with CGO_ENABLED=0 -tags lambda.norpc -trimpath -ldflags='-s -w'"
	if o.bootstraps != "" {
		built = "bootstraps of " + o.bootstraps
	}
	fmt.Fprintf(stdout, "pipeweave coldstart: %s (api %.1f MB, heartbeat-sweep %.1f MB), PostgreSQL %s, serverless defaults (DB_MAX_CONNS 4)\n",
		built, fileMB(bins["api"]), fileMB(bins["heartbeat-sweep"]), pgVersion)

	cloudRun, err := measure(o.n, func() (time.Duration, error) { return coldStartHTTP(ctx, bins["api"], env) })
	if err != nil {
		return fmt.Errorf("api as a Cloud Run server: %w", err)
	}
	fmt.Fprintf(stdout, "api cold start, Cloud Run style (exec → first 200 on GET /health), n=%d: %s\n", o.n, stats(cloudRun))

	underRIE, err := measure(o.n, func() (time.Duration, error) {
		return coldStartRIE(ctx, o.rie, bins["api"], env, healthEvent, answeredHealth)
	})
	if err != nil {
		return fmt.Errorf("api under the Lambda emulator: %w", err)
	}
	fmt.Fprintf(stdout, "api cold start, Lambda emulator (start aws-lambda-rie → first answered API Gateway GET /health), n=%d: %s\n", o.n, stats(underRIE))

	sweep, err := measure(o.n, func() (time.Duration, error) {
		return coldStartRIE(ctx, o.rie, bins["heartbeat-sweep"], env, scheduledEvent, answeredSweep)
	})
	if err != nil {
		return fmt.Errorf("heartbeat-sweep under the Lambda emulator: %w", err)
	}
	fmt.Fprintf(stdout, "heartbeat-sweep cold start, Lambda emulator (start aws-lambda-rie → first answered EventBridge scheduled event), n=%d: %s\n", o.n, stats(sweep))

	lat, dur, summary, err := processLatency(ctx, bins, env, pool, o)
	if err != nil {
		return fmt.Errorf("process over %d ready tasks: %w", o.tasks, err)
	}
	fmt.Fprintf(stdout, "process, one invocation over %d ready tasks (PROCESS_BATCH_SIZE=%d, MAX_CONCURRENCY=0, no-op worker on loopback answering 202), rounds=%d:\n", o.tasks, o.tasks, o.rounds)
	fmt.Fprintf(stdout, "    latency of POST /: %s\n    summary durationMs: %s\n    last summary: %s\n", stats(lat), stats(dur), summary)
	reproduce := fmt.Sprintf("go run ./functions/internal/coldstart -n %d -tasks %d -rounds %d", o.n, o.tasks, o.rounds)
	if o.bootstraps != "" {
		reproduce += " -bootstraps " + o.bootstraps
	}
	fmt.Fprintf(stdout, "reproduce: %s\n", reproduce)
	return nil
}

// measured are the functions whose bootstraps are measured.
var measured = []string{"api", "process", "heartbeat-sweep"}

// bootstraps builds the measured functions as they are packaged, or finds them in from.
func bootstraps(ctx context.Context, work, from string) (map[string]string, error) {
	dir := from
	if dir == "" {
		dir = filepath.Join(work, "bin")
		args := []string{"build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
		for _, f := range measured {
			args = append(args, "github.com/pipeweave/pipeweave/functions/"+f)
		}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build the functions: %w\n%s", err, out)
		}
	}
	bins := make(map[string]string, len(measured))
	for _, f := range measured {
		abs, err := filepath.Abs(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("bootstrap of %s: %w", f, err)
		}
		bins[f] = abs
	}
	return bins, nil
}

// fileMB is the size of a file in MB, 0 when it cannot be read.
func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / 1e6
}

// buildRIE installs aws-lambda-rie from a directory outside this module.
func buildRIE(ctx context.Context, work string) (string, error) {
	dir := filepath.Join(work, "rie")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", rieModule+"/cmd/aws-lambda-rie@"+rieVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build aws-lambda-rie: %w\n%s", err, out)
	}
	return filepath.Join(dir, "aws-lambda-rie"), nil
}

// measure runs f once untimed (page cache, first connections of the server), then n times.
func measure(n int, f func() (time.Duration, error)) ([]time.Duration, error) {
	if _, err := f(); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for range n {
		d, err := f()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// child is a started process with its output.
type child struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   *sync.Mutex
	done chan error
}

func start(bin string, args []string, env map[string]string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, out: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	w := lockedWriter{c.mu, c.out}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// stop ends the child with SIGTERM, or SIGKILL after 15 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// pollClient opens a new connection for every attempt, as a first request does.
var pollClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// coldStartHTTP starts the api binary on a free port and times the first 200 on /health.
func coldStartHTTP(ctx context.Context, bin string, env map[string]string) (time.Duration, error) {
	port, err := freeport.Get()
	if err != nil {
		return 0, err
	}
	env = with(env, "PORT", strconv.Itoa(port))
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	t0 := time.Now()
	c, err := start(bin, nil, env)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	for {
		if resp, err := pollClient.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		if err := wait(ctx, t0, c); err != nil {
			return 0, err
		}
	}
}

// wait pauses before the next poll; it fails after 30 s or when the child has exited.
func wait(ctx context.Context, t0 time.Time, c *child) error {
	if time.Since(t0) > 30*time.Second {
		return fmt.Errorf("no answer after 30 s; output:\n%s", c.output())
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-c.done:
		c.done <- err
		return fmt.Errorf("exited (%v); output:\n%s", err, c.output())
	case <-time.After(500 * time.Microsecond):
		return nil
	}
}

// healthEvent is a REST API GET /health event.
const healthEvent = `{"resource":"/{proxy+}","path":"/health","httpMethod":"GET","headers":{"Accept":"application/json","Host":"abcdef1234.execute-api.us-east-1.amazonaws.com"},"multiValueHeaders":{"Accept":["application/json"],"Host":["abcdef1234.execute-api.us-east-1.amazonaws.com"]},"pathParameters":{"proxy":"health"},"requestContext":{"resourcePath":"/{proxy+}","httpMethod":"GET","path":"/prod/health","accountId":"123456789012","stage":"prod","requestId":"5d2c1a7e-0f3b-4c6d-9e8f-1a2b3c4d5e6f","identity":{"sourceIp":"203.0.113.10"},"domainName":"abcdef1234.execute-api.us-east-1.amazonaws.com","apiId":"abcdef1234"},"body":null,"isBase64Encoded":false}`

// scheduledEvent is an EventBridge scheduled event, as a schedule invokes heartbeat-sweep.
const scheduledEvent = `{"version":"0","id":"89d1a02d-5ec7-412e-82f5-13505f849b41","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-02-03T10:17:00Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/pipeweave-HeartbeatSweepEveryMinute"],"detail":{}}`

// answeredHealth says whether an invocation's answer is the API Gateway response of a 200.
func answeredHealth(raw []byte) bool {
	var answer struct {
		StatusCode int `json:"statusCode"`
	}
	return json.Unmarshal(raw, &answer) == nil && answer.StatusCode == http.StatusOK
}

// answeredSweep says whether an invocation's answer is a sweep summary.
func answeredSweep(raw []byte) bool {
	var answer struct {
		Swept *int `json:"swept"`
	}
	return json.Unmarshal(raw, &answer) == nil && answer.Swept != nil
}

// coldStartRIE starts the emulator with a bootstrap and times the first invocation with event
// that answers as ok says.
func coldStartRIE(ctx context.Context, rie, bootstrap string, env map[string]string, event string, ok func([]byte) bool) (time.Duration, error) {
	invokePort, err := freeport.Get()
	if err != nil {
		return 0, err
	}
	runtimePort, err := freeport.Get()
	if err != nil {
		return 0, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", invokePort)
	t0 := time.Now()
	c, err := start(rie, []string{"--runtime-interface-emulator-address", "127.0.0.1:" + strconv.Itoa(invokePort),
		"--runtime-api-address", "127.0.0.1:" + strconv.Itoa(runtimePort), "--log-level", "error", bootstrap}, env)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	for {
		resp, err := pollClient.Post(url, "application/json", strings.NewReader(event))
		if err == nil {
			raw, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			elapsed := time.Since(t0)
			if rerr != nil || resp.StatusCode != http.StatusOK || !ok(raw) {
				return 0, fmt.Errorf("invocation answered %d %s; output:\n%s", resp.StatusCode, raw, c.output())
			}
			return elapsed, nil
		}
		if err := wait(ctx, t0, c); err != nil {
			return 0, err
		}
	}
}

// processLatency serves the api and process functions over HTTP, registers a no-op worker and
// times one process invocation over o.tasks ready tasks, o.rounds times.
func processLatency(ctx context.Context, bins map[string]string, env map[string]string, pool *pgxpool.Pool, o options) (lat, dur []time.Duration, last string, err error) {
	env = with(env, "MAX_CONCURRENCY", "0", "PROCESS_BATCH_SIZE", strconv.Itoa(o.tasks))
	apiURL, stopAPI, err := serve(ctx, bins["api"], env)
	if err != nil {
		return nil, nil, "", err
	}
	defer stopAPI()
	processURL, stopProcess, err := serve(ctx, bins["process"], env)
	if err != nil {
		return nil, nil, "", err
	}
	defer stopProcess()
	api, err := apiclient.New(apiURL, "", apiclient.WithHTTPClient(client))
	if err != nil {
		return nil, nil, "", err
	}
	process, err := apiclient.New(processURL, "", apiclient.WithHTTPClient(client))
	if err != nil {
		return nil, nil, "", err
	}
	// A worker that acknowledges every dispatch with 202 at once and calls back only when told,
	// after the measured invocation, so that the api function's inline dispatch (which a
	// callback triggers) does not take over the ready tasks while the invocation is running.
	w, err := fakeworker.Start(api, fakeworker.Options{Record: true})
	if err != nil {
		return nil, nil, "", err
	}
	defer w.Close()
	// The registration token is bound to the exact body bytes (protocol v2).
	regBody, err := json.Marshal(protocol.RegisterRequest{ServiceID: "coldstart", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{{ID: "noop", CodeHash: "noop"}}})
	if err != nil {
		return nil, nil, "", err
	}
	reg, err := token.SignServiceRegistration(secret, "coldstart", regBody, time.Now())
	if err != nil {
		return nil, nil, "", err
	}
	if _, err := api.WithToken(reg).Post(ctx, "/api/register", json.RawMessage(regBody), nil); err != nil {
		return nil, nil, "", fmt.Errorf("register the worker: %w", err)
	}
	// One invocation on the empty queue: the instance is warm, as under a scheduler.
	if _, err := process.Post(ctx, "/", nil, nil); err != nil {
		return nil, nil, "", err
	}
	for r := range o.rounds {
		ids, err := enqueue(ctx, api, o.tasks)
		if err != nil {
			return nil, nil, "", err
		}
		if err := waitCount(ctx, pool, ids, database.CountReadyRuns); err != nil {
			return nil, nil, "", fmt.Errorf("round %d: waiting for the tasks to be ready: %w", r+1, err)
		}
		var s protocol.ProcessSummary
		t0 := time.Now()
		if _, err := process.Post(ctx, "/", nil, &s); err != nil {
			return nil, nil, "", err
		}
		lat = append(lat, time.Since(t0))
		if err := callBack(w); err != nil {
			return nil, nil, "", fmt.Errorf("round %d: %w", r+1, err)
		}
		dur = append(dur, time.Duration(s.DurationMs)*time.Millisecond)
		last = fmt.Sprintf("claimed %d, dispatched %d, failed %d, durationMs %d", s.Claimed, s.Dispatched, s.Failed, s.DurationMs)
		if s.Claimed != o.tasks || s.Dispatched != o.tasks {
			return nil, nil, "", fmt.Errorf("round %d: the invocation did not dispatch every ready task: %s", r+1, last)
		}
		if err := waitCount(ctx, pool, ids, database.CountCompletedRuns); err != nil {
			return nil, nil, "", fmt.Errorf("round %d: waiting for the callbacks: %w", r+1, err)
		}
	}
	return lat, dur, last, nil
}

// serve starts a function binary as an HTTP server and waits for its /health.
func serve(ctx context.Context, bin string, env map[string]string) (string, func(), error) {
	port, err := freeport.Get()
	if err != nil {
		return "", nil, err
	}
	c, err := start(bin, nil, with(env, "PORT", strconv.Itoa(port)))
	if err != nil {
		return "", nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	t0 := time.Now()
	for {
		if resp, err := pollClient.Get(base + "/health"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, c.stop, nil
			}
		}
		if err := wait(ctx, t0, c); err != nil {
			c.stop()
			return "", nil, err
		}
	}
}

// enqueue queues n no-op tasks that become ready together in half a second, so that the API
// does not dispatch them inline.
func enqueue(ctx context.Context, api *apiclient.Client, n int) ([]string, error) {
	var ids []string
	for i := 0; i < n; i += 500 {
		tasks := make([]map[string]any, min(500, n-i))
		for j := range tasks {
			tasks[j] = map[string]any{"taskId": "noop", "input": map[string]int{"i": i + j}, "delayMs": 500}
		}
		var out struct {
			Results []struct {
				RunID string `json:"runId"`
			} `json:"results"`
		}
		if _, err := api.Post(ctx, "/api/queue/batch", map[string]any{"tasks": tasks}, &out); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		for _, r := range out.Results {
			ids = append(ids, r.RunID)
		}
	}
	return ids, nil
}

// waitCount waits until count, one of the database's counts of runs, counts every run of ids.
func waitCount(ctx context.Context, pool *pgxpool.Pool, ids []string,
	count func(context.Context, database.Executor, []string) (int64, error)) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := count(ctx, pool, ids)
		if err != nil {
			return err
		}
		if n == int64(len(ids)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d runs after 2 minutes", n, len(ids))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 2 * time.Minute}

// callBack sends the success callbacks of every dispatch w recorded so far, 32 at a time.
func callBack(w *fakeworker.Worker) error {
	todo := w.Take()
	next := make(chan protocol.DispatchRequest)
	errs := make(chan error, len(todo))
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				cb := protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID)}
				if _, err := w.Callback(context.Background(), d, cb); err != nil {
					errs <- fmt.Errorf("callback: %w", err)
				}
			}
		}()
	}
	for _, d := range todo {
		next <- d
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// stats is min, p50, p90 and max.
func stats(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("min %s  p50 %s  p90 %s  max %s", r(s[0]), r(pct(0.5)), r(pct(0.9)), r(s[len(s)-1]))
}
