package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// run feeds go test -json lines to a summary and returns its output and verdict.
func run(t *testing.T, lines ...string) (string, bool) {
	t.Helper()
	var out strings.Builder
	s := newSummary(&out)
	for _, l := range lines {
		s.line([]byte(l))
	}
	ok := s.finish(90*time.Second, 2)
	return out.String(), ok
}

func TestPassingRunListsPackagesAndSlowest(t *testing.T) {
	t.Parallel()
	out, ok := run(t,
		`{"Action":"start","Package":"a"}`,
		`{"Action":"run","Package":"a","Test":"TestA"}`,
		`{"Action":"output","Package":"a","Test":"TestA","Output":"noise\n"}`,
		`{"Action":"pass","Package":"a","Test":"TestA","Elapsed":1}`,
		`{"Action":"pass","Package":"a","Test":"TestB/sub","Elapsed":9}`,
		`{"Action":"pass","Package":"a","Test":"TestB","Elapsed":2}`,
		`{"Action":"pass","Package":"a","Elapsed":3.5}`,
		`{"Action":"output","Package":"b","Output":"?   \tb\t[no test files]\n"}`,
		`{"Action":"pass","Package":"b","Elapsed":0}`,
		`{"Action":"pass","Package":"c","Elapsed":12}`,
		`{"Action":"pass","Package":"d","Elapsed":1}`,
		`{"Action":"output","Package":"e","Output":"?   \te\t[no test files]\n"}`,
		`{"Action":"skip","Package":"e","Elapsed":0}`,
	)
	require.True(t, ok, out)
	require.Contains(t, out, "ok    a ")
	require.NotContains(t, out, "ok    b ", "packages without tests stay out of the stream")
	require.NotContains(t, out, "skip  e ")
	require.Contains(t, out, "packages: 3 passed, 0 failed, 0 skipped, 2 without tests")
	require.Regexp(t, `slowest packages:\n\s+12\.0s  c\n\s+3\.5s  a\n`, out)
	require.Regexp(t, `slowest tests \(parallel tests overlap\):\n\s+2\.0s  a\.TestB\n\s+1\.0s  a\.TestA\n`, out)
	require.Contains(t, out, "wall time: 1m30s")
	require.NotContains(t, out, "noise", "a passing test's output is not shown")
	require.True(t, strings.HasSuffix(out, "PASS\n"))
}

func TestFailingTestOutputIsShownAtTheEnd(t *testing.T) {
	t.Parallel()
	out, ok := run(t,
		`{"Action":"output","Package":"a","Test":"TestBad","Output":"=== RUN   TestBad\n"}`,
		`{"Action":"output","Package":"a","Test":"TestBad/sub","Output":"    bad_test.go:9: expected 1, got 2\n"}`,
		`{"Action":"fail","Package":"a","Test":"TestBad/sub","Elapsed":0}`,
		`{"Action":"output","Package":"a","Test":"TestBad","Output":"--- FAIL: TestBad\n"}`,
		`{"Action":"fail","Package":"a","Test":"TestBad","Elapsed":0}`,
		`{"Action":"fail","Package":"a","Elapsed":2}`,
		`{"Action":"pass","Package":"b","Elapsed":1}`,
	)
	require.False(t, ok)
	require.Contains(t, out, "FAIL  a ")
	require.Contains(t, out, "(2 failing: TestBad/sub, TestBad)")
	failures := out[strings.Index(out, "failures"):]
	require.Contains(t, failures, "--- a TestBad/sub\n    bad_test.go:9: expected 1, got 2\n")
	require.Contains(t, out, "packages: 1 passed, 1 failed")
	require.Contains(t, out, "FAIL a: TestBad/sub, TestBad")
	require.True(t, strings.HasSuffix(out, "FAIL\n"))
}

func TestBuildFailureAndTimeoutAreShown(t *testing.T) {
	t.Parallel()
	out, ok := run(t,
		`{"ImportPath":"a [a.test]","Action":"build-output","Output":"a/x_test.go:3:1: syntax error\n"}`,
		`{"ImportPath":"a [a.test]","Action":"build-fail"}`,
		`{"Action":"fail","Package":"a","Elapsed":0,"FailedBuild":"a [a.test]"}`,
		`{"Action":"output","Package":"b","Test":"TestHang","Output":"waiting for the server\n"}`,
		`{"Action":"output","Package":"b","Output":"panic: test timed out after 1m0s\n"}`,
		`{"Action":"fail","Package":"b","Elapsed":60}`,
		`go: downloading example.com/x v1.0.0`,
	)
	require.False(t, ok)
	require.Contains(t, out, "a/x_test.go:3:1: syntax error")
	require.Contains(t, out, "--- b TestHang (still running)\nwaiting for the server\n")
	require.Contains(t, out, "go: downloading example.com/x v1.0.0")
}

func TestEmptyInputFails(t *testing.T) {
	t.Parallel()
	_, ok := run(t)
	require.False(t, ok, "no package result at all is not a pass")
}
