package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pipeweave/pipeweave/core/storage/driver"
)

// Set is the configured backends with one default. It is immutable and safe for
// concurrent use.
type Set struct {
	cfgs      []Config
	backends  []*Backend
	index     map[string]int
	defaultAt int
}

// NewSet validates cfgs (as [ParseConfigs] does), opens every backend and picks
// the default: defaultID if non-empty (it must be one of the ids), else the
// entry with IsDefault, else the first one. An error opening any backend (for
// example a provider whose driver this binary does not link) fails the whole
// set.
func NewSet(ctx context.Context, cfgs []Config, defaultID string) (*Set, error) {
	s, err := newSet(cfgs, defaultID)
	if err != nil {
		return nil, err
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

// NewUnopenedSet is [NewSet] without opening the backends, for a process that
// needs the configured backends (the default one is sealed into run tokens)
// but never reads or writes an object, and so links no driver (the
// heartbeat-sweep function). Every call on its backends fails with an error
// saying that the backend is not opened in this process.
func NewUnopenedSet(cfgs []Config, defaultID string) (*Set, error) {
	s, err := newSet(cfgs, defaultID)
	if err != nil {
		return nil, err
	}
	for _, cfg := range s.cfgs {
		s.backends = append(s.backends, NewBackend(cfg.Provider, unopened{id: cfg.ID}))
	}
	return s, nil
}

// newSet validates cfgs and picks the default, opening nothing.
func newSet(cfgs []Config, defaultID string) (*Set, error) {
	if err := validateConfigs(cfgs); err != nil {
		return nil, err
	}
	s := &Set{
		cfgs:     make([]Config, len(cfgs)),
		backends: make([]*Backend, 0, len(cfgs)),
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
	return s, nil
}

// Default returns the default backend and its configuration.
func (s *Set) Default() (Config, *Backend) {
	return s.cfgs[s.defaultAt].clone(), s.backends[s.defaultAt]
}

// Get returns the backend with the given id and its configuration; ok is false
// when no backend has that id.
func (s *Set) Get(id string) (cfg Config, b *Backend, ok bool) {
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

// Close closes every backend. The set must not be used afterwards.
func (s *Set) Close() error {
	var errs []error
	for i, b := range s.backends {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage backend %q: %w", s.cfgs[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

// errNotOpened is the failure of every call on a backend of [NewUnopenedSet].
var errNotOpened = errors.New("the backend is not opened in this process")

// unopened is the driver of the backends of [NewUnopenedSet]: it refuses every
// call.
type unopened struct{ id string }

func (u unopened) fail() error { return fmt.Errorf("storage backend %q: %w", u.id, errNotOpened) }

func (unopened) KeyProblem(string) string                               { return "" }
func (u unopened) Get(context.Context, string) (io.ReadCloser, error)   { return nil, u.fail() }
func (u unopened) Put(context.Context, string, io.Reader, string) error { return u.fail() }
func (u unopened) Stat(context.Context, string) (driver.Attributes, error) {
	return driver.Attributes{}, u.fail()
}
func (u unopened) Delete(context.Context, string) error { return u.fail() }
func (unopened) IsNotFound(error) bool                  { return false }
func (unopened) Close() error                           { return nil }
