package redisstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// Entries as Arc v2.11–2.14's RedisStreamTransport writes them (XADD
// arc:events MAXLEN ~ 10000 * type <type> data <JSON.stringify(event)>),
// which Arc's reader delivers to its handlers. Each is read, handled and
// written back by arcmill with its bytes unchanged.
var arcDelivered = []struct{ name, data string }{
	{"payload timestamp Arc reads as Invalid Date",
		`{"type":"order.a","payload":{"timestamp":"yesterday"},"meta":{"id":"ts-1","timestamp":"2026-01-01T10:00:00.000Z"}}`},
	{"nested payload timestamp",
		`{"type":"order.a","payload":{"audit":{"entries":[{"timestamp":"n/a"}]}},"meta":{"id":"ts-2","timestamp":"2026-01-01T10:00:00.000Z"}}`},
	{"payload timestamp without an offset (a valid Date in Node)",
		`{"type":"order.a","payload":{"timestamp":"2026-01-01T10:00:00"},"meta":{"id":"ts-3","timestamp":"2026-01-01T10:00:00.000Z"}}`},
	{"RFC 1123 payload timestamp",
		`{"type":"order.a","payload":{"timestamp":"Thu, 01 Jan 2026 00:00:00 GMT"},"meta":{"id":"ts-4","timestamp":"2026-01-01T10:00:00.000Z"}}`},
	{"empty payload timestamp",
		`{"type":"order.a","payload":{"timestamp":""},"meta":{"id":"ts-5","timestamp":"2026-01-01T10:00:00.000Z"}}`},
	{"null meta values",
		`{"type":"order.a","payload":{},"meta":{"id":"n-1","timestamp":"2026-01-01T10:00:00.000Z","userId":null,"organizationId":null,"source":null}}`},
	{"lone surrogates in meta",
		`{"type":"order.a","payload":{"s":"\ud800"},"meta":{"id":"s-1","timestamp":"2026-01-01T10:00:00.000Z","userId":"\ud800x","note":"\udfff"}}`},
	{"createChildEvent's meta order",
		`{"type":"order.a","payload":{"n":1},"meta":{"id":"k-1","timestamp":"2026-01-01T10:00:00.000Z","correlationId":"c-1","causationId":"p-1","userId":"u-1","organizationId":"o-1","source":"shop","idempotencyKey":"i-1","resource":"order"}}`},
	{"caller's own meta order",
		`{"type":"order.a","payload":null,"meta":{"zeta":1,"id":"k-2","alpha":{"b":2,"a":1},"timestamp":"2026-01-01T10:00:00.000Z","correlationId":"c-2"}}`},
	{"characters encoding/json would escape",
		`{"type":"order.a","payload":{"html":"<b>&amp;</b>","ls":"` + "\u2028" + `"},"meta":{"id":"h-1","timestamp":"2026-01-01T10:00:00.000Z","note":"<i>"}}`},
}

// Every entry Arc delivers is delivered here too, through the wildcard
// router and the middleware stack, nothing dead-lettered; republished, its
// data field is the same bytes.
func TestArcInterop_DeliversWhatArcDeliversAndWritesItBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.stream + ":out"
	t.Cleanup(func() { b.client.Del(context.Background(), out) })
	for _, e := range arcDelivered {
		arcXAdd(t, b.client, b.stream, "type", "order.a", "data", e.data)
	}
	// One at a time, so the entries are written back in the order read.
	sub := b.subscriber(SubscriberConfig{MaxInFlight: 1})
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(t, err)
	stack, err := middleware.NewStack(middleware.StackConfig{
		DeadLetter: middleware.DeadLetterConfig{Publisher: &DeadLetterPublisher{Client: b.client}, Topic: b.dlq,
			ConsumerGroup: "g"}})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: testWait}, nil)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	_, err = events.HandleFunc(wildcard.HandlerConfig{Name: "relay", Subscriber: sub, Topic: b.stream,
		Patterns: []string{"order.*"}, Publisher: pub, PublishTopic: out}, // no causation: a relay, not a child
		func(msg *message.Message) ([]*message.Message, error) {
			ev, err := arc.FromMessage(msg)
			if err != nil {
				return nil, err
			}
			// What a Go handler sees is the original string.
			if ev.Meta.ID == "ts-1" && !strings.Contains(string(ev.Payload), `"yesterday"`) {
				return nil, errors.New("payload changed")
			}
			again, err := arc.ToMessage(ev)
			return []*message.Message{again}, err
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	defer router.Close()

	require.Eventually(t, func() bool { return b.xlen(out) == int64(len(arcDelivered)) }, testWait, 10*time.Millisecond)
	written, err := RangeEntries(context.Background(), b.client, out, "-", "+", 0)
	require.NoError(t, err)
	for i, e := range arcDelivered {
		assert.Equal(t, []string{"type", "order.a", "data", e.data}, written[i].Fields, e.name)
	}
	assert.Zero(t, b.xlen(b.dlq), "nothing Arc delivers is dead-lettered")
}
