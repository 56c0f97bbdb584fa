package database

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The sentinels a database failure is reported as: every statement run through an [Executor]
// returns errors that match one of them with errors.Is (and still the driver's own error),
// or an unclassified error.
var (
	// ErrNotFound: a statement that returns one row found none (pgx.ErrNoRows).
	ErrNotFound = errors.New("database: no rows")
	// ErrUnavailable: the database cannot be reached or refuses work for now (connection
	// failures, too many connections, shutting down, starting up): worth retrying later.
	ErrUnavailable = errors.New("database unavailable")
	// ErrConflict: a unique constraint refused the row, or a serializable transaction lost a
	// race (serialization failure, deadlock): the state changed under the statement.
	ErrConflict = errors.New("database conflict")
)

// sentinelError is a driver error classified as one of the sentinels: errors.Is matches both.
type sentinelError struct {
	kind error
	err  error
}

func (e *sentinelError) Error() string   { return e.err.Error() }
func (e *sentinelError) Unwrap() []error { return []error{e.kind, e.err} }

// interpretError maps a pgx/pgconn error to the sentinel it stands for; other errors (and
// nil) are returned as they are.
func interpretError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return &sentinelError{kind: ErrNotFound, err: err}
	case unavailable(err):
		return &sentinelError{kind: ErrUnavailable, err: err}
	case conflict(err):
		return &sentinelError{kind: ErrConflict, err: err}
	}
	return err
}

// Interpret classifies err, a failure of a connection or statement made outside an
// [Executor] (a tool's own ping, a listening connection), like every statement's.
func Interpret(err error) error { return interpretError(err) }

// conflict reports a unique violation, a serialization failure or a deadlock.
func conflict(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "23505" || pe.Code == "40001" || pe.Code == "40P01"
}

// unavailable reports whether err means the database cannot be reached or refuses work for
// now: the answer is 503, not 500.
func unavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || // connection exception
			pe.Code == "53300" || // too many connections
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" // shutting down, cannot connect now
	}
	// A file system error (an os error wraps a syscall.Errno, which satisfies net.Error) is
	// never the database's: object storage on a local disk fails that way.
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	if errors.As(err, &pathErr) || errors.As(err, &linkErr) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}
