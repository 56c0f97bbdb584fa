package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Round trips are most of what a short transaction costs: on the 2-core benchmark machine a
// statement's round trip is ~80 µs idle and several times that under load, against a few
// microseconds of work for the statements the engine runs. The two executors here send
// statements that do not wait on each other's answers in one batch (the extended protocol's
// pipelining; one Sync, so PostgreSQL runs the batch as one implicit transaction unless it
// holds BEGIN):
//
//   - InTx sends BEGIN with the transaction's first statement instead of on its own, and
//     COMMIT with its last batch when the caller knows it is the last (CommitWithBatch);
//   - Pipelined sends a few statements and one query as a whole transaction in one round trip.

// InTx runs fn in a transaction that commits when fn returns nil and rolls back otherwise.
// BEGIN travels with fn's first statement (pgx's Batch.BeginTx: one round trip fewer than a
// BEGIN of its own); a transaction in which fn ran no statement sends nothing at all.
// Statements keep their meaning: each is answered before fn goes on.
func (db *DB) InTx(ctx context.Context, fn func(tx Executor) error) (err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return interpretError(err)
	}
	defer conn.Release()
	t := &lazyTx{conn: conn}
	defer func() {
		if p := recover(); p != nil {
			t.rollback()
			panic(p)
		}
	}()
	if err := fn(t); err != nil {
		t.rollback()
		return err
	}
	if t.tx == nil || t.committed {
		return nil
	}
	return interpretError(t.tx.Commit(ctx))
}

// lazyTx is the Executor of InTx: its first statement carries BEGIN.
type lazyTx struct {
	conn *pgxpool.Conn
	// tx is nil until the first statement.
	tx pgx.Tx
	// committed: a batch sent by CommitWithBatch ended the transaction (its COMMIT ran, and
	// committed it or, for a transaction that had failed, rolled it back).
	committed bool
	// tail are statements the batch of CommitWithBatch sends ahead of its COMMIT (SetCommitTail);
	// tailSent: such a batch was sent.
	tail     []*pgx.QueuedQuery
	tailSent bool
}

// SetCommitTail sets the statements that the batch of CommitWithBatch sends last, after the
// caller's and before COMMIT, in the transaction of tx, an executor of InTx: a claim that is
// only worth its statements if they cost no round trip of their own. Their results are read
// by the callbacks they carry (pgx.QueuedQuery's Exec, Query, QueryRow), which must not fail:
// the transaction may be committed by the time they run. Nil removes them; ok is false when tx
// is not an executor of InTx.
func SetCommitTail(tx Executor, tail ...*pgx.QueuedQuery) bool {
	t, ok := tx.(*lazyTx)
	if ok {
		t.tail = tail
	}
	return ok
}

// CommitTailSent reports whether a batch of CommitWithBatch carried the statements of
// SetCommitTail (tx an executor of InTx).
func CommitTailSent(tx Executor) bool {
	t, ok := tx.(*lazyTx)
	return ok && t.tailSent
}

// CommitWithBatch returns a sender for the last batch of the transaction of tx, an executor
// of InTx: the batch it sends carries COMMIT after its statements, so that the transaction
// ends with the batch's round trip instead of one more. Once that batch's results are closed
// without error, the transaction is committed and InTx sends no COMMIT; if a statement
// failed, nothing was committed and InTx rolls back as usual. Nothing may run in the
// transaction after that batch. ok is false when tx is not an executor of InTx.
func CommitWithBatch(tx Executor) (dbsqlc.Batcher, bool) {
	t, ok := tx.(*lazyTx)
	if !ok {
		return nil, false
	}
	return committer{t}, true
}

// committer is the Batcher of CommitWithBatch.
type committer struct{ t *lazyTx }

// SendBatch sends b's statements, the transaction's tail (SetCommitTail) and then COMMIT, as
// one batch (b itself is left as it is).
func (c committer) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	t := c.t
	if t.committed {
		return errBatch{errTxCommitted}
	}
	r := &committingResults{t: t}
	withCommit := &pgx.Batch{QueuedQueries: append(append([]*pgx.QueuedQuery(nil), b.QueuedQueries...), t.tail...)}
	t.tailSent = len(t.tail) > 0
	withCommit.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
		r.commitTag = tag
		return nil
	})
	r.BatchResults = t.SendBatch(ctx, withCommit)
	return r
}

// errTxCommitted refuses a statement after the batch that committed.
var errTxCommitted = errors.New("database: a statement after the batch that committed the transaction")

// committingResults are the results of a batch that ends with COMMIT. Closing them tells, from
// the server's transaction status, whether the transaction ended: then nothing more is sent in
// it (InTx neither commits nor rolls back), and a COMMIT that PostgreSQL answered ROLLBACK (the
// transaction had failed before) is an error, as pgx's Tx.Commit makes it.
type committingResults struct {
	pgx.BatchResults
	t         *lazyTx
	commitTag pgconn.CommandTag
}

func (r *committingResults) Close() error {
	err := r.BatchResults.Close()
	if r.t.conn.Conn().PgConn().TxStatus() != 'I' {
		return err // a statement failed: the transaction is open and failed, InTx rolls it back
	}
	r.t.committed = true
	if err == nil && r.commitTag.String() != "COMMIT" {
		return pgx.ErrTxCommitRollback
	}
	return err
}

// rollback ends the transaction, if it began and was not committed (pgx closes a connection
// it cannot roll back).
func (t *lazyTx) rollback() {
	if t.tx == nil || t.committed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.tx.Rollback(ctx)
}

// begin sends BEGIN and the statements queued in one batch, and returns its results
// positioned at the first of them, or the error of BEGIN (the results then closed).
func (t *lazyTx) begin(ctx context.Context, queued []*pgx.QueuedQuery) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.QueuedQueries = append(b.QueuedQueries, queued...)
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, interpretError(fmt.Errorf("begin: %w", err))
	}
	return br, nil
}

// one is a single statement to begin with.
func one(sql string, args []any) []*pgx.QueuedQuery {
	return []*pgx.QueuedQuery{{SQL: sql, Arguments: args}}
}

// Exec implements [Executor].
func (t *lazyTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	switch {
	case t.committed:
		return pgconn.CommandTag{}, errTxCommitted
	case t.tx != nil:
		return executor{t.tx}.Exec(ctx, sql, args...)
	}
	br, err := t.begin(ctx, one(sql, args))
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	return tag, interpretError(firstErr(err, br.Close()))
}

// Query implements [Executor].
func (t *lazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	switch {
	case t.committed:
		return nil, errTxCommitted
	case t.tx != nil:
		return executor{t.tx}.Query(ctx, sql, args...)
	}
	return lastRows(t.begin(ctx, one(sql, args)))
}

// QueryRow implements [Executor].
func (t *lazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	switch {
	case t.committed:
		return errRow{errTxCommitted}
	case t.tx != nil:
		return executor{t.tx}.QueryRow(ctx, sql, args...)
	}
	return lastRow(t.begin(ctx, one(sql, args)))
}

// SendBatch implements [Executor]; a batch that begins the transaction carries BEGIN ahead of
// its statements, and its results start at the first of them.
func (t *lazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	switch {
	case t.committed:
		return errBatch{errTxCommitted}
	case t.tx != nil:
		return executor{t.tx}.SendBatch(ctx, b)
	}
	br, err := t.begin(ctx, b.QueuedQueries)
	if err != nil {
		return errBatch{err}
	}
	return batchResults{br}
}

// Pipelined runs fn on an executor that sends its statements to the server together, as one
// transaction, in one round trip: Exec queues a statement and answers an empty tag and no
// error at once (use it only for statements whose tag is not read); the first Query or
// QueryRow sends the queued statements and itself as one batch, which PostgreSQL runs in one
// implicit transaction that commits when the batch ends, or rolls back entirely when a
// statement fails (that error is the query's). Statements after the first query are refused;
// statements queued and never followed by a query are sent when fn returns nil. Each
// statement takes its own snapshot, so a later one sees what an earlier one did and what was
// committed before an earlier one took a lock.
func (db *DB) Pipelined(ctx context.Context, fn func(x Executor) error) error {
	p := &pipeline{pool: db.pool}
	if err := fn(p); err != nil {
		return err
	}
	if p.sent || p.batch.Len() == 0 {
		return nil
	}
	p.sent = true
	return interpretError(p.pool.SendBatch(ctx, &p.batch).Close())
}

// pipeline is the Executor of Pipelined.
type pipeline struct {
	pool  *pgxpool.Pool
	batch pgx.Batch
	sent  bool
}

// errPipelineSent refuses a statement after a pipeline's batch went.
var errPipelineSent = errors.New("database: a statement after the pipelined batch was sent")

// send sends the queued statements and sql, and returns the results positioned at sql.
func (p *pipeline) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	if p.sent {
		return nil, errPipelineSent
	}
	p.sent = true
	n := p.batch.Len()
	p.batch.Queue(sql, args...)
	br := p.pool.SendBatch(ctx, &p.batch)
	for i := range n {
		var err error
		if fn := p.batch.QueuedQueries[i].Fn; fn != nil {
			err = fn(br) // a statement of QueueWithResults reads its own result
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			_ = br.Close()
			return nil, interpretError(err)
		}
	}
	return br, nil
}

// QueueWithResults queues statements whose results their own callbacks read
// (pgx.QueuedQuery's Exec, Query, QueryRow) in the batch of x, an executor of Pipelined, after
// those queued so far; ok is false when x is no such executor or its batch went. The callbacks
// run as the batch's results are read, after the statements before them answered.
func QueueWithResults(x Executor, qs ...*pgx.QueuedQuery) bool {
	p, ok := x.(*pipeline)
	if !ok || p.sent {
		return false
	}
	p.batch.QueuedQueries = append(p.batch.QueuedQueries, qs...)
	return true
}

// Exec implements [Executor]: it queues the statement.
func (p *pipeline) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if p.sent {
		return pgconn.CommandTag{}, errPipelineSent
	}
	p.batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Query implements [Executor]: it sends the batch.
func (p *pipeline) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return lastRows(p.send(ctx, sql, args))
}

// QueryRow implements [Executor]: it sends the batch.
func (p *pipeline) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return lastRow(p.send(ctx, sql, args))
}

// SendBatch implements [Executor]: a pipeline sends one batch of its own, so it refuses
// another.
func (p *pipeline) SendBatch(context.Context, *pgx.Batch) pgx.BatchResults {
	return errBatch{errors.New("database: SendBatch on a pipelined executor")}
}

// lastRows are the rows of the statement br is positioned at, the batch's last, or err.
func lastRows(br pgx.BatchResults, err error) (pgx.Rows, error) {
	if err != nil {
		return nil, err
	}
	r, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, interpretError(err)
	}
	return &batchRows{rows: rows{r}, br: br}, nil
}

// lastRow is the row of the statement br is positioned at, the batch's last, or err.
func lastRow(br pgx.BatchResults, err error) pgx.Row {
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// batchRows are the rows of a batch's last statement; closing them closes the batch, whose
// error, if any, Err then reports.
type batchRows struct {
	rows
	br       pgx.BatchResults
	closeErr error
	closed   bool
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.rows.Close()
	r.closeErr = interpretError(r.br.Close())
}

func (r *batchRows) Err() error {
	if err := r.rows.Err(); err != nil {
		return err
	}
	return r.closeErr
}

// batchRow is the row of a batch's last statement; Scan closes the batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	return interpretError(firstErr(err, r.br.Close()))
}

// errRow is a row whose statement was never answered.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// errBatch is a batch that was not sent.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

// firstErr is err, or else then.
func firstErr(err, then error) error {
	if err != nil {
		return err
	}
	return then
}
