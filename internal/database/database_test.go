package database_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

func TestInterpretUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused := pgconn.Connect(ctx, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?connect_timeout=5", testutil.FreePort(t)))
	require.Error(t, refused)

	require.True(t, unavailable(fmt.Errorf("claim: %w", refused)))
	require.True(t, unavailable(fmt.Errorf("x: %w", &pgconn.PgError{Code: "53300", Message: "too many connections"})))
	require.True(t, unavailable(&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}))
	require.True(t, unavailable(&pgconn.PgError{Code: "08006"}))
	require.True(t, unavailable(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)))
	require.False(t, unavailable(&pgconn.PgError{Code: "23505", Message: "duplicate key"}))
	require.False(t, unavailable(errors.New("boom")))
	// An os error wraps a syscall.Errno, which satisfies net.Error: it is still not the database's.
	require.False(t, unavailable(fmt.Errorf("stat: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENAMETOOLONG})))
	require.False(t, unavailable(&fs.PathError{Op: "open", Path: "x", Err: syscall.ELOOP}))
	require.False(t, unavailable(nil))
}

// unavailable reports whether Interpret classifies err as ErrUnavailable.
func unavailable(err error) bool { return errors.Is(database.Interpret(err), database.ErrUnavailable) }

func TestInterpretSentinels(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, database.Interpret(fmt.Errorf("read: %w", pgx.ErrNoRows)), database.ErrNotFound)
	require.ErrorIs(t, database.Interpret(fmt.Errorf("read: %w", pgx.ErrNoRows)), pgx.ErrNoRows, "the driver's error stays wrapped")
	dup := &pgconn.PgError{Code: "23505", Message: "duplicate key"}
	require.ErrorIs(t, database.Interpret(dup), database.ErrConflict)
	require.ErrorIs(t, database.Interpret(&pgconn.PgError{Code: "40001"}), database.ErrConflict)
	require.NotErrorIs(t, database.Interpret(dup), database.ErrUnavailable)
	require.NotErrorIs(t, database.Interpret(&pgconn.PgError{Code: "08006"}), database.ErrConflict)
	boom := errors.New("boom")
	require.Equal(t, boom, database.Interpret(boom), "an error it does not know passes as it is")
	require.NoError(t, database.Interpret(nil))
}
