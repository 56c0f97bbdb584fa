package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/pipeweave/pipeweave/core/storage/driver"
)

// ErrUnsupportedProvider is wrapped by the error [Open] returns for a valid
// provider whose driver this binary does not link: its package was not
// imported. The message names the import to add.
var ErrUnsupportedProvider = errors.New("storage: provider not supported by this build")

// driverPackages maps each provider to the import path of its driver package, for the
// message of an unsupported provider.
var driverPackages = map[string]string{
	ProviderLocal: "github.com/pipeweave/pipeweave/core/storage/local",
	ProviderAWSS3: "github.com/pipeweave/pipeweave/core/storage/s3",
	ProviderGCS:   "github.com/pipeweave/pipeweave/core/storage/gcs",
	ProviderMinIO: "github.com/pipeweave/pipeweave/core/storage/minio",
}

// unsupportedProviderError is the error for a provider whose driver is not linked.
type unsupportedProviderError struct{ id, provider string }

func (e unsupportedProviderError) Error() string {
	return fmt.Sprintf("storage backend %q: provider %q is not linked into this binary: add import _ %q "+
		"(or github.com/pipeweave/pipeweave/core/storage/drivers for every provider)", e.id, e.provider, driverPackages[e.provider])
}

// Is makes errors.Is(err, ErrUnsupportedProvider) true.
func (e unsupportedProviderError) Is(target error) bool { return target == ErrUnsupportedProvider }

// Opener opens the driver of one provider for cfg, which has been validated
// and is the driver's own copy.
type Opener func(ctx context.Context, cfg Config) (driver.Backend, error)

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// Register makes a provider's driver available to [Open]. Driver packages call
// it from their init function, as database/sql drivers do. It panics when
// provider is not one of the provider names [Config.Validate] accepts, when
// open is nil, or when the provider is registered twice.
func Register(provider string, open Opener) {
	if !slices.Contains(providers, provider) {
		panic(fmt.Sprintf("storage: Register of unknown provider %q", provider))
	}
	if open == nil {
		panic(fmt.Sprintf("storage: Register of provider %q with a nil opener", provider))
	}
	openersMu.Lock()
	defer openersMu.Unlock()
	if _, dup := openers[provider]; dup {
		panic(fmt.Sprintf("storage: Register called twice for provider %q", provider))
	}
	openers[provider] = open
}

// Providers returns the providers whose drivers this binary links, sorted.
func Providers() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	out := make([]string, 0, len(openers))
	for p := range openers {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Open validates cfg and opens its backend with the driver registered for
// cfg.Provider. A valid provider whose driver package this binary does not
// import returns an error wrapping [ErrUnsupportedProvider].
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage backend %q: open: %w", cfg.ID, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	openersMu.RLock()
	open, ok := openers[cfg.Provider]
	openersMu.RUnlock()
	if !ok {
		return nil, unsupportedProviderError{id: cfg.ID, provider: cfg.Provider}
	}
	d, err := open(ctx, cfg.clone())
	if err != nil {
		return nil, fmt.Errorf("storage backend %q: open %s: %w", cfg.ID, cfg.Provider, err)
	}
	return NewBackend(cfg.Provider, d), nil
}
