package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// localTempPrefix starts the names of the temporary files [Local.Put] writes
// next to their final place. Keys with a segment starting with it are refused.
const localTempPrefix = ".pipeweave-tmp-"

// Local keeps objects as files under a base directory: key "runs/r1/output.json"
// is the file <base>/runs/r1/output.json. Writes go to a temporary file in the
// same directory that is then renamed into place, so readers never see a
// partial object. Local does not record PutOptions.ContentType; [Local.Stat]
// derives the type from the key and the content.
//
// Because keys are file paths, a key cannot be both an object and a prefix of
// another object ("a" and "a/b"); Put of such a key fails. Local is safe for
// concurrent use, including by several processes sharing the directory.
type Local struct {
	base string
}

var _ Backend = (*Local)(nil)

// NewLocal returns a Local backend rooted at basePath, creating the directory
// (and its parents, mode 0o755) if needed. A relative basePath is resolved
// against the current directory now.
func NewLocal(basePath string) (*Local, error) {
	if strings.TrimSpace(basePath) == "" {
		return nil, errors.New("storage: local: base path is empty")
	}
	abs, err := filepath.Abs(basePath)
	if err != nil {
		return nil, fmt.Errorf("storage: local: resolve base path %q: %w", basePath, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("storage: local: create base directory: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("storage: local: base directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("storage: local: base path %q is not a directory", abs)
	}
	return &Local{base: abs}, nil
}

// BasePath returns the absolute directory holding the objects.
func (l *Local) BasePath() string { return l.base }

// localMaxSegment is the longest file name most file systems accept (NAME_MAX).
const localMaxSegment = 255

// path validates key and returns its file path, which is lexically under the
// base directory.
func (l *Local) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > localMaxSegment {
			return "", fmt.Errorf("%w %q: a segment is %d bytes long, the local backend's limit is %d", ErrInvalidKey, key, len(seg), localMaxSegment)
		}
		if strings.HasPrefix(seg, localTempPrefix) {
			return "", fmt.Errorf("%w %q: segments starting with %q are reserved by the local backend", ErrInvalidKey, key, localTempPrefix)
		}
	}
	rel := filepath.FromSlash(key)
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w %q: not a local file name on this system", ErrInvalidKey, key)
	}
	p := filepath.Join(l.base, rel)
	if r, err := filepath.Rel(l.base, p); err != nil || !filepath.IsLocal(r) {
		return "", fmt.Errorf("%w %q: escapes the base directory", ErrInvalidKey, key)
	}
	return p, nil
}

// begin checks ctx and key, the common start of every method.
func (l *Local) begin(ctx context.Context, op, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("storage: local %s %q: %w", op, key, err)
	}
	p, err := l.path(key)
	if err != nil {
		return "", fmt.Errorf("storage: local %s: %w", op, err)
	}
	return p, nil
}

// notFound reports whether err means there is no file at the path (including
// a path through a regular file, "a/b" where "a" is a file).
func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Get implements [Backend.Get]. A directory is not an object: Get of one
// returns ErrNotFound.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.begin(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("storage: local get %q: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("storage: local get %q: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("storage: local get %q: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("storage: local get %q: %w", key, ErrNotFound)
	}
	return &localReader{ctx: ctx, f: f}, nil
}

// localReader is the reader Get returns; reads fail once ctx is done.
type localReader struct {
	ctx context.Context
	f   *os.File
}

// Read implements io.Reader.
func (r *localReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

// Close implements io.Closer.
func (r *localReader) Close() error { return r.f.Close() }

// Put implements [Backend.Put]: it writes r to a temporary file (mode 0o644)
// in the key's directory, creating directories (0o755) as needed, syncs it and
// renames it over the key.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, _ PutOptions) (err error) {
	p, err := l.begin(ctx, "put", key)
	if err != nil {
		return err
	}
	fail := func(step string, err error) error {
		return fmt.Errorf("storage: local put %q: %s: %w", key, step, err)
	}
	dir := filepath.Dir(p)
	// Most keys put a new object in a new directory (runs/{runId}/…): one mkdir, no stats.
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail("create directory", err)
		}
	}
	tmp, err := createTemp(dir)
	if err != nil {
		return fail("create temporary file", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx: ctx, r: r}); err != nil {
		return fail("write", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fail("chmod", err)
	}
	if err := tmp.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := tmp.Close(); err != nil {
		return fail("close", err)
	}
	if err := ctx.Err(); err != nil {
		return fail("before rename", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fail("rename into place", err)
	}
	return nil
}

// createTemp creates a new temporary file in dir.
func createTemp(dir string) (*os.File, error) {
	var b [12]byte
	for range 10 {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, localTempPrefix+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, errors.New("could not find a free temporary name")
}

// Stat implements [Backend.Stat]. The content type comes from the key's
// extension or, failing that, from the first 512 bytes of the file.
func (l *Local) Stat(ctx context.Context, key string) (Attributes, error) {
	p, err := l.begin(ctx, "stat", key)
	if err != nil {
		return Attributes{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		if notFound(err) {
			return Attributes{}, fmt.Errorf("storage: local stat %q: %w", key, ErrNotFound)
		}
		return Attributes{}, fmt.Errorf("storage: local stat %q: %w", key, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return Attributes{}, fmt.Errorf("storage: local stat %q: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Attributes{}, fmt.Errorf("storage: local stat %q: %w", key, ErrNotFound)
	}
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return Attributes{}, fmt.Errorf("storage: local stat %q: read head: %w", key, err)
	}
	return Attributes{
		Size:        fi.Size(),
		ContentType: detectContentType(key, head[:n]),
		ModTime:     fi.ModTime(),
	}, nil
}

// Delete implements [Backend.Delete]. It removes the file and leaves its
// (possibly now empty) directories in place. A directory is not an object:
// Delete of one returns ErrNotFound.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.begin(ctx, "delete", key)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if notFound(err) {
			return fmt.Errorf("storage: local delete %q: %w", key, ErrNotFound)
		}
		return fmt.Errorf("storage: local delete %q: %w", key, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("storage: local delete %q: %w", key, ErrNotFound)
	}
	if err := os.Remove(p); err != nil {
		if notFound(err) {
			return fmt.Errorf("storage: local delete %q: %w", key, ErrNotFound)
		}
		return fmt.Errorf("storage: local delete %q: %w", key, err)
	}
	return nil
}
