package platform

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
)

// Job is the work of a scheduled function: one bounded invocation that returns its summary,
// which is answered as JSON.
type Job func(ctx context.Context) (any, error)

// ScheduledOptions configure the HTTP face of a scheduled function.
type ScheduledOptions struct {
	// Health answers GET /health (the orchestrator's handler, which pings the database).
	Health http.Handler
	// Logger receives a line per invocation (default slog.Default()).
	Logger *slog.Logger
}

// NewScheduled makes a scheduled function of job. Its HTTP face answers POST / with the job's
// JSON summary, 503 while the database is unreachable and 500 for other failures; GET /health
// is opts.Health. POST / takes no API key: the platform guards it (a private Cloud Run service
// invoked with Cloud Scheduler's OIDC token; under Lambda it has no URL at all). Its Lambda face accepts an EventBridge/CloudWatch scheduled event, an empty
// payload or any JSON, and returns the summary; a failure is a function error whose errorType
// is DatabaseUnavailableError or JobError.
func NewScheduled(name string, job Job, opts ScheduledOptions) *Function {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &scheduled{name: name, job: job, opts: opts}
	return &Function{name: name, http: http.HandlerFunc(s.serveHTTP), invoke: s.invoke}
}

type scheduled struct {
	name string
	job  Job
	opts ScheduledOptions
}

// run runs the job once and logs what it did.
func (s *scheduled) run(ctx context.Context, trigger string) (any, error) {
	start := time.Now()
	out, err := s.job(ctx)
	if err != nil {
		// A job's error may come from a statement of its own: it is classified here as the
		// data layer classifies its statements' errors.
		err = database.Interpret(err)
		s.opts.Logger.Warn("invocation failed", "trigger", trigger, "err", err, "unavailable", errors.Is(err, database.ErrUnavailable),
			"elapsedMs", time.Since(start).Milliseconds())
		return nil, err
	}
	s.opts.Logger.Info("invocation done", "trigger", trigger, "summary", out, "elapsedMs", time.Since(start).Milliseconds())
	return out, nil
}

func (s *scheduled) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "" {
		path = "/" // under http.StripPrefix
	}
	switch {
	case path == "/" && r.Method == http.MethodPost:
		out, err := s.run(r.Context(), "http")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	case path == "/":
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", s.name+" runs on POST /, not "+r.Method)
	case path == "/health" && s.opts.Health != nil:
		s.opts.Health.ServeHTTP(w, r)
	default:
		writeError(w, http.StatusNotFound, "ROUTE_NOT_FOUND", "no such endpoint: "+r.Method+" "+path+" ("+s.name+" answers POST / and GET /health)")
	}
}

// fail answers a failed job: 503 with Retry-After while the database is unreachable, else a
// 500 whose cause is in the logs, not in the answer.
func (s *scheduled) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The caller went away; nobody reads the answer.
	case errors.Is(err, database.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is unreachable; try again shortly")
	default:
		writeError(w, http.StatusInternalServerError, "INTERNAL", s.name+" failed; the cause is in the function's logs")
	}
}

func (s *scheduled) invoke(ctx context.Context, payload []byte) ([]byte, error) {
	trigger := "lambda"
	var ev events.CloudWatchEvent
	if json.Unmarshal(payload, &ev) == nil && ev.Source != "" {
		// aws.events for a schedule rule, aws.scheduler for EventBridge Scheduler.
		trigger = ev.Source + " " + ev.DetailType
	}
	out, err := s.run(ctx, trigger)
	if err != nil {
		if errors.Is(err, database.ErrUnavailable) {
			return nil, &DatabaseUnavailableError{Function: s.name, Err: err}
		}
		return nil, &JobError{Function: s.name, Err: err}
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, &JobError{Function: s.name, Err: err}
	}
	return raw, nil
}

// DatabaseUnavailableError is the Lambda function error of a scheduled function that could not
// reach PostgreSQL; its errorType is "DatabaseUnavailableError". The next tick retries.
type DatabaseUnavailableError struct {
	Function string
	Err      error
}

func (e *DatabaseUnavailableError) Error() string {
	return e.Function + ": the database is unreachable: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *DatabaseUnavailableError) Unwrap() error { return e.Err }

// JobError is the Lambda function error of a scheduled function that failed otherwise; its
// errorType is "JobError".
type JobError struct {
	Function string
	Err      error
}

func (e *JobError) Error() string { return e.Function + " failed: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *JobError) Unwrap() error { return e.Err }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, protocol.ErrorBody{Error: msg, Code: code})
}
