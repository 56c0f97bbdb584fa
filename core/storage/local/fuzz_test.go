package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

// FuzzKey feeds arbitrary keys to storage.ValidateKey and to the local driver's key
// check and path resolution. Properties: no panic; a refusal wraps ErrInvalidKey; a key
// that passes ValidateKey has none of the refused forms and, unless it uses the local
// backend's reserved temp prefix or an over-long segment, resolves to a path strictly
// inside the base directory (never the base itself, never outside it), and the backend
// accepts it. Without -fuzz the seeds run as a normal test.
func FuzzKey(f *testing.F) {
	for _, k := range []string{
		"a", "input.json", "pipelines/01HZX/input.json", "runs/r1/assets/report.final.pdf",
		".hidden", "..a/a..", "a/...", "ünïcødé/名前 with spaces", strings.Repeat("k", storage.MaxKeyLength),
		"", "/", "a/", "./a", "a/.", "..", "a/..", "../etc/passwd", "a/../../b", "a/b/../../..",
		"a\\..\\b", "..\\x", "C:\\x", "C:x", "c:/x", "//server/share", "a\x00b", "\x00", "\xff\xfe",
		"a\tb", "a\u0085b", "a\u2028b", "a/\u202e/b", "...", "....//x", "a//b",
		strings.Repeat("k", storage.MaxKeyLength+1), strings.Repeat("a/", 600), strings.Repeat("../", 300),
		tempPrefix + "x", "a/" + tempPrefix, "~", "~/x", "$HOME/x", "con", "nul.txt", "aux/x",
	} {
		f.Add(k)
	}
	base := f.TempDir()
	l, err := newDriver(base)
	if err != nil {
		f.Fatal(err)
	}
	b := storage.NewBackend(storage.ProviderLocal, l)
	f.Fuzz(func(t *testing.T, key string) {
		verr := storage.ValidateKey(key)
		_, serr := b.Stat(context.Background(), key)
		if verr != nil {
			if !errors.Is(verr, storage.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not wrapping ErrInvalidKey", key, verr)
			}
			if !errors.Is(serr, storage.ErrInvalidKey) {
				t.Fatalf("the backend accepted a key ValidateKey refused: Stat(%q) = %v", key, serr)
			}
			return
		}
		// Accepted: re-check the documented refusals independently.
		if key == "" || len(key) > storage.MaxKeyLength || !utf8.ValidString(key) || strings.HasPrefix(key, "/") ||
			strings.ContainsAny(key, "\\\x00") {
			t.Fatalf("ValidateKey accepted %q", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ValidateKey accepted %q with segment %q", key, seg)
			}
		}
		if problem := l.KeyProblem(key); problem != "" {
			if !errors.Is(serr, storage.ErrInvalidKey) {
				t.Fatalf("Stat(%q) = %v, not wrapping ErrInvalidKey though the driver refuses it (%s)", key, serr, problem)
			}
			longSegment := false
			for _, seg := range strings.Split(key, "/") {
				longSegment = longSegment || len(seg) > maxSegment
			}
			if !strings.Contains(key, tempPrefix) && !longSegment {
				t.Fatalf("the local driver refused a valid key %q without the temp prefix or an over-long segment: %s", key, problem)
			}
			return
		}
		p := l.path(key)
		rel, err := filepath.Rel(base, p)
		if err != nil || rel == "." || !filepath.IsLocal(rel) || !strings.HasPrefix(p, base+string(os.PathSeparator)) {
			t.Fatalf("key %q resolves to %q, outside base %q (rel %q, %v)", key, p, base, rel, err)
		}
		if filepath.ToSlash(rel) != key {
			t.Fatalf("key %q resolves to %q, not to the same relative path", key, rel)
		}
		// The backend accepts the key: nothing is stored under it.
		if !errors.Is(serr, storage.ErrNotFound) {
			t.Fatalf("Stat(%q) of an accepted key = %v, want ErrNotFound", key, serr)
		}
	})
}

func TestRelativeBaseIsMadeAbsolute(t *testing.T) {
	t.Parallel()
	l, err := newDriver(filepath.Join(t.TempDir(), ".", "x", "..", "y"))
	require.NoError(t, err)
	require.True(t, filepath.IsAbs(l.base))
	require.Equal(t, "y", filepath.Base(l.base))
}
