// Command testsummary reads `go test -json` output on stdin and keeps a person informed: one
// line per package as it finishes (ok, FAIL or skip, with its time), then a summary with the
// packages passed and failed, the five slowest packages and tests and the total wall time. The output of
// every failing test (and of a package that failed outside any test, e.g. a build error or a
// panic) is printed again at the end, so it is not buried in thousands of lines.
//
// It exits 1 when any package or test failed, or when the input has no result at all, so that
// `go test -json ./... | go run ./internal/testsummary` fails like `go test` does.
//
// Usage: go test -json ./... | go run ./internal/testsummary [-slowest N]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action      string
	Package     string
	ImportPath  string // build-output events name the package being built here
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string // set on a package's fail when it did not compile
}

// pkgState collects what is known about one package while its events arrive.
type pkgState struct {
	name     string
	result   string // pass, fail, skip ("" while running)
	elapsed  time.Duration
	output   strings.Builder             // package-level output (no Test)
	tests    map[string]*strings.Builder // per-test output, dropped when the test passes
	failed   []string                    // failing tests, in the order they finished
	failOuts map[string]string
}

// summary is the state of the whole run.
type summary struct {
	out      io.Writer
	pkgs     map[string]*pkgState
	finished []*pkgState
	build    map[string]*strings.Builder // compiler output by import path
	tests    []testTime                  // finished top-level tests, for the slowest list
}

// testTime is how long one top-level test ran (parallel tests overlap, so these do not add up).
type testTime struct {
	name    string
	elapsed time.Duration
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, pkgs: map[string]*pkgState{}, build: map[string]*strings.Builder{}}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{name: name, tests: map[string]*strings.Builder{}, failOuts: map[string]string{}}
		s.pkgs[name] = p
	}
	return p
}

// line handles one input line.
func (s *summary) line(raw []byte) {
	var e event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
		// Not an event (e.g. `go: downloading …` on the same stream): pass it through.
		fmt.Fprintf(s.out, "%s\n", raw)
		return
	}
	if e.Action == "build-output" || e.Action == "build-fail" {
		b := s.build[e.ImportPath]
		if b == nil {
			b = &strings.Builder{}
			s.build[e.ImportPath] = b
		}
		b.WriteString(e.Output)
		return
	}
	if e.Package == "" {
		return
	}
	p := s.pkg(e.Package)
	if e.Test != "" {
		b := p.tests[e.Test]
		if b == nil {
			b = &strings.Builder{}
			p.tests[e.Test] = b
		}
		if (e.Action == "pass" || e.Action == "fail") && !strings.Contains(e.Test, "/") {
			s.tests = append(s.tests, testTime{e.Package + "." + e.Test, time.Duration(e.Elapsed * float64(time.Second))})
		}
		switch e.Action {
		case "output":
			b.WriteString(e.Output)
		case "fail":
			p.failed = append(p.failed, e.Test)
			p.failOuts[e.Test] = b.String()
			delete(p.tests, e.Test)
		case "pass", "skip":
			delete(p.tests, e.Test)
		}
		return
	}
	switch e.Action {
	case "output":
		p.output.WriteString(e.Output)
	case "pass", "fail", "skip":
		p.result = e.Action
		if e.FailedBuild != "" {
			if b := s.build[e.FailedBuild]; b != nil {
				p.output.WriteString(b.String())
			}
		}
		p.elapsed = time.Duration(e.Elapsed * float64(time.Second))
		s.finished = append(s.finished, p)
		s.report(p)
	}
}

// report prints the one line for a finished package.
func (s *summary) report(p *pkgState) {
	if p.result != "fail" && noTestFiles(p) {
		return // keep the stream to packages that test something
	}
	switch p.result {
	case "pass":
		fmt.Fprintf(s.out, "ok    %-55s %7.1fs\n", p.name, p.elapsed.Seconds())
	case "skip":
		fmt.Fprintf(s.out, "skip  %-55s %7.1fs\n", p.name, p.elapsed.Seconds())
	case "fail":
		n := ""
		if len(p.failed) > 0 {
			n = fmt.Sprintf("  (%d failing: %s)", len(p.failed), strings.Join(first(p.failed, 3), ", "))
		}
		fmt.Fprintf(s.out, "FAIL  %-55s %7.1fs%s\n", p.name, p.elapsed.Seconds(), n)
	}
}

// noTestFiles reports whether go test said the package has no test files (reported as a pass
// or, by newer Go versions, a skip).
func noTestFiles(p *pkgState) bool {
	return strings.Contains(p.output.String(), "[no test files]")
}

func first(xs []string, n int) []string {
	if len(xs) <= n {
		return xs
	}
	return append(append([]string{}, xs[:n]...), "…")
}

// finish prints the summary and reports whether everything passed.
func (s *summary) finish(wall time.Duration, slowest int) bool {
	var passed, failed, skipped, noTests int
	var failures []*pkgState
	for _, p := range s.finished {
		switch {
		case p.result == "fail":
			failed++
			failures = append(failures, p)
		case noTestFiles(p):
			noTests++
		case p.result == "skip":
			skipped++
		default:
			passed++
		}
	}
	// Packages that started but never reported (the run was killed, or a timeout panic).
	var unfinished []string
	for name, p := range s.pkgs {
		if p.result == "" {
			unfinished = append(unfinished, name)
		}
	}
	sort.Strings(unfinished)

	w := s.out
	if len(failures) > 0 {
		fmt.Fprintf(w, "\n==================== failures ====================\n")
		for _, p := range failures {
			for _, t := range p.failed {
				fmt.Fprintf(w, "\n--- %s %s\n%s", p.name, t, p.failOuts[t])
			}
			if len(p.failed) == 0 || strings.Contains(p.output.String(), "panic:") {
				fmt.Fprintf(w, "\n--- %s (package output)\n%s", p.name, p.output.String())
				// A timeout or panic ends the binary while tests run: show what they printed.
				names := make([]string, 0, len(p.tests))
				for t := range p.tests {
					names = append(names, t)
				}
				sort.Strings(names)
				for _, t := range names {
					fmt.Fprintf(w, "\n--- %s %s (still running)\n%s", p.name, t, p.tests[t].String())
				}
			}
		}
	}

	byTime := append([]*pkgState{}, s.finished...)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].elapsed > byTime[j].elapsed })
	fmt.Fprintf(w, "\n==================== summary ====================\n")
	fmt.Fprintf(w, "packages: %d passed, %d failed, %d skipped, %d without tests\n", passed, failed, skipped, noTests)
	if len(unfinished) > 0 {
		fmt.Fprintf(w, "never finished: %s\n", strings.Join(unfinished, ", "))
	}
	if n := min(slowest, len(byTime)); n > 0 {
		fmt.Fprintf(w, "slowest packages:\n")
		for _, p := range byTime[:n] {
			fmt.Fprintf(w, "  %7.1fs  %s\n", p.elapsed.Seconds(), p.name)
		}
	}
	if n := min(slowest, len(s.tests)); n > 0 {
		tests := append([]testTime{}, s.tests...)
		sort.SliceStable(tests, func(i, j int) bool { return tests[i].elapsed > tests[j].elapsed })
		fmt.Fprintf(w, "slowest tests (parallel tests overlap):\n")
		for _, t := range tests[:n] {
			fmt.Fprintf(w, "  %7.1fs  %s\n", t.elapsed.Seconds(), t.name)
		}
	}
	for _, p := range failures {
		fmt.Fprintf(w, "FAIL %s: %s\n", p.name, strings.Join(p.failed, ", "))
	}
	fmt.Fprintf(w, "wall time: %s\n", wall.Round(time.Second))
	ok := failed == 0 && len(unfinished) == 0 && len(s.finished) > 0
	if ok {
		fmt.Fprintf(w, "PASS\n")
	} else {
		fmt.Fprintf(w, "FAIL\n")
	}
	return ok
}

func main() {
	slowest := flag.Int("slowest", 5, "how many of the slowest packages (and tests) to list")
	flag.Parse()
	start := time.Now()
	s := newSummary(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		s.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: reading go test -json: %v\n", err)
	}
	if !s.finish(time.Since(start), *slowest) {
		os.Exit(1)
	}
}
