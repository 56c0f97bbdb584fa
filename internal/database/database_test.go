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

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/testutil"
)

func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused := pgconn.Connect(ctx, fmt.Sprintf("postgres://pipeweave@127.0.0.1:%d/pipeweave?connect_timeout=5", testutil.FreePort(t)))
	require.Error(t, refused)

	require.True(t, database.Unavailable(fmt.Errorf("claim: %w", refused)))
	require.True(t, database.Unavailable(fmt.Errorf("x: %w", &pgconn.PgError{Code: "53300", Message: "too many connections"})))
	require.True(t, database.Unavailable(&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}))
	require.True(t, database.Unavailable(&pgconn.PgError{Code: "08006"}))
	require.True(t, database.Unavailable(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)))
	require.False(t, database.Unavailable(&pgconn.PgError{Code: "23505", Message: "duplicate key"}))
	require.False(t, database.Unavailable(errors.New("boom")))
	// An os error wraps a syscall.Errno, which satisfies net.Error: it is still not the database's.
	require.False(t, database.Unavailable(fmt.Errorf("stat: %w", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENAMETOOLONG})))
	require.False(t, database.Unavailable(&fs.PathError{Op: "open", Path: "x", Err: syscall.ELOOP}))
	require.False(t, database.Unavailable(nil))
}
