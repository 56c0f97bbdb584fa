package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrUnsupportedProvider is wrapped by the error [Open] returns for a valid
// provider whose backend this build does not include yet.
var ErrUnsupportedProvider = errors.New("storage: provider not supported by this build")

// unsupportedProviderError is the error for a provider without a backend.
type unsupportedProviderError struct{ id, provider string }

func (e unsupportedProviderError) Error() string {
	return fmt.Sprintf("storage backend %q: provider %q is not supported by this build yet", e.id, e.provider)
}

// Is makes errors.Is(err, ErrUnsupportedProvider) true.
func (e unsupportedProviderError) Is(target error) bool { return target == ErrUnsupportedProvider }

// opener opens the backend of one provider; cfg has already been validated.
type opener func(ctx context.Context, cfg Config) (Backend, error)

// openers maps each provider with a backend in this build to its opener. Cloud
// providers are added here as they are implemented.
var openers = map[string]opener{
	ProviderLocal: func(_ context.Context, cfg Config) (Backend, error) {
		return NewLocal(cfg.credential("basePath"))
	},
}

// Open validates cfg and opens its backend, dispatching on cfg.Provider. A
// provider that is valid but not implemented by this build yet (aws-s3, gcs,
// minio for now) returns an error wrapping [ErrUnsupportedProvider].
func Open(ctx context.Context, cfg Config) (Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage backend %q: open: %w", cfg.ID, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	open, ok := openers[cfg.Provider]
	if !ok {
		return nil, unsupportedProviderError{id: cfg.ID, provider: cfg.Provider}
	}
	b, err := open(ctx, cfg.clone())
	if err != nil {
		return nil, fmt.Errorf("storage backend %q: open %s: %w", cfg.ID, cfg.Provider, err)
	}
	return b, nil
}

// Set is the configured backends with one default. It is immutable and safe for
// concurrent use.
type Set struct {
	cfgs      []Config
	backends  []Backend
	index     map[string]int
	defaultAt int
}

// NewSet validates cfgs (as [ParseConfigs] does), opens every backend and picks
// the default: defaultID if non-empty (it must be one of the ids), else the
// entry with IsDefault, else the first one. An error opening any backend (for
// example a provider not supported by this build yet) fails the whole set.
func NewSet(ctx context.Context, cfgs []Config, defaultID string) (*Set, error) {
	if err := validateConfigs(cfgs); err != nil {
		return nil, err
	}
	s := &Set{
		cfgs:     make([]Config, len(cfgs)),
		backends: make([]Backend, 0, len(cfgs)),
		index:    make(map[string]int, len(cfgs)),
	}
	for i, cfg := range cfgs {
		s.cfgs[i] = cfg.clone()
		s.index[cfg.ID] = i
		if cfg.IsDefault {
			s.defaultAt = i
		}
	}
	if defaultID != "" {
		i, ok := s.index[defaultID]
		if !ok {
			ids := make([]string, len(cfgs))
			for j, cfg := range cfgs {
				ids[j] = fmt.Sprintf("%q", cfg.ID)
			}
			return nil, fmt.Errorf("storage backends: default backend %q is not configured (have %s)", defaultID, strings.Join(ids, ", "))
		}
		s.defaultAt = i
	}
	for _, cfg := range s.cfgs {
		b, err := Open(ctx, cfg)
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		s.backends = append(s.backends, b)
	}
	return s, nil
}

// Default returns the default backend and its configuration.
func (s *Set) Default() (Config, Backend) {
	return s.cfgs[s.defaultAt].clone(), s.backends[s.defaultAt]
}

// Get returns the backend with the given id and its configuration; ok is false
// when no backend has that id.
func (s *Set) Get(id string) (cfg Config, b Backend, ok bool) {
	i, ok := s.index[id]
	if !ok {
		return Config{}, nil, false
	}
	return s.cfgs[i].clone(), s.backends[i], true
}

// Configs returns the configurations of every backend, in configuration order.
// The result is a copy: changing it does not change the set.
func (s *Set) Configs() []Config {
	out := make([]Config, len(s.cfgs))
	for i, cfg := range s.cfgs {
		out[i] = cfg.clone()
	}
	return out
}

// Close releases the backends that hold resources (those implementing
// io.Closer; Local holds none). The set must not be used afterwards.
func (s *Set) Close() error {
	var errs []error
	for i, b := range s.backends {
		if c, ok := b.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("storage backend %q: close: %w", s.cfgs[i].ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
