// Package tracing traces Arc events through Watermill with OpenTelemetry,
// following the messaging semantic conventions.
//
// # Spans
//
// Publisher wraps a publisher. A single message gets a PRODUCER span
// "send <destination>"; a batch (several messages in one Publish) gets a
// PRODUCER "create <destination>" span per message and one CLIENT
// "send <destination>" span that links to them and alone carries
// messaging.batch.message_count. Each message's metadata receives the
// W3C traceparent and tracestate of its own span. A traceparent the
// message already carried (a forwarded or republished message) is not
// lost: the new span links to it before it is replaced.
//
// Middleware, on a router or a wildcard handler, runs the handler inside a
// CONSUMER span "process <destination>" that links to the message's
// creation context (read from the metadata, or from an Arc host's
// meta.traceparent) and is the parent of whatever the handler traces.
// The messages a handler returns, which the router publishes, carry the
// process span in their context, so their send spans are its children: a
// causal chain A → handler → B → handler → C is one connected tree of
// send and process spans, joined at each hop by a link from the process
// span to the send span, as the conventions prescribe for consumers.
//
// # Attributes
//
// messaging.message.conversation_id is the Arc correlation id, and
// arc.event.type the event type. A wildcard handler reports its name as
// messaging.destination.subscription.name and its pattern as
// arcmill.subscription.pattern (the conventions have no attribute for a
// subscription's filter; messaging.destination.template is a template of
// the destination name, which a pattern is not). A failed operation sets
// error.type to the Go type of the innermost error (for example
// "*errors.errorString"), along with an Error status.
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
	"github.com/arcmill/arcmill/middleware"
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

// AttrSubscriptionPattern names the wildcard pattern that matched the
// message, on process spans.
const AttrSubscriptionPattern = attribute.Key("arcmill.subscription.pattern")

// publisher is the tracing Publisher decorator.
type publisher struct {
	message.Publisher
	cfg Config
}

// Publisher returns pub with a span per message (and one per batch, see
// the package doc); each message's metadata gets its span's traceparent
// (and tracestate, baggage) before it is published. A failed Publish marks
// every span of the call in error.
func Publisher(pub message.Publisher, cfg Config) message.Publisher {
	cfg.setDefaults()
	return &publisher{Publisher: pub, cfg: cfg}
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	batch := len(msgs) > 1
	op, opType, kind := "send", semconv.MessagingOperationTypeSend, trace.SpanKindProducer
	if batch {
		op, opType = "create", semconv.MessagingOperationTypeCreate
	}
	spans := make([]trace.Span, 0, len(msgs)+1)
	links := make([]trace.Link, 0, len(msgs))
	for _, msg := range msgs {
		attrs := append(messageAttrs(p.cfg.System, op, msg), opType, semconv.MessagingDestinationName(topic))
		opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
		// A trace context the message already carries is kept as a link.
		if prior := trace.SpanContextFromContext(p.cfg.Propagator.Extract(context.Background(),
			propagation.MapCarrier(msg.Metadata))); prior.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: prior}))
		}
		ctx, span := p.cfg.tracer().Start(msg.Context(), op+" "+topic, opts...)
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		p.cfg.Propagator.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		spans = append(spans, span)
		links = append(links, trace.Link{SpanContext: span.SpanContext()})
	}
	if batch {
		_, span := p.cfg.tracer().Start(msgs[0].Context(), "send "+topic, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithLinks(links...), trace.WithAttributes(semconv.MessagingSystemKey.String(p.cfg.System),
				semconv.MessagingOperationName("send"), semconv.MessagingOperationTypeSend,
				semconv.MessagingDestinationName(topic), semconv.MessagingBatchMessageCount(len(msgs))))
		spans = append(spans, span)
	}
	err := p.Publisher.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			fail(span, err)
		}
		span.End()
	}
	return err
}

// fail marks span failed by err, with error.type.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(middleware.ErrorType(err)))
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
// links to the message's creation context (its send span) and is the
// parent of whatever the handler traces, and of the send spans of the
// messages the handler returns. A wildcard handler's name and pattern are
// attributes (see the package doc).
func Middleware(cfg Config) message.HandlerMiddleware {
	cfg.setDefaults()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			created := trace.SpanContextFromContext(cfg.Propagator.Extract(context.Background(), carrier(msg)))
			topic := message.SubscribeTopicFromCtx(ctx)
			attrs := append(messageAttrs(cfg.System, "process", msg), semconv.MessagingOperationTypeProcess)
			if topic != "" {
				attrs = append(attrs, semconv.MessagingDestinationName(topic))
			}
			if info, ok := wildcard.InfoFromContext(ctx); ok {
				if info.Handler != "" {
					attrs = append(attrs, semconv.MessagingDestinationSubscriptionName(info.Handler))
				}
				if info.Pattern != "" {
					attrs = append(attrs, AttrSubscriptionPattern.String(info.Pattern))
				}
			} else if name := message.HandlerNameFromCtx(ctx); name != "" {
				attrs = append(attrs, semconv.MessagingDestinationSubscriptionName(name))
			}
			opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
			if created.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: created}))
			}
			name := "process"
			if topic != "" {
				name += " " + topic
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
				fail(span, err)
				return out, err
			}
			// The router publishes what the handler returns after this
			// returns: their send spans become children of the process span
			// (without its cancellation, which ends with the delivery).
			for _, o := range out {
				if !trace.SpanContextFromContext(o.Context()).IsValid() {
					o.SetContext(context.WithoutCancel(ctx))
				}
			}
			return out, nil
		}
	}
}
