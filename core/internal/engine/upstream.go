package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/internal/database"
)

// What the engine adds for the shapes of upstream's API (packages/shared/src/types/api.ts):
// DLQ inputs inline, a service with its tasks, the storage backends without credentials.

// inlineReads bounds the storage reads one DLQ page makes at once.
const inlineReads = 8

// inlineInputs sets each entry's Input to its stored input when that is JSON of at most
// protocol.DLQInputInlineMax bytes: inline[i] when items[i]'s input is kept in PostgreSQL,
// else the object at its inputPath. An input that is larger, missing, unreadable or not JSON is
// left out: the entry still lists, with its inputPath.
func (e *Engine) inlineInputs(ctx context.Context, items []DLQEntry, inline [][]byte) {
	_, backend := e.storage.Default()
	var g errgroup.Group
	g.SetLimit(inlineReads)
	for i := range items {
		if inline[i] != nil {
			if len(inline[i]) <= protocol.DLQInputInlineMax && json.Valid(inline[i]) {
				items[i].Input = inline[i]
			}
			continue
		}
		g.Go(func() error {
			data, err := readSmall(ctx, backend, items[i].InputPath, protocol.DLQInputInlineMax)
			switch {
			case errors.Is(err, errTooBig), errors.Is(err, storage.ErrNotFound):
			case err != nil:
				e.log.Warn("could not read a DLQ entry's input", "dlq", items[i].ID, "path", items[i].InputPath, "err", err)
			case json.Valid(data):
				items[i].Input = data
			}
			return nil
		})
	}
	_ = g.Wait()
}

var errTooBig = errors.New("object over the size cap")

// readSmall reads the object at key when it has at most limit bytes, else errTooBig.
func readSmall(ctx context.Context, b *storage.Backend, key string, limit int64) ([]byte, error) {
	if key == "" {
		return nil, storage.ErrNotFound
	}
	r, err := b.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, errTooBig
	}
	return data, nil
}

// ServiceDetail is a registered service with its task definitions.
type ServiceDetail struct {
	ID           string
	Version      string
	BaseURL      string
	RegisteredAt time.Time
	UpdatedAt    time.Time
	Tasks        []Task
}

// GetService returns a registered service with its tasks (orphaned ones included, with
// removedInVersion).
func (e *Engine) GetService(ctx context.Context, id string) (ServiceDetail, error) {
	r, err := queries.ServiceGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return ServiceDetail{}, notFound("SERVICE_NOT_FOUND", "service %q is not registered", id)
	}
	if err != nil {
		return ServiceDetail{}, fmt.Errorf("read service %s: %w", id, err)
	}
	s := ServiceDetail{ID: r.ID, Version: r.Version, BaseURL: r.BaseURL, RegisteredAt: r.RegisteredAt, UpdatedAt: r.UpdatedAt}
	if s.Tasks, err = e.ServiceTasks(ctx, id); err != nil {
		return ServiceDetail{}, err
	}
	return s, nil
}

// StorageBackend is a configured storage backend without its credentials.
type StorageBackend struct {
	ID        string
	Provider  string
	Endpoint  string
	Bucket    string
	Region    string
	IsDefault bool
}

// StorageBackends are the configured storage backends and the id of the default one.
type StorageBackends struct {
	Backends []StorageBackend
	Default  string
}

// StorageBackends lists the configured storage backends without their credentials, and the id
// of the default one.
func (e *Engine) StorageBackends() StorageBackends {
	def, _ := e.storage.Default()
	out := StorageBackends{Backends: []StorageBackend{}, Default: def.ID}
	for _, c := range e.storage.Configs() {
		out.Backends = append(out.Backends, StorageBackend{ID: c.ID, Provider: c.Provider, Endpoint: c.RedactedEndpoint(),
			Bucket: c.Bucket, Region: c.Region, IsDefault: c.ID == def.ID})
	}
	return out
}

// assetTypes are the asset types upstream's AssetMetadata allows.
var assetTypes = map[string]bool{protocol.AssetJSON: true, protocol.AssetText: true, protocol.AssetBinary: true}

// wireAssets makes stored assets fit upstream's AssetMetadata: a type it does not know (a
// worker may have reported none) is sent as binary, a negative size as 0.
func wireAssets(assets map[string]protocol.Asset) {
	for k, a := range assets {
		if !assetTypes[a.Type] {
			a.Type = protocol.AssetBinary
		}
		a.Size = max(a.Size, 0)
		assets[k] = a
	}
}
