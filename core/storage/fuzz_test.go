package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzKey feeds arbitrary keys to ValidateKey and to the local backend's path
// resolution. Properties: no panic; a refusal wraps ErrInvalidKey; a key that passes
// ValidateKey has none of the refused forms and, unless it uses the local backend's
// reserved temp prefix, resolves to a path strictly inside the base directory (never
// the base itself, never outside it). Without -fuzz the seeds run as a normal test.
func FuzzKey(f *testing.F) {
	for _, k := range []string{
		"a", "input.json", "pipelines/01HZX/input.json", "runs/r1/assets/report.final.pdf",
		".hidden", "..a/a..", "a/...", "ünïcødé/名前 with spaces", strings.Repeat("k", MaxKeyLength),
		"", "/", "a/", "./a", "a/.", "..", "a/..", "../etc/passwd", "a/../../b", "a/b/../../..",
		"a\\..\\b", "..\\x", "C:\\x", "C:x", "c:/x", "//server/share", "a\x00b", "\x00", "\xff\xfe",
		"a\tb", "a\u0085b", "a\u2028b", "a/\u202e/b", "...", "....//x", "a//b",
		strings.Repeat("k", MaxKeyLength+1), strings.Repeat("a/", 600), strings.Repeat("../", 300),
		localTempPrefix + "x", "a/" + localTempPrefix, "~", "~/x", "$HOME/x", "con", "nul.txt", "aux/x",
	} {
		f.Add(k)
	}
	base := f.TempDir()
	l, err := NewLocal(base)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		verr := ValidateKey(key)
		p, perr := l.path(key)
		if verr != nil {
			if !errors.Is(verr, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not wrapping ErrInvalidKey", key, verr)
			}
			if perr == nil {
				t.Fatalf("local path(%q) accepted a key ValidateKey refused (%v)", key, verr)
			}
			return
		}
		// Accepted: re-check the documented refusals independently.
		if key == "" || len(key) > MaxKeyLength || !utf8.ValidString(key) || strings.HasPrefix(key, "/") ||
			strings.ContainsAny(key, "\\\x00") {
			t.Fatalf("ValidateKey accepted %q", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ValidateKey accepted %q with segment %q", key, seg)
			}
		}
		if perr != nil {
			if !errors.Is(perr, ErrInvalidKey) {
				t.Fatalf("local path(%q) = %v, not wrapping ErrInvalidKey", key, perr)
			}
			longSegment := false
			for _, seg := range strings.Split(key, "/") {
				longSegment = longSegment || len(seg) > localMaxSegment
			}
			if !strings.Contains(key, localTempPrefix) && !longSegment {
				t.Fatalf("local path refused a valid key %q without the temp prefix or an over-long segment: %v", key, perr)
			}
			return
		}
		rel, err := filepath.Rel(base, p)
		if err != nil || rel == "." || !filepath.IsLocal(rel) || !strings.HasPrefix(p, base+string(os.PathSeparator)) {
			t.Fatalf("key %q resolves to %q, outside base %q (rel %q, %v)", key, p, base, rel, err)
		}
		if filepath.ToSlash(rel) != key {
			t.Fatalf("key %q resolves to %q, not to the same relative path", key, rel)
		}
		// The backend's entry point gives the same answer.
		if bp, err := l.begin(context.Background(), "get", key); err != nil || bp != p {
			t.Fatalf("begin(%q) = %q, %v; path gave %q", key, bp, err, p)
		}
	})
}
