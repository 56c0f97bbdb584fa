package engine

import (
	"context"
	"time"
)

// A fan-out can grow task_runs many times over in one transaction (10,000 items in a
// database of a few thousand rows). The plans the sessions cached for the hot statements were
// made for the table as it was, and one made for a tiny table reads a run's rows one after the
// other where an index finds them: measured with bench --map, a claim of 100 items took 0.5-1 s
// and a dispatch result 0.5 s until autovacuum analyzed the table, up to a minute later. So a
// fan-out that grew the table by a tenth or more analyzes it once it committed: the new
// statistics invalidate every session's cached plans of statements that read it.

// analyzeAfterItems is how many items fanned out (since the last ANALYZE) make one worth
// considering; analyzeEvery spaces two of them out.
const (
	analyzeAfterItems = 1_000
	analyzeEvery      = 30 * time.Second
)

// fannedOut counts items a fan-out inserted; analyzeIfGrown considers an ANALYZE after a commit.
func (e *Engine) fannedOut(n int) { e.grown.Add(int64(n)) }

// analyzeIfGrown analyzes task_runs in the background when the items fanned out since the last
// time are at least analyzeAfterItems and a tenth of the rows the planner counts. Its failure
// (the role may not own the table) is logged and otherwise ignored: it is an optimisation.
func (e *Engine) analyzeIfGrown() {
	n := e.grown.Load()
	if n < analyzeAfterItems {
		return
	}
	last, now := e.analyzedAt.Load(), time.Now().UnixNano()
	if now-last < int64(analyzeEvery) || !e.analyzedAt.CompareAndSwap(last, now) {
		return
	}
	e.grown.Add(-n)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tuples, err := queries.TaskRunsEstimate(ctx, e.db)
		if err == nil && tuples >= 0 && float64(n)*10 < tuples {
			return
		}
		if err == nil {
			err = queries.AnalyzeTaskRuns(ctx, e.db)
		}
		if err != nil {
			e.log.Info("could not analyze task_runs after a large fan-out; autovacuum will", "items", n, "err", err)
			return
		}
		e.analyzes.Add(1)
	}()
}
