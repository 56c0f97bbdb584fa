// Package wiretest pins the JSON on the wire to literal fixtures (testdata/wire/*.json of the
// calling test's package), compared as JSON, so that a renamed or dropped field fails a test:
// the fixture is the contract, not the structs that encode and decode it.
//
// Values that change from run to run are normalised before the comparison: each value given
// in a substitution map (run ids, URLs) is replaced by its placeholder wherever it occurs, and
// the value of every volatile field (tokens, timestamps) by "<field>". Fixtures of requests
// are read back with the placeholders replaced by real values, so the bytes sent are the
// fixture's.
//
// go test -run Wire ./core ./worker -args -update-wire rewrites the fixtures from what the
// tests see; review the diff before committing it.
package wiretest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update-wire", false, "rewrite the testdata/wire fixtures from the JSON the tests see")

// Volatile are the fields whose values change from run to run; a non-empty value becomes
// "<field>".
var Volatile = []string{"storageToken", "timestamp", "createdAt", "updatedAt", "startedAt", "completedAt",
	"failedAt", "recordedAt", "availableAt", "scheduledAt", "durationMs"}

// Subst maps a value seen on the wire to its placeholder in the fixtures, e.g. a run id to
// "<runId>".
type Subst map[string]string

// Normalise replaces, in raw, every value of subst by its placeholder (longest values first)
// and the value of every volatile field by "<field>", and returns the result as indented JSON.
func Normalise(raw []byte, subst Subst) ([]byte, error) {
	s := string(raw)
	for _, v := range slices.SortedFunc(func(yield func(string) bool) {
		for k := range subst {
			if !yield(k) {
				return
			}
		}
	}, func(a, b string) int { return len(b) - len(a) }) {
		if v != "" {
			s = strings.ReplaceAll(s, v, subst[v])
		}
	}
	var doc any
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return nil, err
	}
	mask(doc)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mask replaces the non-empty values of volatile fields, at any depth.
func mask(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if str, ok := val.(string); ok && str != "" && slices.Contains(Volatile, k) {
				x[k] = "<" + k + ">"
				continue
			}
			mask(val)
		}
	case []any:
		for _, val := range x {
			mask(val)
		}
	}
}

// Require fails t unless raw, normalised with subst, equals the fixture testdata/wire/name as
// JSON. With -update-wire it writes the fixture instead.
func Require(t testing.TB, name string, raw []byte, subst Subst) {
	t.Helper()
	got, err := Normalise(raw, subst)
	require.NoError(t, err, "%s: not JSON: %s", name, raw)
	path := filepath.Join("testdata", "wire", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got), "%s: the JSON on the wire differs from the fixture", name)
}

// Body reads the fixture testdata/wire/name with each placeholder of subst replaced by its
// value: the literal bytes of a request to send.
func Body(t testing.TB, name string, subst Subst) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "wire", name))
	require.NoError(t, err)
	s := string(raw)
	for v, placeholder := range subst {
		s = strings.ReplaceAll(s, placeholder, v)
	}
	return []byte(s)
}
