// Package storagetest is the conformance suite every storage driver must pass.
//
// Each driver package's test calls [Run] with a function that opens a fresh
// backend of its provider:
//
//	func TestConformance(t *testing.T) {
//		t.Parallel()
//		storagetest.Run(t, func(t *testing.T) *storage.Backend {
//			b, err := local.New(t.TempDir())
//			require.NoError(t, err)
//			return b
//		})
//	}
//
// Subtests run in parallel. Each one writes only keys under its own prefix (the
// run's random prefix plus the subtest's name) and deletes what it wrote when
// it ends, so open may return backends sharing one bucket.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
)

// InvalidKeys are the keys every backend method must refuse with
// storage.ErrInvalidKey.
var InvalidKeys = []string{"", "/abs", "../x", "a/../b", "a//b", "a\\b", "a\x00b"}

// Run runs the conformance suite against the backends open returns. open is
// called once per subtest, with that subtest's t.
func Run(t *testing.T, open func(t *testing.T) *storage.Backend) {
	t.Helper()
	runPrefix := "storagetest-" + randomHex(t, 8) + "/"

	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"RoundTripBytes", testRoundTripBytes},
		{"RoundTripEmpty", testRoundTripEmpty},
		{"RoundTripLarge", testRoundTripLarge},
		{"ReadAllPutBytes", testReadAllPutBytes},
		{"OverwriteReplaces", testOverwriteReplaces},
		{"NestedKeys", testNestedKeys},
		{"StatJSON", testStatJSON},
		{"StatJSONL", testStatJSONL},
		{"StatBinary", testStatBinary},
		{"MissingIsNotFound", testMissingIsNotFound},
		{"DeleteThenGet", testDeleteThenGet},
		{"InvalidKeysRefused", testInvalidKeysRefused},
		{"FailedPutLeavesPreviousObject", testFailedPutLeavesPreviousObject},
		{"ConcurrentDifferentKeys", testConcurrentDifferentKeys},
		{"ConcurrentSameKeyNeverPartial", testConcurrentSameKeyNeverPartial},
		{"CancelledContext", testCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &harness{
				t:      t,
				b:      open(t),
				prefix: runPrefix + tc.name + "/",
			}
			require.NotNil(t, h.b, "open returned a nil backend")
			tc.fn(t, h)
		})
	}
}

// harness is one subtest's backend and key prefix.
type harness struct {
	t      *testing.T
	b      *storage.Backend
	prefix string
}

// key returns name under the subtest's prefix and deletes it at cleanup.
func (h *harness) key(name string) string {
	k := h.prefix + name
	h.t.Cleanup(func() {
		// Best effort: the object may never have been written.
		_ = h.b.Delete(context.Background(), k)
	})
	return k
}

// put stores data under key and fails the test on error.
func (h *harness) put(key string, data []byte) {
	h.t.Helper()
	err := h.b.Put(h.t.Context(), key, bytes.NewReader(data), storage.PutOptions{})
	require.NoError(h.t, err, "Put %q", key)
}

// get returns the content of key and fails the test on error.
func (h *harness) get(key string) []byte {
	h.t.Helper()
	data, err := storage.ReadAll(h.t.Context(), h.b, key)
	require.NoError(h.t, err, "Get %q", key)
	return data
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	buf := make([]byte, n)
	_, err := rand.Read(buf)
	require.NoError(t, err)
	return hex.EncodeToString(buf)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	_, err := rand.Read(buf)
	require.NoError(t, err)
	return buf
}

func testRoundTripBytes(t *testing.T, h *harness) {
	key := h.key("object.txt")
	want := []byte("hello, pipeweave\n\x00\xff binary too")
	h.put(key, want)
	require.Equal(t, want, h.get(key))

	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len(want)), attrs.Size)
	require.False(t, attrs.ModTime.IsZero(), "ModTime is zero")
}

func testRoundTripEmpty(t *testing.T, h *harness) {
	key := h.key("empty")
	h.put(key, nil)
	got := h.get(key)
	require.Empty(t, got)

	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(0), attrs.Size)
}

func testRoundTripLarge(t *testing.T, h *harness) {
	key := h.key("large.bin")
	want := randomBytes(t, 5<<20)
	h.put(key, want)
	got := h.get(key)
	require.Len(t, got, len(want))
	require.True(t, bytes.Equal(want, got), "5 MB object differs after round trip")

	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len(want)), attrs.Size)
}

func testReadAllPutBytes(t *testing.T, h *harness) {
	key := h.key("helpers.json")
	want := []byte(`{"ok":true}`)
	require.NoError(t, storage.PutBytes(t.Context(), h.b, key, want, "application/json"))
	got, err := storage.ReadAll(t.Context(), h.b, key)
	require.NoError(t, err)
	require.Equal(t, want, got)

	_, err = storage.ReadAll(t.Context(), h.b, h.key("helpers-missing.json"))
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testOverwriteReplaces(t *testing.T, h *harness) {
	key := h.key("overwrite.txt")
	h.put(key, []byte("the first, longer version of the object"))
	h.put(key, []byte("second"))
	require.Equal(t, []byte("second"), h.get(key))

	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len("second")), attrs.Size)
}

func testNestedKeys(t *testing.T, h *harness) {
	keys := []string{
		h.key("pipelines/p1/input.json"),
		h.key("runs/r1/output.json"),
		h.key("runs/r1/assets/deep/er/still/file.txt"),
		h.key("runs/r1/logs.jsonl"),
		h.key("runs/r2/assets/ünïcødé name.txt"),
	}
	for i, k := range keys {
		h.put(k, fmt.Appendf(nil, "object %d at %s", i, k))
	}
	for i, k := range keys {
		require.Equal(t, fmt.Appendf(nil, "object %d at %s", i, k), h.get(k))
	}
	// A prefix of an object is not itself an object.
	_, err := h.b.Get(t.Context(), h.prefix+"runs/r1")
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = h.b.Stat(t.Context(), h.prefix+"runs/r1/assets")
	require.ErrorIs(t, err, storage.ErrNotFound)
	err = h.b.Delete(t.Context(), h.prefix+"runs/r1")
	require.ErrorIs(t, err, storage.ErrNotFound)
	// Deleting one object leaves its siblings alone.
	require.NoError(t, h.b.Delete(t.Context(), keys[1]))
	require.Equal(t, fmt.Appendf(nil, "object %d at %s", 2, keys[2]), h.get(keys[2]))
}

func testStatJSON(t *testing.T, h *harness) {
	key := h.key("runs/r1/output.json")
	data := []byte(`{"result": [1, 2, 3]}`)
	h.put(key, data)
	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), attrs.Size)
	require.Equal(t, "application/json", attrs.ContentType)
	require.WithinDuration(t, time.Now(), attrs.ModTime, time.Hour)
}

func testStatJSONL(t *testing.T, h *harness) {
	key := h.key("runs/r1/logs.jsonl")
	data := []byte("{\"level\":\"info\"}\n{\"level\":\"warn\"}\n")
	h.put(key, data)
	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), attrs.Size)
	require.Equal(t, "application/x-ndjson", attrs.ContentType)
}

func testStatBinary(t *testing.T, h *harness) {
	key := h.key("runs/r1/assets/blob")
	data := append([]byte{0x00, 0x01, 0x02, 0x03, 0xfe, 0xff}, randomBytes(t, 2000)...)
	h.put(key, data)
	attrs, err := h.b.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), attrs.Size)
	require.Equal(t, "application/octet-stream", attrs.ContentType)
}

func testMissingIsNotFound(t *testing.T, h *harness) {
	key := h.key("never/written.json")
	_, err := h.b.Get(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "Get")
	_, err = h.b.Stat(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "Stat")
	err = h.b.Delete(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "Delete")
}

func testDeleteThenGet(t *testing.T, h *harness) {
	key := h.key("doomed.txt")
	h.put(key, []byte("short-lived"))
	require.NoError(t, h.b.Delete(t.Context(), key))

	_, err := h.b.Get(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "Get after Delete")
	_, err = h.b.Stat(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "Stat after Delete")
	err = h.b.Delete(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "second Delete")

	// The key can be written again.
	h.put(key, []byte("back"))
	require.Equal(t, []byte("back"), h.get(key))
}

func testInvalidKeysRefused(t *testing.T, h *harness) {
	ctx := t.Context()
	for _, key := range InvalidKeys {
		require.ErrorIs(t, storage.ValidateKey(key), storage.ErrInvalidKey, "ValidateKey(%q)", key)

		rc, err := h.b.Get(ctx, key)
		if rc != nil {
			_ = rc.Close()
		}
		require.ErrorIs(t, err, storage.ErrInvalidKey, "Get(%q)", key)

		err = h.b.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{})
		require.ErrorIs(t, err, storage.ErrInvalidKey, "Put(%q)", key)

		_, err = h.b.Stat(ctx, key)
		require.ErrorIs(t, err, storage.ErrInvalidKey, "Stat(%q)", key)

		err = h.b.Delete(ctx, key)
		require.ErrorIs(t, err, storage.ErrInvalidKey, "Delete(%q)", key)
	}
	// Invalid keys under a valid prefix too.
	for _, suffix := range []string{"a/", "a/./b", "a/..", "a\nb"} {
		key := h.prefix + suffix
		err := h.b.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{})
		require.ErrorIs(t, err, storage.ErrInvalidKey, "Put(%q)", key)
	}
}

// failingReader returns data and then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func testFailedPutLeavesPreviousObject(t *testing.T, h *harness) {
	boom := errors.New("reader broke")

	fresh := h.key("fresh.bin")
	err := h.b.Put(t.Context(), fresh, &failingReader{data: randomBytes(t, 64<<10), err: boom}, storage.PutOptions{})
	require.Error(t, err)
	_, err = h.b.Stat(t.Context(), fresh)
	require.ErrorIs(t, err, storage.ErrNotFound, "a failed Put of a new key must leave no object")

	existing := h.key("existing.txt")
	h.put(existing, []byte("old content"))
	err = h.b.Put(t.Context(), existing, &failingReader{data: randomBytes(t, 64<<10), err: boom}, storage.PutOptions{})
	require.Error(t, err)
	require.Equal(t, []byte("old content"), h.get(existing), "a failed Put must leave the previous object")
}

func testConcurrentDifferentKeys(t *testing.T, h *harness) {
	const n = 32
	keys := make([]string, n)
	for i := range keys {
		keys[i] = h.key(fmt.Sprintf("concurrent/%02d/object.bin", i))
	}
	ctx := t.Context()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			want := bytes.Repeat([]byte{byte(i)}, 32<<10+i)
			if err := h.b.Put(ctx, keys[i], bytes.NewReader(want), storage.PutOptions{}); err != nil {
				errs <- fmt.Errorf("put %d: %w", i, err)
				return
			}
			got, err := storage.ReadAll(ctx, h.b, keys[i])
			if err != nil {
				errs <- fmt.Errorf("get %d: %w", i, err)
				return
			}
			if !bytes.Equal(want, got) {
				errs <- fmt.Errorf("object %d: got %d bytes, want %d bytes of %d", i, len(got), len(want), i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// version is the content of version v of the contested object in
// testConcurrentSameKeyNeverPartial: size bytes, all equal to v, so a torn read
// is easy to spot.
func version(v byte, size int) []byte { return bytes.Repeat([]byte{v}, size) }

func testConcurrentSameKeyNeverPartial(t *testing.T, h *harness) {
	const (
		size    = 256 << 10
		writers = 4
		puts    = 8
		readers = 4
	)
	key := h.key("contested.bin")
	ctx := t.Context()
	h.put(key, version(0, size))

	errs := make(chan error, writers*puts+readers*1024)
	var writing sync.WaitGroup
	var done atomic.Bool
	var reads atomic.Int64
	for w := range writers {
		writing.Go(func() {
			for p := range puts {
				v := byte(1 + w*puts + p)
				if err := h.b.Put(ctx, key, bytes.NewReader(version(v, size)), storage.PutOptions{}); err != nil {
					errs <- fmt.Errorf("writer %d put %d: %w", w, p, err)
				}
			}
		})
	}
	var reading sync.WaitGroup
	for r := range readers {
		reading.Go(func() {
			for first := true; first || !done.Load(); first = false {
				got, err := storage.ReadAll(ctx, h.b, key)
				if err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
				reads.Add(1)
				if len(got) != size {
					errs <- fmt.Errorf("reader %d: read %d bytes, want %d (partial object)", r, len(got), size)
					return
				}
				if !bytes.Equal(got, version(got[0], size)) {
					errs <- fmt.Errorf("reader %d: object mixes versions (starts with version %d)", r, got[0])
					return
				}
			}
		})
	}
	writing.Wait()
	done.Store(true)
	reading.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, reads.Load())

	final := h.get(key)
	require.Len(t, final, size)
	require.Equal(t, version(final[0], size), final)
}

func testCancelledContext(t *testing.T, h *harness) {
	key := h.key("cancelled.txt")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	err := h.b.Put(ctx, key, strings.NewReader("never stored"), storage.PutOptions{})
	require.ErrorIs(t, err, context.Canceled, "Put")
	_, err = h.b.Stat(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound, "a cancelled Put must not store the object")

	h.put(key, []byte("stored"))
	rc, err := h.b.Get(ctx, key)
	if rc != nil {
		_ = rc.Close()
	}
	require.ErrorIs(t, err, context.Canceled, "Get")
	_, err = h.b.Stat(ctx, key)
	require.ErrorIs(t, err, context.Canceled, "Stat")
	err = h.b.Delete(ctx, key)
	require.ErrorIs(t, err, context.Canceled, "Delete")
	require.Equal(t, []byte("stored"), h.get(key), "a cancelled Delete must not remove the object")

	// Cancelling while a Put is reading its input fails the Put.
	slowKey := h.key("cancelled-midway.bin")
	ctx2, cancel2 := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(randomBytesNoT(1 << 10))
		cancel2()
		// Keep the pipe open until the Put gives up reading it.
		_, _ = pw.Write(randomBytesNoT(1 << 10))
		_ = pw.Close()
	}()
	err = h.b.Put(ctx2, slowKey, pr, storage.PutOptions{})
	_ = pr.CloseWithError(errors.New("put returned"))
	require.ErrorIs(t, err, context.Canceled, "Put cancelled while reading")
	_, err = h.b.Stat(t.Context(), slowKey)
	require.ErrorIs(t, err, storage.ErrNotFound, "a Put cancelled midway must not store the object")
}

// randomBytesNoT is randomBytes for goroutines that must not use t.
func randomBytesNoT(n int) []byte {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return buf
}
