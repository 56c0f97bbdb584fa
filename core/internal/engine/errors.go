package engine

import (
	"errors"
	"fmt"
)

// Sentinel kinds of failure. The HTTP layer maps each to one status code.
var (
	// ErrInvalid: the request is malformed or breaks a rule (400).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: an id names nothing (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request is stale or clashes with the current state (409).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized: missing or bad credentials (401).
	ErrUnauthorized = errors.New("unauthorized")
)

// Error is a client-facing failure: a kind (one of the sentinels), a machine code and a
// human sentence, with optional details.
type Error struct {
	Kind    error
	Code    string
	Msg     string
	Details any
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.Kind }

// ErrStorage marks a failure of object storage (not of the database, not of the request): the
// HTTP layer answers 503 STORAGE_UNAVAILABLE.
var ErrStorage = errors.New("storage failure")

// storageError is a storage failure: its message is the cause's, errors.Is matches ErrStorage
// and the cause.
type storageError struct{ err error }

func (e *storageError) Error() string   { return e.err.Error() }
func (e *storageError) Unwrap() []error { return []error{ErrStorage, e.err} }

// storageFailed marks err (a storage backend's failure) as ErrStorage; nil stays nil.
func storageFailed(err error) error {
	if err == nil {
		return nil
	}
	return &storageError{err: err}
}

func invalid(code, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func notFound(code, format string, args ...any) *Error {
	return &Error{Kind: ErrNotFound, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func conflict(code, format string, args ...any) *Error {
	return &Error{Kind: ErrConflict, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Unauthorized builds an ErrUnauthorized error with a message.
func Unauthorized(format string, args ...any) *Error {
	return &Error{Kind: ErrUnauthorized, Code: "UNAUTHORIZED", Msg: fmt.Sprintf(format, args...)}
}
