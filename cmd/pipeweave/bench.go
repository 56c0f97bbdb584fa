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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
// --worker-process runs the worker as a process of its own (the Go SDK: bench_worker.go),
// --replicas N runs N orchestrators on the one database, --pending N fills the queue with N
// runs that are not ready before measuring. The last line, "summary: …", gives the rate, the
// enqueue (or trigger) rate alone, p50 and p99, and per task (or pipeline) the database's
// transactions (pg_stat_database) and the objects stored, and the dispatches of a (run,
// attempt) the worker had already seen.
//
// `bench slowloris` measures a running orchestrator under slow connections instead
// (bench_slowloris.go).
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "slowloris" {
		return slowlorisCommand(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "worker" {
		return benchWorkerCommand(ctx, args[1:], stdout, stderr)
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
	workerProfile := fs.String("worker-cpuprofile", "", "with --worker-process: write a CPU profile of the worker process (its whole life) to this file")
	dispatchBatch := fs.Int("dispatch-batch", 256, "with --worker-process: the dispatchBatchMax the worker is registered with (the Go SDK's; 0: one dispatch per request)")
	workerProcess := fs.Bool("worker-process", false, "run the no-op worker in a process of its own (this binary run as bench worker: the Go SDK with a no-op handler, which reads each input and stores each output itself) instead of in the bench's process")
	replicas := fs.Int("replicas", 1, "orchestrator instances on the one database, each with its own pool, listener and loop; enqueues and the worker's calls go to each in turn")
	pending := fs.Int("pending", 0, "before measuring, fill the queue with this many pending runs of the measured task (COPY) that become ready only in 100 years: never dispatched, they sit in the index range the claim scans, after every ready run, so a claim that finds fewer ready runs than it has room for reads through them as through a real queue's delayed runs (README, Performance)")
	schedules := fs.Int("schedules", 0, "measure schedule firing lag instead: this many schedules firing the noop task every second (README, Performance)")
	scheduleFor := fs.Duration("schedule-for", 30*time.Second, "with --schedules: how long the schedules fire")
	rateLimited := fs.Int("rate-limited", 0, "before measuring, register a task limited to one run a day (rateLimit) and fill the queue with this many ready runs of it (COPY): the claim holds them back all along, so the measured task's rate shows what a rate-limited backlog costs unrelated tasks (README, Performance)")
	mapItems := fs.Int("map", 0, "measure a map node instead: trigger the pipeline split → item (a map over split's /items) → join with this many items, one run after the other, and report the fan-out time and items/s (README, Performance)")
	maps := fs.Int("maps", 3, "with --map: measured map runs (after a warm-up map of min(--warmup, --map) items)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mapItems < 0 || *mapItems > 1_000_000 || *maps < 1 {
		return fmt.Errorf("bench: --map must be between 0 and 1000000, --maps at least 1")
	}
	if *mapItems > 0 && (*pipeline || *workerProcess || *schedules > 0 || *replicas > 1) {
		return fmt.Errorf("bench: --map runs alone (not with --pipeline, --worker-process, --schedules or --replicas)")
	}
	if *replicas < 1 || *pending < 0 || *rateLimited < 0 {
		return fmt.Errorf("bench: --replicas must be at least 1, --pending and --rate-limited not negative")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	// The orchestrators in this process collect garbage as serve's do; a worker process
	// (--worker-process) keeps the Go default, as a worker program of a user's would.
	setServerGC(os.Getenv)
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
	// One connection: Transactions waits for the sessions of the orchestrators to end, not for
	// idle ones of this pool.
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 1})
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
	srvCtx, stopSrv := context.WithCancel(ctx)
	defer stopSrv()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var apis []*apiclient.Client
	var pools []*pgxpool.Pool
	var urls []string
	for range *replicas {
		rpool, err := database.Open(ctx, url, database.Options{MaxConns: int32(*conns)})
		if err != nil {
			return err
		}
		defer rpool.Close()
		o, err := core.New(ctx, cfg, core.Options{Logger: log, Pool: rpool})
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
		served := make(chan struct{})
		rctx, stopReplica := context.WithCancel(srvCtx)
		go func() {
			defer close(served)
			_ = o.Serve(rctx, ln)
		}()
		// Deferred after its pool's Close, so run before it: the instance's loop stops before
		// its pool closes, and does not log failed claims and sweeps on the way out.
		defer func() {
			stopReplica()
			<-served
		}()
		apis, pools, urls = append(apis, api), append(pools, rpool), append(urls, api.URL())
	}

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
					_, _ = apis[0].Post(srvCtx, "/api/process", nil, nil)
				}
			}
		}()
	}
	sink := ""
	if *pipeline {
		sink = "d"
	}
	var w benchWorker
	var mw *mapWorker
	if *mapItems > 0 {
		if mw, err = startMapWorker(apis[0]); err != nil {
			return err
		}
		defer mw.Close()
	} else if *workerProcess {
		tmp, err := os.MkdirTemp(abs, "worker-tmp-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		pw, err := startProcessWorker(ctx, secret, urls, sink, tmp, *workerProfile, stderr)
		if err != nil {
			return err
		}
		defer func() {
			pw.Close()
			fmt.Fprintf(stderr, "pipeweave bench: stopped the worker process (pid %d)\n", pw.Pid())
		}()
		w = pw
	} else {
		hosts, err := hostsOf(urls)
		if err != nil {
			return err
		}
		// The worker's callbacks go to each replica in turn.
		callbacks, err := apiclient.New(urls[0], "", apiclient.WithHTTPClient(&http.Client{
			Transport: &roundRobin{base: benchClient.Transport, hosts: hosts}, Timeout: benchClient.Timeout}))
		if err != nil {
			return err
		}
		iw, err := startNoopWorker(callbacks, sink)
		if err != nil {
			return err
		}
		defer iw.Close()
		w = iw
	}
	// The registration token is bound to the exact body bytes (protocol v2).
	regTasks := benchTasks
	regPipelines := []protocol.PipelineDefinition{{ID: "diamond", EntryTasks: []string{"a"}}}
	baseURL := ""
	if mw != nil {
		regTasks, regPipelines, baseURL = mapBenchTasks, []protocol.PipelineDefinition{mapBenchPipeline}, mw.URL()
	} else {
		baseURL = w.URL()
	}
	if *rateLimited > 0 {
		regTasks = append(slices.Clone(benchTasks), protocol.TaskDefinition{ID: "limited", CodeHash: "limited",
			RateLimit: &protocol.RateLimit{Limit: 1, PeriodMs: 24 * 3600 * 1000}})
	}
	regReq := protocol.RegisterRequest{ServiceID: "bench", Version: "1", BaseURL: baseURL, Tasks: regTasks, Pipelines: regPipelines}
	if *workerProcess {
		regReq.DispatchBatchMax = *dispatchBatch // the Go SDK serves the batch route
	}
	regBody, err := json.Marshal(regReq)
	if err != nil {
		return err
	}
	reg, err := token.SignServiceRegistration(secret, "bench", regBody, time.Now())
	if err != nil {
		return err
	}
	if _, err := apis[0].WithToken(reg).Post(ctx, "/api/register", json.RawMessage(regBody), nil); err != nil {
		return fmt.Errorf("register the worker: %w", err)
	}
	if *pending > 0 {
		if err := database.InsertFutureRuns(ctx, pool, "noop", 1, "noop", time.Now().AddDate(100, 0, 0), *pending); err != nil {
			return err
		}
	}
	if *rateLimited > 0 {
		// Ready now: the first claim takes one, and every claim after it holds the rest back.
		if err := database.InsertFutureRuns(ctx, pool, "limited", 1, "limited", time.Now().Add(-time.Second), *rateLimited); err != nil {
			return err
		}
	}

	if *schedules > 0 {
		fmt.Fprintf(stdout, "pipeweave bench: %s mode, %d schedule(s) firing every second for %s, %d replica(s), fsync=%s synchronous_commit=%s\n",
			*mode, *schedules, *scheduleFor, *replicas, settings[0], settings[1])
		return runScheduleBench(ctx, apis[0], pool, w, *schedules, *scheduleFor, stdout)
	}
	if mw != nil {
		fmt.Fprintf(stdout, "pipeweave bench: %s mode, %d map run(s) of %d items (after a warm-up map of %d), MAX_CONCURRENCY %d, claim batch %d, %d DB conns, fsync=%s synchronous_commit=%s\n",
			*mode, *maps, *mapItems, min(*warmup, *mapItems), *maxConc, *claimBatch, *conns, settings[0], settings[1])
		if *cpuProfile != "" {
			// The profile covers the warm-up map too.
			f, err := os.Create(*cpuProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		return runMapBench(ctx, apis[0], mw, *mapItems, *maps, min(*warmup, *mapItems), stdout)
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
	where := "in process"
	if *workerProcess {
		where = "in its own process"
	}
	fmt.Fprintf(stdout, "pipeweave bench: %s mode, %s, MAX_CONCURRENCY %d, claim batch %d, %d DB conns, %d replica(s), %d runs pending, %d rate-limited, worker %s, fsync=%s synchronous_commit=%s\n",
		*mode, how, *maxConc, *claimBatch, *conns, *replicas, *pending, *rateLimited, where, settings[0], settings[1])
	run := func(n int) (benchResult, error) {
		if *pipeline {
			return runPipelines(ctx, apis, w, n, *clients, *rate)
		}
		return runBench(ctx, apis, w, n, *batch, *rate)
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
	// The transactions of the measured phase: the sessions of the warm-up report theirs as
	// they end (database.Transactions).
	xacts0, err := settledTransactions(ctx, pool, pools, stderr)
	if err != nil {
		return err
	}
	ws0, err := w.stats(ctx)
	if err != nil {
		return err
	}
	puts0 := storage.Puts() + ws0.Puts
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
	xacts1, err := settledTransactions(ctx, pool, pools, stderr)
	if err != nil {
		return err
	}
	ws1, err := w.stats(ctx)
	if err != nil {
		return err
	}
	puts1 := storage.Puts() + ws1.Puts
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
	n := float64(len(res.runIDs))
	per := strings.TrimSuffix(unit, "s")
	fmt.Fprintf(stdout, "summary: %s/s=%.0f %s/s=%.0f p50=%s p99=%s xacts/%s=%.2f puts/%s=%.2f duplicates=%d\n",
		unit, n/res.elapsed.Seconds(), what, n/res.submitted.Seconds(), pct(lat, 0.50), pct(lat, 0.99),
		per, float64(xacts1-xacts0)/n, per, float64(puts1-puts0)/n, ws1.Duplicates)
	return nil
}

// settledTransactions closes the connections of the orchestrators' pools (they open new ones
// as they need them) and returns the database's transaction count once the sessions they had
// have ended and reported their statistics.
func settledTransactions(ctx context.Context, pool *pgxpool.Pool, pools []*pgxpool.Pool, stderr io.Writer) (int64, error) {
	since := time.Now()
	for _, p := range pools {
		p.Reset()
	}
	n, settled, err := database.Transactions(ctx, pool, since, 10*time.Second)
	if err != nil {
		return 0, err
	}
	if !settled {
		fmt.Fprintln(stderr, "pipeweave bench: some sessions did not end within 10 s: the transaction count may miss some of theirs")
	}
	return n, nil
}

// runPipelines triggers n diamond pipelines, from clients concurrent clients as fast as they go
// or, when rate > 0, at rate per second, and waits until all have completed.
func runPipelines(ctx context.Context, apis []*apiclient.Client, w benchWorker, n, clients int, rate float64) (benchResult, error) {
	before, err := w.stats(ctx)
	if err != nil {
		return benchResult{}, err
	}
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
				if _, err := apis[i%len(apis)].Post(ctx, "/api/pipelines/diamond/trigger", map[string]any{"input": map[string]int{"n": i}}, &out); err != nil {
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
	submitted := time.Since(start)
	if err := waitCompleted(ctx, w, before.Completed+int64(n), "pipelines"); err != nil {
		return benchResult{}, err
	}
	return benchResult{runIDs: ids, elapsed: time.Since(start), submitted: submitted}, nil
}

// waitCompleted waits until w has counted target completions, for at most 10 minutes.
func waitCompleted(ctx context.Context, w benchWorker, target int64, unit string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		s, err := w.stats(ctx)
		if err != nil {
			return err
		}
		if s.Completed >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d %s left to complete after 10 minutes", target-s.Completed, unit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

type benchResult struct {
	runIDs []string
	// elapsed runs to the last completion, submitted to the last enqueue or trigger answered.
	elapsed, submitted time.Duration
}

// benchEnqueue is one task of the bench's POST /api/queue/batch.
type benchEnqueue struct {
	TaskID string          `json:"taskId"`
	Input  json.RawMessage `json:"input"`
}

// runBench enqueues n tasks, in batches of batch as fast as the API takes them or, when rate > 0,
// one per request at rate requests per second, and waits until all have completed.
func runBench(ctx context.Context, apis []*apiclient.Client, w benchWorker, n, batch int, rate float64) (benchResult, error) {
	before, err := w.stats(ctx)
	if err != nil {
		return benchResult{}, err
	}
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
		// Typed, as a Go producer would send them: the client's encoding shares the machine
		// with the orchestrator, and reflection over maps would be measured as its cost.
		reqs := make([]benchEnqueue, size)
		for j := range reqs {
			reqs[j] = benchEnqueue{TaskID: "noop", Input: json.RawMessage(`{"n":` + strconv.Itoa(i+j) + `}`)}
		}
		var out struct {
			Results []struct {
				RunID string `json:"runId"`
			} `json:"results"`
		}
		if _, err := apis[(i/batch)%len(apis)].Post(ctx, "/api/queue/batch", struct {
			Tasks []benchEnqueue `json:"tasks"`
		}{reqs}, &out); err != nil {
			return benchResult{}, fmt.Errorf("enqueue: %w", err)
		}
		for _, r := range out.Results {
			ids = append(ids, r.RunID)
		}
	}
	submitted := time.Since(start)
	if err := waitCompleted(ctx, w, before.Completed+int64(n), "tasks"); err != nil {
		return benchResult{}, err
	}
	return benchResult{runIDs: ids, elapsed: time.Since(start), submitted: submitted}, nil
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

// noopWorker is the bench's default worker: a fakeworker in the bench's process that calls back
// success to every dispatch at once and counts the completions of every task, or of sink alone.
type noopWorker struct {
	*fakeworker.Worker
	sink      string
	counter   dispatchCounter
	completed atomic.Int64
}

// startNoopWorker starts the worker, which calls back through orch.
func startNoopWorker(orch *apiclient.Client, sink string) (*noopWorker, error) {
	w := &noopWorker{sink: sink}
	fw, err := fakeworker.Start(orch, fakeworker.Options{After: w.callBack})
	if err != nil {
		return nil, err
	}
	w.Worker = fw
	return w, nil
}

// stats returns the worker's counts.
func (w *noopWorker) stats(context.Context) (workerStats, error) {
	d, dup := w.counter.counts()
	// Its process is the bench's, whose objects the bench counts with the orchestrators'.
	return workerStats{Completed: w.completed.Load(), Dispatches: d, Duplicates: dup}, nil
}

// callBack reports d's success and counts it.
func (w *noopWorker) callBack(d protocol.DispatchRequest) {
	w.counter.saw(d.RunID, d.Attempt)
	cb := protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID)}
	if _, err := w.Callback(context.Background(), d, cb); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker: callback:", err)
		return
	}
	if w.sink == "" || d.TaskID == w.sink {
		w.completed.Add(1)
	}
}
