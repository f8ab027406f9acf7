// Package tracing traces Arc events through Watermill with OpenTelemetry,
// following the messaging semantic conventions: Publisher wraps a
// publisher so that each message gets its own PRODUCER span ("send
// <destination>", never one span per batch) and carries the W3C
// traceparent and tracestate in its metadata; Middleware, on a router or a
// wildcard handler, extracts them and runs the handler inside a CONSUMER
// span ("process <destination template>") that links to the message's
// creation context (read from the metadata, or from an Arc host's
// meta.traceparent). messaging.message.conversation_id is the Arc
// correlation id, and a wildcard subscription reports its pattern as the
// low-cardinality messaging.destination.template.
package tracing

import (
	"context"
	"encoding/json"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// ScopeName is the instrumentation scope of arcmill's spans.
const ScopeName = "github.com/arcmill/arcmill/tracing"

// DefaultSystem is Config.System's default.
const DefaultSystem = "arcmill"

// Config configures Publisher and Middleware. Zero values take the
// defaults; no value is invalid.
type Config struct {
	// TracerProvider makes the tracer. Defaults to
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator carries the trace context in message metadata. Defaults
	// to W3C Trace Context and Baggage.
	Propagator propagation.TextMapPropagator
	// System is messaging.system ("redis", "kafka", …). Defaults to
	// DefaultSystem.
	System string
}

func (c *Config) setDefaults() {
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Propagator == nil {
		c.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if c.System == "" {
		c.System = DefaultSystem
	}
}

func (c Config) tracer() trace.Tracer { return c.TracerProvider.Tracer(ScopeName) }

// messageAttrs are the attributes every span of a message carries.
func messageAttrs(system, op string, msg *message.Message) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(system),
		semconv.MessagingOperationName(op),
		semconv.MessagingMessageID(msg.UUID),
	}
	if c := msg.Metadata.Get(arc.MetadataCorrelationID); c != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(c))
	}
	if t := msg.Metadata.Get(arc.MetadataType); t != "" {
		attrs = append(attrs, attribute.String("arc.event.type", t))
	}
	return attrs
}

// publisher is the tracing Publisher decorator.
type publisher struct {
	message.Publisher
	cfg Config
}

// Publisher returns pub with a PRODUCER span per message; each message's
// metadata gets the span's traceparent (and tracestate, baggage) before it
// is published. A failed Publish marks every span of the call in error.
func Publisher(pub message.Publisher, cfg Config) message.Publisher {
	cfg.setDefaults()
	return &publisher{Publisher: pub, cfg: cfg}
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	spans := make([]trace.Span, len(msgs))
	for i, msg := range msgs {
		attrs := append(messageAttrs(p.cfg.System, "send", msg),
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(topic))
		if len(msgs) > 1 {
			attrs = append(attrs, semconv.MessagingBatchMessageCount(len(msgs)))
		}
		ctx, span := p.cfg.tracer().Start(msg.Context(), "send "+topic,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		p.cfg.Propagator.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		spans[i] = span
	}
	err := p.Publisher.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return err
}

// carrier reads W3C context from the message's metadata or, for an event
// from an Arc host that put it in meta.traceparent / meta.tracestate (which
// arrive as arc_meta_ keys holding JSON strings), from there.
func carrier(msg *message.Message) propagation.MapCarrier {
	if msg.Metadata.Get("traceparent") != "" {
		return propagation.MapCarrier(msg.Metadata)
	}
	c := propagation.MapCarrier{}
	for _, k := range []string{"traceparent", "tracestate"} {
		var v string
		if raw := msg.Metadata.Get(arc.MetadataExtraPrefix + k); raw != "" && json.Unmarshal([]byte(raw), &v) == nil {
			c[k] = v
		}
	}
	return c
}

// Middleware runs each handler call inside a CONSUMER "process" span that
// links to the message's creation context (its PRODUCER span) and is the
// parent of whatever the handler traces. The destination template is the
// wildcard pattern when the handler is a wildcard handler, else the topic.
func Middleware(cfg Config) message.HandlerMiddleware {
	cfg.setDefaults()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			created := trace.SpanContextFromContext(cfg.Propagator.Extract(context.Background(), carrier(msg)))
			topic := message.SubscribeTopicFromCtx(ctx)
			template := topic
			if info, ok := wildcard.InfoFromContext(ctx); ok && info.Pattern != "" {
				template = info.Pattern
			}
			attrs := append(messageAttrs(cfg.System, "process", msg), semconv.MessagingOperationTypeProcess)
			if topic != "" {
				attrs = append(attrs, semconv.MessagingDestinationName(topic))
			}
			if template != "" {
				attrs = append(attrs, semconv.MessagingDestinationTemplate(template))
			}
			opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
			if created.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: created}))
			}
			name := "process"
			if template != "" {
				name += " " + template
			}
			ctx, span := cfg.tracer().Start(ctx, name, opts...)
			defer span.End()
			// Baggage travels on; the handler's spans are children of this one.
			ctx = cfg.Propagator.Extract(ctx, carrier(msg))
			ctx = trace.ContextWithSpan(ctx, span)
			orig := msg.Context()
			msg.SetContext(ctx)
			out, err := h(msg)
			msg.SetContext(orig)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return out, err
		}
	}
}
