package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// State compares the schema of a database with the migrations of this binary.
type State struct {
	// Exists is false when the database has no PipeWeave schema at all (no
	// schema_migrations table).
	Exists bool
	// Applied is the highest version recorded in the database (0 when none is).
	Applied int
	// Latest is the highest version this binary knows.
	Latest int
	// Pending are the versions this binary knows that the database has not applied.
	Pending []int
	// Unknown are the versions the database has applied that this binary does not know: a
	// newer binary migrated it.
	Unknown []int
}

// Current reports whether the schema is exactly the one this binary expects: present,
// nothing pending and nothing unknown.
func (s State) Current() bool {
	return s.Exists && len(s.Pending) == 0 && len(s.Unknown) == 0
}

// ErrSchema is wrapped by the error [State.Check] returns when the database's schema is not
// the one this binary expects (missing, older or newer).
var ErrSchema = errors.New("the schema does not match this binary")

// Fix is what an operator runs to bring a missing or older schema up to date.
const Fix = "run `pipeweave db migrate` (it reads DATABASE_URL) or start with `pipeweave serve --migrate`"

// Check returns nil when the schema is current, else an error wrapping [ErrSchema] that says,
// on one line, what is wrong and what to do (a newer schema is refused, not migrated down).
func (s State) Check() error {
	var msg string
	switch {
	case s.Applied > s.Latest:
		msg = fmt.Sprintf("has schema version %d, newer than this binary's %d: refusing to serve it; run a pipeweave that knows version %d",
			s.Applied, s.Latest, s.Applied)
	case len(s.Unknown) > 0:
		msg = fmt.Sprintf("has schema versions this binary does not know (%v; it knows up to %d): refusing to serve it", s.Unknown, s.Latest)
	case !s.Exists || s.Applied == 0:
		msg = "has no PipeWeave schema: " + Fix
	case len(s.Pending) > 0:
		msg = fmt.Sprintf("has schema version %d, this binary needs %d (%d migration(s) pending): %s", s.Applied, s.Latest, len(s.Pending), Fix)
	default:
		return nil
	}
	return &schemaError{msg: msg}
}

// Verify inspects the database's schema and returns nil when it is current, an error wrapping
// [ErrSchema] when it is not ([State.Check]), or the error of reading it.
func Verify(ctx context.Context, q Querier) error {
	st, err := Inspect(ctx, q)
	if err != nil {
		return err
	}
	return st.Check()
}

// schemaError is the error of [State.Check]; its message reads after "the database …".
type schemaError struct{ msg string }

func (e *schemaError) Error() string        { return e.msg }
func (e *schemaError) Is(target error) bool { return target == ErrSchema }

// Querier is what Inspect reads through: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Inspect reads which migrations the database has applied and compares them with the
// migrations embedded in this binary. It only reads: it neither creates nor locks anything.
func Inspect(ctx context.Context, q Querier) (State, error) {
	files, err := load()
	if err != nil {
		return State{}, err
	}
	var st State
	known := make([]int, 0, len(files))
	for _, f := range files {
		known = append(known, f.Version)
		st.Latest = max(st.Latest, f.Version)
	}
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, Schema+".schema_migrations").Scan(&st.Exists); err != nil {
		return State{}, fmt.Errorf("look for %s.schema_migrations: %w", Schema, err)
	}
	var applied []int
	if st.Exists {
		rows, err := q.Query(ctx, `SELECT version FROM `+Schema+`.schema_migrations ORDER BY version`)
		if err != nil {
			return State{}, fmt.Errorf("read schema_migrations: %w", err)
		}
		if applied, err = pgx.CollectRows(rows, pgx.RowTo[int]); err != nil {
			return State{}, fmt.Errorf("read schema_migrations: %w", err)
		}
	}
	for _, v := range applied {
		st.Applied = max(st.Applied, v)
		if !slices.Contains(known, v) {
			st.Unknown = append(st.Unknown, v)
		}
	}
	for _, v := range known {
		if !slices.Contains(applied, v) {
			st.Pending = append(st.Pending, v)
		}
	}
	return st, nil
}
