package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/worker"
)

// benchTasks are the tasks of the bench service: noop for standalone runs, a → b, c → d for the
// diamond pipeline.
var benchTasks = []protocol.TaskDefinition{{ID: "noop", CodeHash: "noop"},
	{ID: "a", CodeHash: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", CodeHash: "b", AllowedNext: []string{"d"}},
	{ID: "c", CodeHash: "c", AllowedNext: []string{"d"}}, {ID: "d", CodeHash: "d"}}

// workerStats are what a bench worker counts: callbacks the orchestrator accepted (of every
// task, or of the sink alone), dispatches, dispatches of a (run, attempt) seen before, and
// objects it stored itself.
type workerStats struct {
	Completed  int64 `json:"completed"`
	Dispatches int64 `json:"dispatches"`
	Duplicates int64 `json:"duplicates"`
	Puts       int64 `json:"puts"`
}

// benchWorker is the no-op worker of a bench: in the bench's process, or in a process of its
// own.
type benchWorker interface {
	URL() string
	stats(ctx context.Context) (workerStats, error)
	Close()
}

// dispatchCounter counts dispatches and those of a (run, attempt) already seen.
type dispatchCounter struct {
	mu         sync.Mutex
	seen       map[runAttempt]struct{}
	dispatches int64
	duplicates int64
}

// runAttempt is one attempt of a run: what is dispatched at most once.
type runAttempt struct {
	runID   string
	attempt int
}

// saw counts a dispatch of the attempt of runID.
func (c *dispatchCounter) saw(runID string, attempt int) {
	k := runAttempt{runID, attempt}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[runAttempt]struct{}{}
	}
	c.dispatches++
	if _, dup := c.seen[k]; dup {
		c.duplicates++
	}
	c.seen[k] = struct{}{}
}

// counts returns the dispatches counted and how many of them were of an attempt seen before.
func (c *dispatchCounter) counts() (dispatches, duplicates int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dispatches, c.duplicates
}

// roundRobin sends each request to the next of hosts (host:port), as a load balancer in front
// of the orchestrator replicas would, and calls observe with each answer.
type roundRobin struct {
	base    http.RoundTripper
	hosts   []string
	next    atomic.Uint64
	observe func(*http.Request, *http.Response)
}

// RoundTrip implements http.RoundTripper.
func (rr *roundRobin) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(rr.hosts) > 1 {
		r = r.Clone(r.Context())
		r.URL.Host = rr.hosts[rr.next.Add(1)%uint64(len(rr.hosts))]
		r.Host = ""
	}
	resp, err := rr.base.RoundTrip(r)
	if err == nil && rr.observe != nil {
		rr.observe(r, resp)
	}
	return resp, err
}

// hostsOf returns the host:port of each URL.
func hostsOf(urls []string) ([]string, error) {
	hosts := make([]string, len(urls))
	for i, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			return nil, err
		}
		hosts[i] = p.Host
	}
	return hosts, nil
}

// benchWorkerCommand is `pipeweave bench worker`, the worker bench --worker-process runs as a
// process of its own: the Go SDK (package worker) with a no-op handler for each bench task,
// calling back to the orchestrators of --orchestrators in turn. It prints its base URL on
// stdout and serves, besides the dispatches, GET /bench/stats (workerStats) until SIGINT or
// SIGTERM. The bench registers it.
func benchWorkerCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	orchs := fs.String("orchestrators", "", "comma list of the orchestrators' base URLs")
	sink := fs.String("sink", "", "count the callbacks of this task alone (default: of every task)")
	tmp := fs.String("temp-dir", "", "the attempts' temporary directories (default: the SDK's)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	urls := strings.Split(*orchs, ",")
	hosts, err := hostsOf(urls)
	if err != nil || *orchs == "" {
		return fmt.Errorf("bench worker: --orchestrators: give the orchestrators' base URLs")
	}
	var counter dispatchCounter
	var completed atomic.Int64
	var tasks sync.Map // run id → task id, from dispatch to callback
	count := func(runID string) {
		if task, ok := tasks.LoadAndDelete(runID); ok && (*sink == "" || task == *sink) {
			completed.Add(1)
		}
	}
	rr := &roundRobin{base: benchClient.Transport, hosts: hosts, observe: func(r *http.Request, resp *http.Response) {
		if r.Method != http.MethodPost || resp.StatusCode >= 300 {
			return
		}
		if r.URL.Path == protocol.CallbackBatchPath {
			// The batch's answer, read here and handed on to the SDK unchanged.
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var res protocol.CallbackBatchResponse
			if err == nil && json.Unmarshal(body, &res) == nil {
				for _, x := range res.Results {
					if x.HTTPStatus == http.StatusOK {
						count(x.RunID)
					}
				}
			}
			return
		}
		if runID, ok := strings.CutPrefix(r.URL.Path, "/api/callback/"); ok {
			count(runID)
		}
	}}
	w, err := worker.New(worker.Config{OrchestratorURL: urls[0], ServiceID: "bench", Version: "1",
		ServiceKey: os.Getenv("PIPEWEAVE_SERVICE_KEY"), TempDir: *tmp,
		HTTPClient: &http.Client{Transport: rr, Timeout: 60 * time.Second},
		Logger:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer w.Close()
	noop := func(task *worker.Context) (any, error) {
		counter.saw(task.RunID, task.Attempt)
		tasks.Store(task.RunID, task.TaskID)
		return nil, nil
	}
	for _, t := range benchTasks {
		if err := w.Register(t.ID, worker.Options{AllowedNext: t.AllowedNext, CodeHash: t.CodeHash}, noop); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", w.Handler())
	mux.HandleFunc("GET /bench/stats", func(rw http.ResponseWriter, _ *http.Request) {
		d, dup := counter.counts()
		_ = json.NewEncoder(rw).Encode(workerStats{Completed: completed.Load(), Dispatches: d, Duplicates: dup, Puts: storage.Puts()})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	w.Wait()
	return nil
}

// processWorker is a bench worker running as a process of its own (bench worker).
type processWorker struct {
	url    string
	cmd    *exec.Cmd
	exited chan struct{}
	stop   context.CancelFunc
}

// startProcessWorker runs `bench worker` from this binary with the service key of the bench
// service. It stops when ctx ends or Close is called: SIGTERM, then a kill after 10 s.
func startProcessWorker(ctx context.Context, secret string, orchURLs []string, sink, tmp, cpuProfile string, stderr io.Writer) (*processWorker, error) {
	key, err := token.ServiceKey(secret, "bench")
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the bench's own binary: %w", err)
	}
	ctx, stop := context.WithCancel(ctx)
	args := []string{"bench", "worker", "--orchestrators", strings.Join(orchURLs, ","), "--sink", sink, "--temp-dir", tmp}
	if cpuProfile != "" {
		args = append(args, "--cpuprofile", cpuProfile)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), "PIPEWEAVE_SERVICE_KEY="+hex.EncodeToString(key))
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		stop()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		stop()
		return nil, fmt.Errorf("start the worker process: %w", err)
	}
	p := &processWorker{cmd: cmd, exited: make(chan struct{}), stop: stop}
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("the worker process ended before it served: %w", err)
	}
	p.url = strings.TrimSpace(line)
	return p, nil
}

// Pid is the worker process's id.
func (p *processWorker) Pid() int { return p.cmd.Process.Pid }

// URL is the worker's base URL.
func (p *processWorker) URL() string { return p.url }

// stats asks the worker process for its counts.
func (p *processWorker) stats(ctx context.Context) (workerStats, error) {
	var s workerStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/bench/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("ask the worker process its counts: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("ask the worker process its counts: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("ask the worker process its counts: %w", err)
	}
	return s, nil
}

// Close stops the process and waits for it.
func (p *processWorker) Close() {
	p.stop()
	<-p.exited
}
