// Package local is the storage driver of provider "local": objects are files
// under a base directory (credentials.basePath). Importing it registers the
// provider with package storage:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/local"
package local

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

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
)

func init() {
	storage.Register(storage.ProviderLocal, func(_ context.Context, cfg storage.Config) (driver.Backend, error) {
		return newDriver(cfg.Credential("basePath"))
	})
}

// tempPrefix starts the names of the temporary files Put writes next to their
// final place. Keys with a segment starting with it are refused.
const tempPrefix = ".pipeweave-tmp-"

// maxSegment is the longest file name most file systems accept (NAME_MAX).
const maxSegment = 255

// errNotObject is the failure of an operation on a directory: directories are
// not objects.
var errNotObject = fmt.Errorf("a directory is not an object: %w", fs.ErrNotExist)

// New returns a backend keeping objects as files under basePath: key
// "runs/r1/output.json" is the file <basePath>/runs/r1/output.json. It
// creates the directory (and its parents, mode 0o755) if needed; a relative
// basePath is resolved against the current directory now.
//
// Writes go to a temporary file in the same directory that is then renamed
// into place, so readers never see a partial object. The backend does not
// record PutOptions.ContentType; Stat derives the type from the key and the
// content. Because keys are file paths, a key cannot be both an object and a
// prefix of another object ("a" and "a/b"); Put of such a key fails. Several
// processes may share the directory.
func New(basePath string) (*storage.Backend, error) {
	d, err := newDriver(basePath)
	if err != nil {
		return nil, err
	}
	return storage.NewBackend(storage.ProviderLocal, d), nil
}

// localDriver is the driver behind [New].
type localDriver struct {
	base string
}

var _ driver.Backend = (*localDriver)(nil)

func newDriver(basePath string) (*localDriver, error) {
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
	return &localDriver{base: abs}, nil
}

// KeyProblem implements [driver.Backend.KeyProblem]: segments longer than a
// file name may be, segments starting with the temporary files' prefix and
// keys that are not local file names on this system are refused.
func (l *localDriver) KeyProblem(key string) string {
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxSegment {
			return fmt.Sprintf("a segment is %d bytes long, the local backend's limit is %d", len(seg), maxSegment)
		}
		if strings.HasPrefix(seg, tempPrefix) {
			return fmt.Sprintf("segments starting with %q are reserved by the local backend", tempPrefix)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return "not a local file name on this system"
	}
	return ""
}

// path returns the file path of key, which passed KeyProblem: lexically under
// the base directory.
func (l *localDriver) path(key string) string {
	return filepath.Join(l.base, filepath.FromSlash(key))
}

// IsNotFound implements [driver.Backend.IsNotFound]: no file at the path
// (including a path through a regular file, "a/b" where "a" is a file), or a
// directory.
func (l *localDriver) IsNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Get implements [driver.Backend.Get]. A directory is not an object.
func (l *localDriver) Get(_ context.Context, key string) (io.ReadCloser, error) {
	f, err := l.openRegular(key)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// openRegular opens the regular file of key.
func (l *localDriver) openRegular(key string) (*os.File, error) {
	f, err := os.Open(l.path(key))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotObject
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// Put implements [driver.Backend.Put]: it writes r to a temporary file (mode
// 0o644) in the key's directory, creating directories (0o755) as needed, syncs
// it and renames it over the key. The content type is not recorded.
func (l *localDriver) Put(ctx context.Context, key string, r io.Reader, _ string) (err error) {
	p := l.path(key)
	dir := filepath.Dir(p)
	// Most keys put a new object in a new directory (runs/{runId}/…): one mkdir, no stats.
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	tmp, err := createTemp(dir)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, driver.ContextReader(ctx, r)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("before rename: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("rename into place: %w", err)
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
		f, err := os.OpenFile(filepath.Join(dir, tempPrefix+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, errors.New("could not find a free temporary name")
}

// Stat implements [driver.Backend.Stat]. The content type comes from the key's
// extension or, failing that, from the first 512 bytes of the file.
func (l *localDriver) Stat(_ context.Context, key string) (driver.Attributes, error) {
	f, err := l.openRegular(key)
	if err != nil {
		return driver.Attributes{}, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return driver.Attributes{}, err
	}
	head := make([]byte, driver.SniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return driver.Attributes{}, fmt.Errorf("read head: %w", err)
	}
	return driver.Attributes{
		Size:        fi.Size(),
		ContentType: driver.DetectContentType(key, head[:n]),
		ModTime:     fi.ModTime(),
	}, nil
}

// Delete implements [driver.Backend.Delete]. It removes the file and leaves
// its (possibly now empty) directories in place. A directory is not an object.
func (l *localDriver) Delete(_ context.Context, key string) error {
	p := l.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errNotObject
	}
	return os.Remove(p)
}

// Close implements [driver.Backend.Close]; the local driver holds nothing.
func (l *localDriver) Close() error { return nil }
