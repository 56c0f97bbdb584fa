package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/fakeworker"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// benchCommand measures end to end: an orchestrator on a private cluster and a no-op Go worker
// over loopback HTTP. By default N standalone tasks are enqueued with the batch API and it prints
// tasks/s and the enqueue→completed latency percentiles; with --pipeline it triggers diamond
// pipelines (a → b, c → d) and prints pipelines/s and trigger→completed latency. Latencies come
// from the database's own timestamps. In serverless mode no loop runs: a scheduler calls
// /api/process every --process-interval, and inline dispatch must carry the work.
//
// `bench slowloris` measures a running orchestrator under slow connections instead
// (bench_slowloris.go).
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "slowloris" {
		return slowlorisCommand(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	dir := fs.String("dir", ".pipeweave/bench", "state directory for the private cluster and storage")
	tasks := fs.Int("tasks", 10000, "standalone tasks to run")
	warmup := fs.Int("warmup", 1000, "tasks run (and not counted) before measuring")
	batch := fs.Int("batch", 500, "tasks per /api/queue/batch call")
	rate := fs.Float64("rate", 0, "enqueue one task per request at this many per second instead (latency of a lightly loaded queue)")
	maxConc := fs.Int("max-concurrency", 256, "MAX_CONCURRENCY")
	claimBatch := fs.Int("claim-batch", 100, "runs per claim (PROCESS_BATCH_SIZE)")
	conns := fs.Int("db-conns", 16, "database connections of the orchestrator")
	dbURL := fs.String("database-url", "", "use this database instead of a private cluster (it is reset)")
	storeFlag := fs.String("storage", "", "local storage directory for inputs (default DIR/storage); each run writes to a new subdirectory")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured run to this file")
	pipeline := fs.Bool("pipeline", false, "run diamond pipelines (a → b, c → d) instead of standalone tasks")
	pipelines := fs.Int("pipelines", 2000, "with --pipeline: pipeline runs to trigger")
	clients := fs.Int("clients", 4, "with --pipeline and no --rate: concurrent triggering clients")
	mode := fs.String("mode", string(core.ModeStandalone), "orchestrator mode: standalone or serverless")
	processEvery := fs.Duration("process-interval", time.Minute, "serverless mode: how often the scheduler calls /api/process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	// Interrupted (SIGINT, SIGTERM): one line instead of the error of whatever was under way.
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("bench interrupted: no figures")
		}
	}()
	url := *dbURL
	if url == "" {
		pgDir := filepath.Join(abs, "pg")
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: pgDir, Attached: true,
			Settings: map[string]string{"max_connections": "200"}})
		if err != nil {
			return fmt.Errorf("start the private PostgreSQL cluster: %w", err)
		}
		defer func() {
			if err := cluster.Stop(context.Background()); err != nil {
				fmt.Fprintf(stderr, "pipeweave bench: could not stop the PostgreSQL cluster it started (%s): %v\n", pgDir, err)
				return
			}
			fmt.Fprintf(stderr, "pipeweave bench: stopped the PostgreSQL cluster it started (%s)\n", pgDir)
		}()
		if err := cluster.EnsureDatabase(ctx, "pipeweave_bench"); err != nil {
			return err
		}
		url = cluster.URL("pipeweave_bench")
	}
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate.Reset(ctx, pool, true); err != nil {
		return err
	}
	var settings [2]string
	settings[0], settings[1], _ = database.DurabilitySettings(ctx, pool)

	if m := core.Mode(*mode); m != core.ModeStandalone && m != core.ModeServerless {
		return fmt.Errorf("bench: --mode must be standalone or serverless")
	}
	secret := "pipeweave-bench-secret-0123456789abcdef"
	// Inputs go to a directory of this run's own, removed after the measurement: deleting tens of
	// thousands of files just before measuring slows the creation of new ones on some
	// filesystems (ext4 skips recently freed inodes), which is not what this measures.
	parent := filepath.Join(abs, "storage")
	if *storeFlag != "" {
		parent = *storeFlag
	}
	storeDir := filepath.Join(parent, fmt.Sprintf("run-%d", time.Now().UnixNano()))
	defer func() { _ = os.RemoveAll(storeDir) }()
	cfg := core.DefaultConfig()
	cfg.DatabaseURL, cfg.SecretKey, cfg.Mode = url, secret, core.Mode(*mode)
	cfg.StorageBackends = []storage.Config{{ID: "local", Provider: "local", Credentials: map[string]any{"basePath": storeDir}}}
	cfg.MaxConcurrency, cfg.ProcessBatchSize, cfg.DBMaxConns, cfg.MaxBodyBytes = *maxConc, *claimBatch, *conns, 64<<20
	cfg.InsecureNoAuth = true                                                        // on 127.0.0.1, for the length of the measurement
	cfg.WorkerAllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // its workers listen on 127.0.0.1
	o, err := core.New(ctx, cfg, core.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer o.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	api, err := apiclient.New("http://"+ln.Addr().String(), "", apiclient.WithHTTPClient(benchClient))
	if err != nil {
		return err
	}
	srvCtx, stopSrv := context.WithCancel(ctx)
	defer stopSrv()
	go func() { _ = o.Serve(srvCtx, ln) }()

	if cfg.Mode == core.ModeServerless {
		// The scheduler: the safety net, not the engine.
		go func() {
			t := time.NewTicker(*processEvery)
			defer t.Stop()
			for {
				select {
				case <-srvCtx.Done():
					return
				case <-t.C:
					_, _ = api.Post(srvCtx, "/api/process", nil, nil)
				}
			}
		}()
	}
	sink := ""
	if *pipeline {
		sink = "d"
	}
	w, err := startNoopWorker(api, sink)
	if err != nil {
		return err
	}
	defer w.Close()
	// The registration token is bound to the exact body bytes (protocol v2).
	regBody, err := json.Marshal(protocol.RegisterRequest{ServiceID: "bench", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{{ID: "noop", CodeHash: "noop"},
			{ID: "a", CodeHash: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", CodeHash: "b", AllowedNext: []string{"d"}},
			{ID: "c", CodeHash: "c", AllowedNext: []string{"d"}}, {ID: "d", CodeHash: "d"}},
		Pipelines: []protocol.PipelineDefinition{{ID: "diamond", EntryTasks: []string{"a"}}}})
	if err != nil {
		return err
	}
	reg, err := token.SignServiceRegistration(secret, "bench", regBody, time.Now())
	if err != nil {
		return err
	}
	if _, err := api.WithToken(reg).Post(ctx, "/api/register", json.RawMessage(regBody), nil); err != nil {
		return fmt.Errorf("register the worker: %w", err)
	}

	how := fmt.Sprintf("batch %d", *batch)
	if *rate > 0 {
		how = fmt.Sprintf("one per request at %.0f/s", *rate)
	}
	if *pipeline {
		how = fmt.Sprintf("%d diamond pipelines, %d clients", *pipelines, *clients)
		if *rate > 0 {
			how = fmt.Sprintf("%d diamond pipelines at %.0f/s", *pipelines, *rate)
		}
	}
	if !*pipeline {
		how = fmt.Sprintf("%d tasks (after %d warm-up), %s", *tasks, *warmup, how)
	}
	fmt.Fprintf(stdout, "pipeweave bench: %s mode, %s, MAX_CONCURRENCY %d, claim batch %d, %d DB conns, fsync=%s synchronous_commit=%s\n",
		*mode, how, *maxConc, *claimBatch, *conns, settings[0], settings[1])
	run := func(n int) (benchResult, error) {
		if *pipeline {
			return runPipelines(ctx, api, w, n, *clients, *rate)
		}
		return runBench(ctx, api, w, n, *batch, *rate)
	}
	if *pipeline {
		*tasks = *pipelines
		*warmup = min(*warmup, max(*pipelines/10, 1))
	}
	if *warmup > 0 {
		if _, err := run(*warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	res, err := run(*tasks)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	unit := "tasks"
	if *pipeline {
		unit = "pipelines"
	}
	lat, err := database.RunLatencies(ctx, pool, *pipeline, res.runIDs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "completed %d %s in %.2fs: %.0f %s/s end to end\n", len(res.runIDs), unit, res.elapsed.Seconds(),
		float64(len(res.runIDs))/res.elapsed.Seconds(), unit)
	what := "enqueue"
	if *pipeline {
		what = "trigger"
	}
	fmt.Fprintf(stdout, "%s→completed latency: p50 %s  p90 %s  p99 %s  max %s\n", what,
		pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99), pct(lat, 1))
	return nil
}

// runPipelines triggers n diamond pipelines, from clients concurrent clients as fast as they go
// or, when rate > 0, at rate per second, and waits until all have completed.
func runPipelines(ctx context.Context, api *apiclient.Client, w *noopWorker, n, clients int, rate float64) (benchResult, error) {
	done := make(chan struct{})
	w.setTarget(int64(n), done)
	start := time.Now()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	if rate > 0 {
		clients = max(1, int(rate/50)+1)
	}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if rate > 0 {
					if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
						time.Sleep(wait)
					}
				}
				var out struct {
					PipelineRunID string `json:"pipelineRunId"`
				}
				if _, err := api.Post(ctx, "/api/pipelines/diamond/trigger", map[string]any{"input": map[string]int{"n": i}}, &out); err != nil {
					errs <- fmt.Errorf("trigger: %w", err)
					return
				}
				ids[i] = out.PipelineRunID
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return benchResult{}, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return benchResult{}, ctx.Err()
	case <-time.After(10 * time.Minute):
		return benchResult{}, fmt.Errorf("only %d of %d pipelines completed after 10 minutes", w.completed.Load(), n)
	}
	return benchResult{runIDs: ids, elapsed: time.Since(start)}, nil
}

type benchResult struct {
	runIDs  []string
	elapsed time.Duration
}

// runBench enqueues n tasks, in batches of batch as fast as the API takes them or, when rate > 0,
// one per request at rate requests per second, and waits until all have completed.
func runBench(ctx context.Context, api *apiclient.Client, w *noopWorker, n, batch int, rate float64) (benchResult, error) {
	done := make(chan struct{})
	w.setTarget(int64(n), done)
	start := time.Now()
	var ids []string
	if rate > 0 {
		batch = 1
	}
	for i := 0; i < n; i += batch {
		if rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		size := min(batch, n-i)
		reqs := make([]map[string]any, size)
		for j := range reqs {
			reqs[j] = map[string]any{"taskId": "noop", "input": map[string]int{"n": i + j}}
		}
		var out struct {
			Results []struct {
				RunID string `json:"runId"`
			} `json:"results"`
		}
		if _, err := api.Post(ctx, "/api/queue/batch", map[string]any{"tasks": reqs}, &out); err != nil {
			return benchResult{}, fmt.Errorf("enqueue: %w", err)
		}
		for _, r := range out.Results {
			ids = append(ids, r.RunID)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return benchResult{}, ctx.Err()
	case <-time.After(10 * time.Minute):
		return benchResult{}, fmt.Errorf("only %d of %d tasks completed after 10 minutes", w.completed.Load(), n)
	}
	return benchResult{runIDs: ids, elapsed: time.Since(start)}, nil
}

func pct(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i].Round(100 * time.Microsecond).String()
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 512}, Timeout: 60 * time.Second}

// noopWorker is a fakeworker that calls back success to every dispatch at once and counts the
// completions of every task, or of sink alone.
type noopWorker struct {
	*fakeworker.Worker
	sink      string
	completed atomic.Int64
	mu        sync.Mutex
	target    int64
	done      chan struct{}
}

// startNoopWorker starts the worker; it counts completions of every task, or of sink alone.
func startNoopWorker(orch *apiclient.Client, sink string) (*noopWorker, error) {
	w := &noopWorker{sink: sink}
	fw, err := fakeworker.Start(orch, fakeworker.Options{After: w.callBack})
	if err != nil {
		return nil, err
	}
	w.Worker = fw
	return w, nil
}

func (w *noopWorker) setTarget(n int64, done chan struct{}) {
	w.completed.Store(0)
	w.mu.Lock()
	w.target, w.done = n, done
	w.mu.Unlock()
}

// callBack reports d's success and counts it.
func (w *noopWorker) callBack(d protocol.DispatchRequest) {
	cb := protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID)}
	if _, err := w.Callback(context.Background(), d, cb); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker: callback:", err)
		return
	}
	if w.sink != "" && d.TaskID != w.sink {
		return
	}
	n := w.completed.Add(1)
	w.mu.Lock()
	if n == w.target && w.done != nil {
		close(w.done)
		w.done = nil
	}
	w.mu.Unlock()
}
