package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the orchestrator's spans.
const TracerName = "github.com/pipeweave/pipeweave/core"

// Span attribute keys.
const (
	AttrTaskID        = attribute.Key("pipeweave.task.id")
	AttrRunID         = attribute.Key("pipeweave.run.id")
	AttrAttempt       = attribute.Key("pipeweave.attempt")
	AttrPipelineRunID = attribute.Key("pipeweave.pipeline_run.id")
	AttrPipelineID    = attribute.Key("pipeweave.pipeline.id")
	AttrCount         = attribute.Key("pipeweave.count")
	AttrOutcome       = attribute.Key("pipeweave.outcome")
	AttrStatus        = attribute.Key("pipeweave.status")
	AttrApplied       = attribute.Key("pipeweave.applied")
)

// Propagator is the W3C trace-context propagator (traceparent and tracestate headers) used
// on every request the orchestrator makes or accepts, whatever the global propagator is.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Traceparent returns the W3C traceparent of the span context in ctx, or "" when it has none.
func Traceparent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	Propagator.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// WithTraceparent returns ctx with the remote span context traceparent encodes as its
// parent and true, or ctx without any span context and false when traceparent is empty or
// malformed: a span started from it is a new root rather than a child of whatever ctx carried.
func WithTraceparent(ctx context.Context, traceparent string) (context.Context, bool) {
	if traceparent != "" {
		out := Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
		if sc := trace.SpanContextFromContext(out); sc.IsValid() && sc.IsRemote() {
			return out, true
		}
	}
	return WithoutSpan(ctx), false
}

// SpanContextOf returns the remote span context traceparent encodes (invalid when it is empty or
// malformed).
func SpanContextOf(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(Propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent}))
}

// WithoutSpan returns ctx without its span: a span started from it is a root.
func WithoutSpan(ctx context.Context) context.Context {
	return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
}

// OTLPProvider builds a tracer provider that sends spans in batches to the OTLP/HTTP endpoint
// url (the full URL of the traces endpoint, such as http://collector:4318/v1/traces) as service
// serviceName. The exporter still reads its other settings (OTEL_EXPORTER_OTLP_HEADERS,
// compression, certificates) from the environment. Shut the provider down to flush it.
func OTLPProvider(ctx context.Context, url, serviceName string) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %s: %w", url, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", serviceName)))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// TracesURL returns the URL of the OTLP/HTTP traces endpoint: tracesEndpoint as is when set
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), else endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) with
// /v1/traces appended, else "" (the exporter is off).
func TracesURL(endpoint, tracesEndpoint string) string {
	switch {
	case tracesEndpoint != "":
		return tracesEndpoint
	case endpoint != "":
		return strings.TrimRight(endpoint, "/") + "/v1/traces"
	}
	return ""
}
