package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
)

// Asset types recorded with assets.
const (
	AssetJSON   = "json"
	AssetText   = "text"
	AssetBinary = "binary"
)

// ErrAssetNotFound is wrapped by GetAsset and GetAssetPath when no completed predecessor
// produced the asset.
var ErrAssetNotFound = errors.New("worker: asset not found")

// Context is what a Handler gets: the attempt's context.Context (done when the orchestrator
// cancels the run, when Options.Timeout passes, or at a forced shutdown), the attempt's
// metadata and its hydrated input, and the methods to produce assets, read upstream assets,
// report progress and log. Its methods are safe for concurrent use.
type Context struct {
	context.Context

	// RunID is the task run's id ("trun_…").
	RunID string
	// TaskID is the task's id.
	TaskID string
	// PipelineRunID is the pipeline run's id, or empty for a standalone run.
	PipelineRunID string
	// Attempt is the attempt number, from 1.
	Attempt int
	// CodeVersion is the task's code version the run was scheduled with.
	CodeVersion int
	// CodeHash is the code hash of that version.
	CodeHash string
	// Input is the run's input (JSON; "null" when there was none).
	Input json.RawMessage
	// Upstream holds the completed predecessors of a pipeline task, by task id.
	Upstream map[string]Upstream
	// PreviousAttempts are the attempts of this run that failed before this one.
	PreviousAttempts []protocol.Attempt

	r *runEnv
}

// Upstream is the result of a completed predecessor.
type Upstream struct {
	// Output is the predecessor's output (JSON), loaded before the handler starts.
	Output json.RawMessage
	// OutputPath is where the output is stored.
	OutputPath string
	// Assets are the predecessor's assets by key; read them with Context.GetAsset or
	// Context.GetAssetPath.
	Assets map[string]protocol.Asset
}

// Decode decodes the predecessor's output into v.
func (u Upstream) Decode(v any) error {
	if err := json.Unmarshal(u.Output, v); err != nil {
		return fmt.Errorf("worker: decode upstream output: %w", err)
	}
	return nil
}

// runEnv is the machinery behind a Context: its directory, storage, assets and logs.
//
// The attempt's temporary directory is made when first needed (TempDir, an asset, a
// downloaded asset, a first log line): most tasks need none, and making and removing a
// directory per attempt cost a no-op worker most of its time.
type runEnv struct {
	parent, prefix string           // where the directory is made, and its name's prefix
	backend        *storage.Backend // nil for RunLocal
	local          map[string]map[string][]byte
	logger         *slog.Logger // writes to logs.jsonl (once there is a line) and to the worker's logger
	logs           *lazyLog

	dirMu sync.Mutex
	dir   string // the attempt's temporary directory, "" until made
	// progress reports progress (nil: only logged).
	progress func(ctx context.Context, percent int, message string) error

	mu      sync.Mutex
	assets  map[string]producedAsset
	fetched map[string]string       // "task\x00key" → local path
	spawn   []protocol.SpawnRequest // Spawn's entries, sent with the success callback
}

// producedAsset is an asset the handler added, waiting in the temporary directory.
type producedAsset struct {
	file string
	typ  string
	size int64
}

// Subdirectories and files of an attempt's temporary directory.
const (
	workDir     = "work"
	assetsDir   = "assets"
	upstreamDir = "upstream"
	logsFile    = "logs.jsonl"
)

// newRunEnv prepares the attempt's environment; its temporary directory under parent is made
// when first needed.
func newRunEnv(parent, prefix string, log *slog.Logger) *runEnv {
	r := &runEnv{
		parent:  parent,
		prefix:  prefix,
		assets:  map[string]producedAsset{},
		fetched: map[string]string{},
	}
	r.logs = &lazyLog{env: r}
	file := slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	r.logger = slog.New(teeHandler{file, log.Handler()})
	return r
}

// ensureDir makes the attempt's temporary directory, once, and returns it with sub (one of
// workDir, assetsDir, upstreamDir; "" for the directory itself) made inside it.
func (r *runEnv) ensureDir(sub string) (string, error) {
	r.dirMu.Lock()
	defer r.dirMu.Unlock()
	if r.dir == "" {
		dir, err := os.MkdirTemp(r.parent, r.prefix)
		if err != nil {
			return "", fmt.Errorf("create the attempt's temporary directory: %w", err)
		}
		r.dir = dir
	}
	if sub == "" {
		return r.dir, nil
	}
	path := filepath.Join(r.dir, sub)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return "", fmt.Errorf("create the attempt's temporary directory: %w", err)
	}
	return path, nil
}

// madeDir is the attempt's temporary directory, "" if it was never made.
func (r *runEnv) madeDir() string {
	r.dirMu.Lock()
	defer r.dirMu.Unlock()
	return r.dir
}

// close closes the log file (idempotent).
func (r *runEnv) close() { r.logs.close() }

// readLogs returns what the attempt logged to its file (nothing if it logged nothing).
func (r *runEnv) readLogs() ([]byte, error) {
	dir := r.madeDir()
	if dir == "" {
		return nil, nil
	}
	logs, err := os.ReadFile(filepath.Join(dir, logsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return logs, err
}

// lazyLog is the attempt's logs.jsonl, made with the directory at the first line.
type lazyLog struct {
	env    *runEnv
	mu     sync.Mutex
	f      *os.File
	closed bool
}

// Write appends p to the file, making it first if need be.
func (l *lazyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if l.f == nil {
		dir, err := l.env.ensureDir("")
		if err != nil {
			return 0, err
		}
		if l.f, err = os.OpenFile(filepath.Join(dir, logsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return 0, fmt.Errorf("create the attempt's log file: %w", err)
		}
	}
	return l.f.Write(p)
}

// close closes the file, if any; lines logged later reach only the worker's logger
// (idempotent).
func (l *lazyLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// Decode decodes the run's input into v.
func (c *Context) Decode(v any) error {
	if err := json.Unmarshal(c.Input, v); err != nil {
		return fmt.Errorf("worker: decode input of run %s: %w", c.RunID, err)
	}
	return nil
}

// TempDir returns a scratch directory of the attempt, removed when the attempt ends, made at
// the first call. Files made there can become assets with AddAssetFromPath. Should the
// directory not be made, the error is logged and a path that does not exist is returned: the
// handler's first use of it fails.
func (c *Context) TempDir() string {
	dir, err := c.r.ensureDir(workDir)
	if err != nil {
		c.Logger().Error("worker: no temporary directory for the attempt", "err", err)
		return filepath.Join(c.r.parent, c.r.prefix+"unmade", workDir)
	}
	return dir
}

// Logger returns the attempt's logger: its records go to the run's logs (uploaded with a
// successful attempt to runs/{runId}/logs.jsonl) and to the worker's logger.
func (c *Context) Logger() *slog.Logger { return c.r.logger }

// Log appends an info line with msg and the key-value pairs args (as for slog) to the run's
// logs and to the worker's logger.
func (c *Context) Log(msg string, args ...any) {
	c.r.logger.InfoContext(c, msg, args...)
}

// Progress reports progress (0 to 100) and a message to the orchestrator at once; it also
// counts as a heartbeat. If the orchestrator answers that the run was cancelled, the
// context ends.
func (c *Context) Progress(percent int, message string) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("worker: progress %d is not between 0 and 100", percent)
	}
	if c.r.progress == nil {
		c.r.logger.DebugContext(c, "progress", "percent", percent, "message", message)
		return nil
	}
	if err := c.r.progress(c, percent, message); err != nil {
		return fmt.Errorf("worker: report progress of run %s: %w", c.RunID, err)
	}
	return nil
}

// AddAsset makes data an asset of this task under key, with type typ (AssetJSON, AssetText,
// AssetBinary or any other label; empty means AssetBinary). The asset waits in the attempt's
// temporary directory and is uploaded to runs/{runId}/assets/{key} only if the attempt
// succeeds. Keys follow the task id pattern; adding a key again replaces the asset.
func (c *Context) AddAsset(key string, data []byte, typ string) error {
	if err := validAssetKey(key); err != nil {
		return err
	}
	if typ == "" {
		typ = AssetBinary
	}
	dir, err := c.r.ensureDir(assetsDir)
	if err != nil {
		return fmt.Errorf("worker: add asset %q: %w", key, err)
	}
	dst := filepath.Join(dir, key)
	if err := writeFileAtomic(dst, data); err != nil {
		return fmt.Errorf("worker: add asset %q: %w", key, err)
	}
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.assets[key] = producedAsset{file: dst, typ: typ, size: int64(len(data))}
	return nil
}

// AddAssetFromPath makes the file at path an asset of this task under key (see AddAsset). The
// file is linked or copied into the attempt's temporary directory at once, so the caller may
// remove it afterwards. The type is AssetJSON for ".json" files, AssetText for common text
// extensions and AssetBinary otherwise.
func (c *Context) AddAssetFromPath(key, path string) error {
	if err := validAssetKey(key); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("worker: add asset %q from %s: %w", key, path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("worker: add asset %q from %s: not a regular file", key, path)
	}
	dir, err := c.r.ensureDir(assetsDir)
	if err != nil {
		return fmt.Errorf("worker: add asset %q from %s: %w", key, path, err)
	}
	dst := filepath.Join(dir, key)
	if err := linkOrCopy(path, dst); err != nil {
		return fmt.Errorf("worker: add asset %q from %s: %w", key, path, err)
	}
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.assets[key] = producedAsset{file: dst, typ: typeOfPath(path), size: fi.Size()}
	return nil
}

// GetAsset returns the content of the asset key of the completed predecessor task.
func (c *Context) GetAsset(task, key string) ([]byte, error) {
	c.r.mu.Lock()
	local, ok := c.r.fetched[task+"\x00"+key]
	c.r.mu.Unlock()
	if ok {
		data, err := os.ReadFile(local)
		if err != nil {
			return nil, fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
		}
		return data, nil
	}
	if c.r.backend == nil {
		data, ok := c.r.local[task][key]
		if !ok {
			return nil, fmt.Errorf("worker: get asset %q of %q: %w", key, task, ErrAssetNotFound)
		}
		return append([]byte(nil), data...), nil
	}
	a, err := c.asset(task, key)
	if err != nil {
		return nil, err
	}
	data, err := storage.ReadAll(c, c.r.backend, a.Path)
	if err != nil {
		return nil, fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
	}
	return data, nil
}

// GetAssetPath downloads the asset key of the completed predecessor task into the attempt's
// temporary directory, once, and returns the file's path. The file is removed with the
// directory when the attempt ends.
func (c *Context) GetAssetPath(task, key string) (string, error) {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if p, ok := c.r.fetched[task+"\x00"+key]; ok {
		return p, nil
	}
	up, err := c.r.ensureDir(upstreamDir)
	if err != nil {
		return "", fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
	}
	dir := filepath.Join(up, fileName(task))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
	}
	dst := filepath.Join(dir, fileName(key))
	if c.r.backend == nil {
		data, ok := c.r.local[task][key]
		if !ok {
			return "", fmt.Errorf("worker: get asset %q of %q: %w", key, task, ErrAssetNotFound)
		}
		if err := writeFileAtomic(dst, data); err != nil {
			return "", fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
		}
	} else {
		a, err := c.asset(task, key)
		if err != nil {
			return "", err
		}
		if err := download(c, c.r.backend, a.Path, dst); err != nil {
			return "", fmt.Errorf("worker: get asset %q of %q: %w", key, task, err)
		}
	}
	c.r.fetched[task+"\x00"+key] = dst
	return dst, nil
}

// asset looks up the asset key of predecessor task.
func (c *Context) asset(task, key string) (protocol.Asset, error) {
	up, ok := c.Upstream[task]
	if !ok {
		return protocol.Asset{}, fmt.Errorf("worker: get asset %q of %q: %q is not a completed predecessor of this run: %w",
			key, task, task, ErrAssetNotFound)
	}
	a, ok := up.Assets[key]
	if !ok || a.Path == "" {
		return protocol.Asset{}, fmt.Errorf("worker: get asset %q of %q: %w", key, task, ErrAssetNotFound)
	}
	return a, nil
}

// validAssetKey checks an asset key.
func validAssetKey(key string) error {
	if !idPattern.MatchString(key) {
		return fmt.Errorf("worker: asset key %q must match %s", key, idPattern)
	}
	return nil
}

// fileName is a safe file name for name: name itself when it follows the id pattern, else a
// digest of it.
func fileName(name string) string {
	if idPattern.MatchString(name) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "x-" + hex.EncodeToString(sum[:12])
}

// typeOfPath guesses an asset's type from its file name.
func typeOfPath(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return AssetJSON
	case ".txt", ".text", ".md", ".csv", ".tsv", ".html", ".htm", ".xml", ".log", ".jsonl", ".ndjson", ".yaml", ".yml":
		return AssetText
	default:
		return AssetBinary
	}
}

// writeFileAtomic writes data to path through a temporary file in the same directory.
func writeFileAtomic(path string, data []byte) error { return copyAtomic(path, bytes.NewReader(data)) }

// linkOrCopy puts the content of src at dst: a hard link when possible, else a copy.
func linkOrCopy(src, dst string) error {
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copyAtomic(dst, in)
}

// copyAtomic writes everything read from r to path through a temporary file.
func copyAtomic(path string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

// download copies the object key of b to the file dst.
func download(ctx context.Context, b *storage.Backend, key, dst string) error {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %q: %w", key, err)
	}
	defer rc.Close()
	if err := copyAtomic(dst, rc); err != nil {
		return fmt.Errorf("download %q: %w", key, err)
	}
	return nil
}

// teeHandler sends each record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range []slog.Handler{t.a, t.b} {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(attrs), t.b.WithAttrs(attrs)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}

// withAttrs returns log with attrs added to every record, as log.With(attrs...) does, but
// without asking log's handler for a new handler until a record is logged: the standard
// handlers format the attributes of WithAttrs at once, and an attempt's logger, made for every
// dispatch, mostly logs nothing (log.With was 6 % of a busy worker's CPU).
func withAttrs(log *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(lazyAttrs{h: log.Handler(), attrs: attrs})
}

// lazyAttrs adds attrs to each record it hands to h, ahead of the record's own, which is
// where h.WithAttrs(attrs) would put them, inside the same groups.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (l lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(l.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return l.h.Handle(ctx, out)
}

func (l lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return l.h.WithAttrs(append(slices.Clip(l.attrs), attrs...))
}

func (l lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}
