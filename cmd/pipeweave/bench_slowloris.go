package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// slowlorisCommand measures an orchestrator under a slow-connection attack (issue 10): it holds
// --connections connections open against --url, half sending their headers a line at a time,
// half sending chunked bodies a chunk at a time without credentials (to POST /api/callback/{id}
// and POST /api/queue/batch), each connecting again --reconnect-delay after the server closed it. Meanwhile it measures
// /health on fresh connections (as a load balancer's probe does) and, when --pid names the
// server's process, that process's resident memory and open descriptors (from /proc). It
// targets a server started separately, so that the figures are the server's own.
func slowlorisCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench slowloris", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	target := fs.String("url", "http://127.0.0.1:3000", "the orchestrator's base URL")
	pid := fs.Int("pid", 0, "the orchestrator's process id, to sample its memory (VmRSS) and open descriptors; 0: not sampled")
	conns := fs.Int("connections", 5000, "slow connections to hold")
	interval := fs.Duration("interval", 5*time.Second, "how often each slow connection sends one more header line or chunk")
	reconnect := fs.Duration("reconnect-delay", 5*time.Second, "how long a slow connection the server closed waits before connecting again (0: at once, which turns the attack into a flood of requests)")
	ramp := fs.Duration("ramp", 30*time.Second, "at most this long to open the connections before measuring")
	healthN := fs.Int("health-requests", 500, "sequential GET /health requests measured under the attack (and 100 before it)")
	every := fs.Duration("probe-every", 100*time.Millisecond, "pause between two measured requests (500 requests at 100 ms: the attack lasts about a minute)")
	probeTimeout := fs.Duration("probe-timeout", 10*time.Second, "a /health request not answered within this counts as failed")
	apiKey := fs.String("api-key", "", "also measure 100 authenticated GET /api/queue/status with this API key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bench slowloris: --url must be an http:// URL, got %q", *target)
	}
	base := strings.TrimRight(*target, "/")
	mem := &procSampler{pid: *pid}
	probe := func(n int, path, key string) probeStats {
		return measureProbes(ctx, n, base+path, key, *probeTimeout, *every)
	}

	mem.sample()
	before := probe(100, "/health", "")
	fmt.Fprintf(stdout, "before: /health %s; server %s\n", before, mem)

	stopSampling := mem.every(250 * time.Millisecond)
	atkCtx, stopAttack := context.WithCancel(ctx)
	a := &attack{addr: u.Host, interval: *interval, reconnect: *reconnect}
	var wg sync.WaitGroup
	opened := make(chan struct{}, *conns)
	for i := range *conns {
		kind := i % 4 // 0, 1: slow headers; 2: slow body to a callback; 3: slow body to the batch enqueue
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.hold(atkCtx, kind, i, opened)
		}()
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond) // no SYN flood: a few thousand a second
		}
	}
	rampEnd := time.After(*ramp)
	for n := 0; n < *conns; n++ {
		select {
		case <-opened:
			continue
		case <-rampEnd:
		case <-ctx.Done():
		}
		break
	}
	fmt.Fprintf(stdout, "attack: %d slow connections requested, %d open now (%d connects, %d closed by the server, %d dial errors)\n",
		*conns, a.open.Load(), a.connects.Load(), a.closedByServer.Load(), a.dialErrors.Load())
	during := probe(*healthN, "/health", "")
	fmt.Fprintf(stdout, "under attack: /health %s\n", during)
	if *apiKey != "" {
		fmt.Fprintf(stdout, "under attack: GET /api/queue/status (API key) %s\n", probe(100, "/api/queue/status", *apiKey))
	}
	stopSampling()
	fmt.Fprintf(stdout, "attack: %d open at the end (%d connects, %d closed by the server, %d dial errors); server %s\n",
		a.open.Load(), a.connects.Load(), a.closedByServer.Load(), a.dialErrors.Load(), mem)
	stopAttack()
	wg.Wait()
	return nil
}

// probeStats are the latencies of sequential probes.
type probeStats struct {
	ok, failed int
	lat        []time.Duration
	firstErr   string
}

func (p probeStats) String() string {
	if len(p.lat) == 0 {
		return fmt.Sprintf("0 answered, %d failed (%s)", p.failed, p.firstErr)
	}
	s := slices.Clone(p.lat)
	slices.Sort(s)
	pct := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	out := fmt.Sprintf("%d answered 200, %d failed; p50 %s, p99 %s, max %s", p.ok, p.failed,
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
	if p.firstErr != "" {
		out += " (first failure: " + p.firstErr + ")"
	}
	return out
}

// measureProbes sends n sequential GETs to target, each on a new connection, every apart.
func measureProbes(ctx context.Context, n int, target, key string, timeout, every time.Duration) probeStats {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var st probeStats
	for i := range n {
		if i > 0 {
			sleepCtx(ctx, every)
		}
		if ctx.Err() != nil {
			break
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			st.failed++
			if st.firstErr == "" {
				st.firstErr = err.Error()
			}
			continue
		}
		st.ok++
		st.lat = append(st.lat, time.Since(start))
	}
	return st
}

// attack holds the slow connections.
type attack struct {
	addr                string
	interval, reconnect time.Duration

	open, connects, closedByServer, dialErrors atomic.Int64
}

// hold keeps one slow connection of the given kind open until ctx ends, opening a new one
// whenever the server closes it. The first successful connect is reported on opened.
func (a *attack) hold(ctx context.Context, kind, i int, opened chan<- struct{}) {
	first := true
	for ctx.Err() == nil {
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", a.addr)
		if err != nil {
			a.dialErrors.Add(1)
			sleepCtx(ctx, time.Second)
			continue
		}
		a.connects.Add(1)
		a.open.Add(1)
		if first {
			first = false
			opened <- struct{}{}
		}
		serverClosed := a.slow(ctx, conn, kind, i)
		_ = conn.Close()
		a.open.Add(-1)
		if serverClosed {
			a.closedByServer.Add(1)
		}
		sleepCtx(ctx, a.reconnect)
	}
}

// slow sends a request slowly on conn until the server answers or closes it (true) or ctx ends.
func (a *attack) slow(ctx context.Context, conn net.Conn, kind, i int) bool {
	var head, step string
	switch kind {
	case 0, 1:
		head, step = "GET /health HTTP/1.1\r\nHost: x\r\n", "X-Slow: 1\r\n"
	case 2:
		head = fmt.Sprintf("POST /api/callback/trun_slow%d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n", i)
		step = "1\r\n \r\n"
	default:
		head = "POST /api/queue/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
		step = "1\r\n \r\n"
	}
	done := make(chan struct{})
	go func() {
		// Any answer or a close ends the slow request.
		_, _ = bufio.NewReader(conn).ReadByte()
		close(done)
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		return true
	}
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			if _, err := io.WriteString(conn, step); err != nil {
				return true
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// procSampler samples a process's resident memory and open descriptors from /proc.
type procSampler struct {
	pid int

	mu                   sync.Mutex
	rss, maxRSS          int64 // kB
	fds, maxFDs, samples int
}

func (p *procSampler) sample() {
	if p.pid == 0 {
		return
	}
	rss, err := vmRSS(p.pid)
	if err != nil {
		return
	}
	fds := -1
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
		fds = len(ents)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rss, p.maxRSS = rss, max(p.maxRSS, rss)
	p.fds, p.maxFDs = fds, max(p.maxFDs, fds)
	p.samples++
}

// every samples every d until the returned function is called.
func (p *procSampler) every(d time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			p.sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (p *procSampler) String() string {
	if p.pid == 0 {
		return "not sampled (no --pid)"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("RSS %.0f MB (max %.0f MB), open descriptors %d (max %d)", float64(p.rss)/1024, float64(p.maxRSS)/1024, p.fds, p.maxFDs)
}

// vmRSS reads the VmRSS of a process, in kB.
func vmRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}
