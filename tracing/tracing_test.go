package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestProducerAndConsumerSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cfg := Config{TracerProvider: tp, System: "redis"}
	logger := watermill.NopLogger{}
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer bus.Close()

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(t, err)
	handled := make(chan trace.SpanContext, 4)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: bus, Topic: "arc:events",
		Patterns: []string{"order.*"}, Middleware: []message.HandlerMiddleware{Middleware(cfg)}},
		func(ctx context.Context, ev arc.Event) error {
			// The handler's own spans hang under the process span.
			_, child := tp.Tracer("app").Start(ctx, "charge")
			child.End()
			handled <- trace.SpanContextFromContext(ctx)
			if ev.Type == "order.failed" {
				return errors.New("card declined")
			}
			return nil
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	<-router.Running()

	pub := Publisher(bus, cfg)
	var msgs []*message.Message
	for _, typ := range []string{"order.created", "order.paid"} {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{CorrelationID: "req-7"})
		require.NoError(t, err)
		m, err := arc.ToMessage(ev)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	require.NoError(t, pub.Publish("arc:events", msgs...)) // one call, two messages
	for range msgs {
		select {
		case <-handled:
		case <-time.After(5 * time.Second):
			t.Fatal("not handled")
		}
	}
	cancel()
	require.NoError(t, router.Close())

	var producers, consumers, children, batches []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.SpanKind() == trace.SpanKindProducer:
			producers = append(producers, s)
		case s.SpanKind() == trace.SpanKindConsumer:
			consumers = append(consumers, s)
		case s.SpanKind() == trace.SpanKindClient:
			batches = append(batches, s)
		case s.Name() == "charge":
			children = append(children, s)
		}
	}
	require.Len(t, producers, 2, "a create span per message")
	require.Len(t, batches, 1, "and one send span for the batch")
	require.Len(t, consumers, 2)
	for i, p := range producers {
		assert.Equal(t, "create arc:events", p.Name())
		assert.Equal(t, "redis", attr(p, "messaging.system").AsString())
		assert.Equal(t, "create", attr(p, "messaging.operation.type").AsString())
		assert.Equal(t, "arc:events", attr(p, "messaging.destination.name").AsString())
		assert.Equal(t, "req-7", attr(p, "messaging.message.conversation_id").AsString())
		assert.Equal(t, attribute.INVALID, attr(p, "messaging.batch.message_count").Type(),
			"the batch size belongs on the batch span only")
		assert.NotEmpty(t, msgs[i].Metadata.Get("traceparent"), "W3C traceparent injected")
		assert.Contains(t, msgs[i].Metadata.Get("traceparent"), p.SpanContext().SpanID().String())
	}
	batch := batches[0]
	assert.Equal(t, "send arc:events", batch.Name())
	assert.Equal(t, "send", attr(batch, "messaging.operation.type").AsString())
	assert.EqualValues(t, 2, attr(batch, "messaging.batch.message_count").AsInt64())
	require.Len(t, batch.Links(), 2, "the batch span links to each message's create span")
	byProducer := map[trace.SpanID]bool{producers[0].SpanContext().SpanID(): true, producers[1].SpanContext().SpanID(): true}
	for _, l := range batch.Links() {
		assert.True(t, byProducer[l.SpanContext.SpanID()])
	}
	for _, c := range consumers {
		assert.Equal(t, "process arc:events", c.Name(), "the destination, not the event type")
		assert.Equal(t, "order.*", attr(c, "arcmill.subscription.pattern").AsString())
		assert.Equal(t, "billing", attr(c, "messaging.destination.subscription.name").AsString())
		assert.Equal(t, attribute.INVALID, attr(c, "messaging.destination.template").Type(),
			"a pattern is no template of the destination name")
		assert.Equal(t, "arc:events", attr(c, "messaging.destination.name").AsString())
		assert.Equal(t, "process", attr(c, "messaging.operation.type").AsString())
		assert.Equal(t, "req-7", attr(c, "messaging.message.conversation_id").AsString())
		require.Len(t, c.Links(), 1, "links to the creation context")
		assert.True(t, byProducer[c.Links()[0].SpanContext.SpanID()])
	}
	require.Len(t, children, 2)
	for _, ch := range children {
		parent := ch.Parent().SpanID()
		assert.True(t, parent == consumers[0].SpanContext().SpanID() || parent == consumers[1].SpanContext().SpanID(),
			"the handler's spans are children of its process span")
	}
}

// A failed publish marks its spans in error; a message without trace
// context still gets a process span, without a link.
func TestErrorsAndMissingContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cfg := Config{TracerProvider: tp}
	bus := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	require.NoError(t, bus.Close())
	err := Publisher(bus, cfg).Publish("t", message.NewMessage("m-1", nil))
	require.Error(t, err)
	spans := rec.Ended()
	require.Len(t, spans, 1)
	assert.Equal(t, "Error", spans[0].Status().Code.String())
	assert.Equal(t, "arcmill", attr(spans[0], "messaging.system").AsString())
	assert.NotEmpty(t, attr(spans[0], "error.type").AsString(), "error.type on a failed send")

	h := Middleware(cfg)(func(msg *message.Message) ([]*message.Message, error) { return nil, errors.New("boom") })
	_, err = h(message.NewMessage("m-2", nil))
	require.Error(t, err)
	spans = rec.Ended()
	require.Len(t, spans, 2)
	assert.Empty(t, spans[1].Links())
	assert.Equal(t, "Error", spans[1].Status().Code.String())
	assert.Equal(t, "*errors.errorString", attr(spans[1], "error.type").AsString(), "error.type on a failed process")
}

// An event from an Arc host carries its W3C context in meta.traceparent:
// the process span links to it.
func TestArcMetaTraceparent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1},
		arc.Meta{Extra: map[string]json.RawMessage{"traceparent": json.RawMessage(`"` + parent + `"`)}})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.Empty(t, msg.Metadata.Get("traceparent"))
	h := Middleware(Config{TracerProvider: tp})(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	_, err = h(msg)
	require.NoError(t, err)
	spans := rec.Ended()
	require.Len(t, spans, 1)
	require.Len(t, spans[0].Links(), 1)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", spans[0].Links()[0].SpanContext.TraceID().String())
}

// A message that already carries a traceparent (forwarded, republished)
// keeps it as a link of its new send span before the new one replaces it.
func TestPublisherKeepsExistingTraceparentAsLink(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { assert.NoError(t, bus.Close()) })
	const prior = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msg := message.NewMessage("m-1", nil)
	msg.Metadata.Set("traceparent", prior)
	require.NoError(t, Publisher(bus, Config{TracerProvider: tp}).Publish("t", msg))
	spans := rec.Ended()
	require.Len(t, spans, 1)
	require.Len(t, spans[0].Links(), 1)
	assert.Equal(t, "00f067aa0ba902b7", spans[0].Links()[0].SpanContext.SpanID().String())
	assert.Contains(t, msg.Metadata.Get("traceparent"), spans[0].SpanContext().SpanID().String(), "replaced")
}

// A three-hop causal chain (A handled, returning B; B handled, returning
// C; C handled) is linked trees joined where the conventions join them:
// each handler-returned message's send span is a child of the process
// span that returned it, and each process span links to its message's
// send span.
func TestThreeHopChainIsConnected(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cfg := Config{TracerProvider: tp}
	logger := watermill.NopLogger{}
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	t.Cleanup(func() { assert.NoError(t, bus.Close()) })
	pub := Publisher(bus, cfg)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, logger)
	require.NoError(t, err)
	router.AddMiddleware(Middleware(cfg))
	next := func(typ string) []*message.Message {
		ev, err := arc.NewEvent(typ, nil, arc.Meta{})
		require.NoError(t, err)
		m, err := arc.ToMessage(ev)
		require.NoError(t, err)
		return []*message.Message{m}
	}
	router.AddHandler("hop1", "a", bus, "b", pub, func(*message.Message) ([]*message.Message, error) { return next("b"), nil })
	router.AddHandler("hop2", "b", bus, "c", pub, func(*message.Message) ([]*message.Message, error) { return next("c"), nil })
	done := make(chan struct{})
	router.AddConsumerHandler("hop3", "c", bus, func(*message.Message) error { close(done); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	require.NoError(t, pub.Publish("a", next("a")...))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the chain did not finish")
	}
	cancel()
	require.NoError(t, router.Close())

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	for _, hop := range []struct{ send, process, returned string }{
		{"send a", "process a", "send b"}, {"send b", "process b", "send c"}, {"send c", "process c", ""},
	} {
		send, process := byName[hop.send], byName[hop.process]
		require.NotNil(t, send, hop.send)
		require.NotNil(t, process, hop.process)
		require.Len(t, process.Links(), 1, hop.process)
		assert.Equal(t, send.SpanContext().SpanID(), process.Links()[0].SpanContext.SpanID(),
			"%s links to %s", hop.process, hop.send)
		if hop.returned != "" {
			returned := byName[hop.returned]
			require.NotNil(t, returned, hop.returned)
			assert.Equal(t, process.SpanContext().SpanID(), returned.Parent().SpanID(),
				"%s is a child of %s", hop.returned, hop.process)
			assert.Equal(t, process.SpanContext().TraceID(), returned.SpanContext().TraceID())
		}
	}
}
