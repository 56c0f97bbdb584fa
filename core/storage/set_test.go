package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/storage/driver"
	_ "github.com/pipeweave/pipeweave/core/storage/local" // the only driver these tests link
)

func localConfig(t *testing.T, id string, isDefault bool) storage.Config {
	t.Helper()
	return storage.Config{
		ID:          id,
		Provider:    storage.ProviderLocal,
		Credentials: map[string]any{"basePath": t.TempDir()},
		IsDefault:   isDefault,
	}
}

func TestNewSetDefaultSelection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		defaults  []bool // IsDefault of backends a, b, c (len = number of backends)
		defaultID string
		want      string
	}{
		{"only one", []bool{false}, "", "a"},
		{"first when none marked", []bool{false, false, false}, "", "a"},
		{"isDefault entry", []bool{false, true, false}, "", "b"},
		{"defaultID", []bool{false, false, false}, "c", "c"},
		{"defaultID wins over isDefault", []bool{false, true, false}, "c", "c"},
		{"defaultID naming the isDefault entry", []bool{true, false}, "a", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cfgs []storage.Config
			for i, isDefault := range tc.defaults {
				cfgs = append(cfgs, localConfig(t, string(rune('a'+i)), isDefault))
			}
			set, err := storage.NewSet(t.Context(), cfgs, tc.defaultID)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, set.Close()) })

			cfg, b := set.Default()
			require.Equal(t, tc.want, cfg.ID)
			_, want, ok := set.Get(tc.want)
			require.True(t, ok)
			require.Same(t, want, b)
		})
	}
}

func TestNewSetErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	_, err := storage.NewSet(ctx, nil, "")
	require.ErrorContains(t, err, "no backend configured")

	_, err = storage.NewSet(ctx, []storage.Config{localConfig(t, "a", false)}, "missing")
	require.ErrorContains(t, err, `default backend "missing" is not configured`)
	require.ErrorContains(t, err, `"a"`)

	_, err = storage.NewSet(ctx, []storage.Config{localConfig(t, "a", false), localConfig(t, "a", false)}, "")
	require.ErrorContains(t, err, `storage backend "a": duplicate id`)

	_, err = storage.NewSet(ctx, []storage.Config{localConfig(t, "a", true), localConfig(t, "b", true)}, "")
	require.ErrorContains(t, err, "isDefault")

	_, err = storage.NewSet(ctx, []storage.Config{{ID: "x", Provider: storage.ProviderLocal}}, "")
	require.ErrorContains(t, err, `storage backend "x": credentials.basePath is required`)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = storage.NewSet(cancelled, []storage.Config{localConfig(t, "a", false)}, "")
	require.ErrorIs(t, err, context.Canceled)
}

func TestOpenValidates(t *testing.T) {
	t.Parallel()
	_, err := storage.Open(t.Context(), storage.Config{ID: "x", Provider: "ftp"})
	require.ErrorContains(t, err, `storage backend "x": unknown provider "ftp"`)
	_, err = storage.Open(t.Context(), storage.Config{ID: "x", Provider: storage.ProviderLocal})
	require.ErrorContains(t, err, `storage backend "x": credentials.basePath is required`)
}

func TestSetBackendsAreSeparateAndConfigsAreCopies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfgs := []storage.Config{localConfig(t, "a", false), localConfig(t, "b", true)}
	set, err := storage.NewSet(ctx, cfgs, "")
	require.NoError(t, err)

	// Changing the caller's slice or a returned copy does not change the set.
	cfgs[0].ID = "changed"
	cfgs[0].Credentials["basePath"] = "/elsewhere"
	got := set.Configs()
	require.Len(t, got, 2)
	require.Equal(t, "a", got[0].ID)
	require.NotEqual(t, "/elsewhere", got[0].Credentials["basePath"])
	got[1].Credentials["basePath"] = "/elsewhere"
	cfg, _ := set.Default()
	require.Equal(t, "b", cfg.ID)
	require.NotEqual(t, "/elsewhere", cfg.Credentials["basePath"])

	_, a, ok := set.Get("a")
	require.True(t, ok)
	_, b, ok := set.Get("b")
	require.True(t, ok)
	_, _, ok = set.Get("c")
	require.False(t, ok)

	require.NoError(t, storage.PutBytes(ctx, a, "runs/r1/output.json", []byte(`{"from":"a"}`), ""))
	_, err = b.Stat(ctx, "runs/r1/output.json")
	require.ErrorIs(t, err, storage.ErrNotFound)
	data, err := storage.ReadAll(ctx, a, "runs/r1/output.json")
	require.NoError(t, err)
	require.JSONEq(t, `{"from":"a"}`, string(data))
	require.NoError(t, set.Close())
}

func TestNewSetFromParsedConfigs(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	cfgs, err := storage.ParseConfigs(fmt.Sprintf(`[{"id":"local","provider":"local","credentials":{"basePath":%q}}]`, base))
	require.NoError(t, err)
	set, err := storage.NewSet(t.Context(), cfgs, "")
	require.NoError(t, err)
	cfg, b := set.Default()
	require.Equal(t, "local", cfg.ID)
	require.NoError(t, storage.PutBytes(t.Context(), b, "standalone/r1/input.json", []byte(`{}`), "application/json"))
	require.FileExists(t, filepath.Join(base, "standalone", "r1", "input.json"))
}

// This package's tests link only the local driver: the other providers are valid but
// unsupported, and the error names the package to import.
func TestOpenUnlinkedProvider(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{storage.ProviderLocal}, storage.Providers())
	minio := storage.Config{ID: "m", Provider: storage.ProviderMinIO, Endpoint: "http://localhost:9000", Bucket: "b",
		Credentials: map[string]any{"accessKey": "a", "secretKey": "unlinked-secret"}}
	_, err := storage.Open(t.Context(), minio)
	require.ErrorIs(t, err, storage.ErrUnsupportedProvider)
	require.ErrorContains(t, err, `storage backend "m": provider "minio" is not linked into this binary`)
	require.ErrorContains(t, err, `import _ "github.com/pipeweave/pipeweave/core/storage/minio"`)
	require.NotContains(t, err.Error(), "unlinked-secret")

	_, err = storage.NewSet(t.Context(), []storage.Config{localConfig(t, "a", true), minio}, "")
	require.ErrorIs(t, err, storage.ErrUnsupportedProvider)
}

func TestRegisterRefusesUnknownAndDuplicateProviders(t *testing.T) {
	t.Parallel()
	open := func(context.Context, storage.Config) (driver.Backend, error) { return nil, nil }
	require.PanicsWithValue(t, `storage: Register of unknown provider "ftp"`, func() { storage.Register("ftp", open) })
	require.PanicsWithValue(t, `storage: Register called twice for provider "local"`, func() { storage.Register(storage.ProviderLocal, open) })
	require.PanicsWithValue(t, `storage: Register of provider "gcs" with a nil opener`, func() { storage.Register(storage.ProviderGCS, nil) })
}

// An unopened set knows its configurations, needs no driver, and refuses every object call.
func TestNewUnopenedSet(t *testing.T) {
	t.Parallel()
	gcs := storage.Config{ID: "g", Provider: storage.ProviderGCS, Bucket: "b",
		Credentials: map[string]any{"projectId": "p", "clientEmail": "e", "privateKey": "k"}, IsDefault: true}
	s, err := storage.NewUnopenedSet([]storage.Config{localConfig(t, "a", false), gcs}, "")
	require.NoError(t, err)
	cfg, b := s.Default()
	require.Equal(t, "g", cfg.ID)
	require.Equal(t, storage.ProviderGCS, b.Provider())
	ctx := t.Context()
	_, err = b.Get(ctx, "k")
	require.ErrorContains(t, err, `storage: gcs get "k": storage backend "g": the backend is not opened in this process`)
	require.NotErrorIs(t, err, storage.ErrNotFound)
	require.Error(t, b.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{}))
	_, err = b.Stat(ctx, "k")
	require.Error(t, err)
	require.Error(t, b.Delete(ctx, "k"))
	require.NoError(t, s.Close())

	_, err = storage.NewUnopenedSet(nil, "")
	require.ErrorContains(t, err, "no backend configured")
}
