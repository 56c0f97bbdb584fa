// Package telemetry holds the orchestrator's Prometheus metrics and its OpenTelemetry helpers:
// the metric definitions, the collectors that read the database at scrape time, and the W3C
// trace-context encoding of the span contexts persisted with pipeline and task runs.
//
// Every Orchestrator has its own registry (never the global default one), so many orchestrators
// can live in one process. Labels stay bounded: task ids, states, kinds and reasons, never run ids.
package telemetry

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Namespace prefixes every metric name.
const Namespace = "pipeweave"

// Outcomes of a dispatch, the values of the outcome label of DispatchDuration.
const (
	DispatchAcked        = "acked"
	DispatchBackPressure = "back_pressure"
	DispatchFailed       = "failed"
)

// Reasons of a failed dispatch, the values of the reason label of DispatchFailures.
const (
	ReasonToken     = "token"      // the run token could not be made
	ReasonEncode    = "encode"     // the dispatch body could not be encoded or the request built
	ReasonNetwork   = "network"    // the worker could not be reached (refused, reset, DNS…)
	ReasonRefused   = "refused"    // the dispatch guard refused the worker's address or baseUrl
	ReasonTimeout   = "timeout"    // the worker did not answer within DISPATCH_TIMEOUT_MS
	ReasonStatus4xx = "status_4xx" // the worker answered 4xx (other than 429)
	ReasonStatus5xx = "status_5xx" // the worker answered 5xx (other than 503)
	ReasonStatus    = "status"     // the worker answered another non-2xx status
)

// Kinds of expiry the sweep ends attempts for, the values of the kind label of Timeouts.
const (
	TimeoutLease     = "lease"     // the dispatch lease expired before the worker answered
	TimeoutHeartbeat = "heartbeat" // no heartbeat within 2 × heartbeatIntervalMs
	TimeoutHard      = "timeout"   // the task's hard timeout passed
)

// Outcomes of the attempts a sweep found expired, the values of the outcome label of
// SweepResults.
const (
	SweepRetried = "retried" // the attempt was ended and the run scheduled for a retry
	SweepFailed  = "failed"  // the attempt was ended and the run failed for good (DLQ)
	SweepSkipped = "skipped" // a callback or another instance ended the attempt first
	SweepError   = "error"   // a sweep that failed (counted once per failed sweep)
)

// Metrics are the orchestrator's Prometheus metrics, all registered in Registry.
type Metrics struct {
	// Registry holds every metric below and the collectors added by RegisterDatabase.
	Registry *prometheus.Registry

	// Claims counts runs claimed for dispatch (pipeweave_claims_total).
	Claims prometheus.Counter
	// RateLimitedClaims counts claims that found a rate limit's budget spent and left its
	// task's runs pending until the window refills (pipeweave_rate_limited_claims_total).
	RateLimitedClaims prometheus.Counter
	// DispatchDuration observes how long a worker took to answer a dispatch, by outcome
	// (pipeweave_dispatch_duration_seconds{outcome}).
	DispatchDuration *prometheus.HistogramVec
	// DispatchFailures counts dispatches that failed, by reason
	// (pipeweave_dispatch_failures_total{reason}).
	DispatchFailures *prometheus.CounterVec
	// TaskDuration observes, when a callback completes or fails an attempt, the time since the
	// run was first claimed, by task and outcome (pipeweave_task_duration_seconds{task,outcome}).
	TaskDuration *prometheus.HistogramVec
	// Retries counts failed attempts that were scheduled for another attempt, by task
	// (pipeweave_retries_total{task}).
	Retries *prometheus.CounterVec
	// Timeouts counts attempts the sweep ended because a deadline passed, by task and kind
	// (pipeweave_timeouts_total{task,kind}).
	Timeouts *prometheus.CounterVec
	// DLQEntries counts runs that failed for good and were added to the dead letter queue, by
	// task (pipeweave_dlq_entries_total{task}).
	DLQEntries *prometheus.CounterVec
	// SweepResults counts what sweeps did with the expired attempts they found, by outcome
	// (pipeweave_sweep_results_total{outcome}).
	SweepResults *prometheus.CounterVec
	// PipelineTimeouts counts pipeline runs the sweep failed because their deadline (timeoutMs)
	// passed, by pipeline (pipeweave_pipeline_timeouts_total{pipeline}).
	PipelineTimeouts *prometheus.CounterVec
	// ScheduleSlots counts the schedules' slots handled, by outcome
	// (pipeweave_schedule_slots_total{outcome}: fired, skipped, failed, missed).
	ScheduleSlots *prometheus.CounterVec
	// ScheduleLag observes how late after its slot a schedule's run was made
	// (pipeweave_schedule_lag_seconds).
	ScheduleLag prometheus.Histogram
	// WebhookDeliveries counts webhook delivery attempts, by outcome: delivered (a 2xx
	// answer), failed (to be retried) or dead (the last attempt failed, or the address was
	// refused, or the receiver answered 410 Gone) (pipeweave_webhook_deliveries_total{outcome}).
	WebhookDeliveries *prometheus.CounterVec
}

// NewMetrics makes the metrics in a new registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Claims: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "claims_total",
			Help: "Runs claimed for dispatch."}),
		RateLimitedClaims: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "rate_limited_claims_total",
			Help: "Claims that found a rate limit's budget spent: its tasks' runs were held back until the window refills."}),
		DispatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "dispatch_duration_seconds",
			Help:    "Time a worker took to answer a dispatch request, by outcome (acked, back_pressure, failed).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"outcome"}),
		DispatchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "dispatch_failures_total",
			Help: "Dispatches that failed, by reason (token, encode, refused, network, timeout, status_4xx, status_5xx, status)."}, []string{"reason"}),
		TaskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "task_duration_seconds",
			Help:    "Time from a run's first claim to the callback that completed or failed an attempt, by task and outcome.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}}, []string{"task", "outcome"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "retries_total",
			Help: "Failed attempts that were scheduled for another attempt, by task."}, []string{"task"}),
		Timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "timeouts_total",
			Help: "Attempts the sweep ended because a deadline passed, by task and kind (lease, heartbeat, timeout)."}, []string{"task", "kind"}),
		DLQEntries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "dlq_entries_total",
			Help: "Runs that failed for good and were added to the dead letter queue, by task."}, []string{"task"}),
		SweepResults: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "sweep_results_total",
			Help: "Expired attempts found by sweeps, by outcome (retried, failed, skipped), and failed sweeps (error)."}, []string{"outcome"}),
		PipelineTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "pipeline_timeouts_total",
			Help: "Pipeline runs the sweep failed with PIPELINE_TIMEOUT because their deadline (timeoutMs) passed, by pipeline."}, []string{"pipeline"}),
		ScheduleSlots: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "schedule_slots_total",
			Help: "Schedule slots handled by this instance, by outcome (fired, skipped, failed, missed)."}, []string{"outcome"}),
		ScheduleLag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "schedule_lag_seconds",
			Help:    "How late after its slot a schedule's run was made.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "webhook_deliveries_total",
			Help: "Webhook delivery attempts, by outcome (delivered, failed: retried later, dead: given up)."}, []string{"outcome"}),
	}
	m.Registry.MustRegister(m.Claims, m.RateLimitedClaims, m.DispatchDuration, m.DispatchFailures, m.TaskDuration, m.Retries, m.Timeouts,
		m.DLQEntries, m.SweepResults, m.PipelineTimeouts, m.ScheduleSlots, m.ScheduleLag, m.WebhookDeliveries)
	// Outcomes and reasons exist from the start, so rates work before the first event.
	for _, o := range []string{DispatchAcked, DispatchBackPressure, DispatchFailed} {
		m.DispatchDuration.WithLabelValues(o)
	}
	for _, o := range []string{SweepRetried, SweepFailed, SweepSkipped, SweepError} {
		m.SweepResults.WithLabelValues(o)
	}
	for _, o := range []string{"fired", "skipped", "failed", "missed"} {
		m.ScheduleSlots.WithLabelValues(o)
	}
	for _, o := range []string{WebhookDelivered, WebhookFailed, WebhookDead} {
		m.WebhookDeliveries.WithLabelValues(o)
	}
	return m
}

// The outcomes of webhook delivery attempts (WebhookDeliveries).
const (
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
	WebhookDead      = "dead"
)

// LiveCounts counts the live task runs by state (waiting, pending, dispatching, running).
type LiveCounts func(ctx context.Context) (map[string]int64, error)

// LiveStates are the states the queue depth gauge reports, each one even when it counts 0.
var LiveStates = []protocol.TaskRunStatus{protocol.StatusWaiting, protocol.StatusPending, protocol.StatusDispatching, protocol.StatusRunning}

// scrapeTimeout bounds the query a scrape runs.
const scrapeTimeout = 2 * time.Second

// RegisterDatabase adds the collectors that read the database at scrape time: the queue depth
// by state (one query through count) and the connection pool's statistics.
func (m *Metrics) RegisterDatabase(count LiveCounts, pool *pgxpool.Pool) {
	m.Registry.MustRegister(&queueCollector{count: count,
		depth: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "queue_depth"),
			"Task runs in a live state (waiting, pending, dispatching, running), read at scrape time.", []string{"state"}, nil)})
	m.Registry.MustRegister(newPoolCollector(pool))
}

// queueCollector reports the queue depth by state with one COUNT … GROUP BY query.
type queueCollector struct {
	count LiveCounts
	depth *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		return
	}
	for _, st := range LiveStates {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(counts[string(st)]), string(st))
	}
}

// poolCollector reports pgxpool statistics.
type poolCollector struct {
	pool                                        *pgxpool.Pool
	acquired, idle, total, max, constructing    *prometheus.Desc
	acquires, emptyAcquires, canceled, waitSecs *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "db_pool", name), help, nil, nil)
	}
	return &poolCollector{
		pool:          pool,
		acquired:      d("acquired_conns", "Connections of the pool in use."),
		idle:          d("idle_conns", "Idle connections of the pool."),
		total:         d("total_conns", "Connections of the pool (acquired, idle and being opened)."),
		max:           d("max_conns", "Most connections the pool opens (DB_MAX_CONNS)."),
		constructing:  d("constructing_conns", "Connections of the pool being opened."),
		acquires:      d("acquires_total", "Connections acquired from the pool."),
		emptyAcquires: d("empty_acquires_total", "Acquires that had to wait for a connection because none was idle."),
		canceled:      d("canceled_acquires_total", "Acquires cancelled by their context."),
		waitSecs:      d("acquire_wait_seconds_total", "Total time spent acquiring connections."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.constructing, c.acquires, c.emptyAcquires, c.canceled, c.waitSecs} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.acquired, float64(s.AcquiredConns()))
	gauge(c.idle, float64(s.IdleConns()))
	gauge(c.total, float64(s.TotalConns()))
	gauge(c.max, float64(s.MaxConns()))
	gauge(c.constructing, float64(s.ConstructingConns()))
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(c.canceled, float64(s.CanceledAcquireCount()))
	counter(c.waitSecs, s.AcquireDuration().Seconds())
}
