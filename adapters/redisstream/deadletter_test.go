package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// Our dead letters in Arc's layout, from a failing handler on our
// subscriber; and Arc's dead letters read by us.
func TestDeadLetterStreamInArcsLayout(t *testing.T) {
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	stream := "arcmill-test:" + uuid.NewString()
	dlq := stream + ":dlq"
	t.Cleanup(func() { client.Del(context.Background(), stream, dlq) })

	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "billing", BlockTime: 100 * time.Millisecond})
	require.NoError(t, err)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 1, Backoff: middleware.NoBackoff},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &DeadLetterPublisher{Client: client}, Topic: dlq, ConsumerGroup: "billing"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, nil)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "charge", Subscriber: sub, Topic: stream,
		Patterns: []string{"billing.*"}, Middleware: stack.Middleware},
		func(context.Context, arc.Event) error { return errors.New("Stripe API timeout") })
	require.NoError(t, err)
	go func() { _ = events.Run(context.Background()) }()
	defer router.Close()

	pub, err := NewPublisher(PublisherConfig{Client: client})
	require.NoError(t, err)
	ev, err := arc.NewEvent("billing.charge", map[string]int{"amount": 99}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(stream, msg))
	entryID := client.XRevRangeN(context.Background(), stream, "+", "-", 1).Val()[0].ID

	require.Eventually(t, func() bool { return client.XLen(context.Background(), dlq).Val() == 1 }, 10*time.Second, 10*time.Millisecond)
	raw, err := client.Do(context.Background(), "XRANGE", dlq, "-", "+").Slice()
	require.NoError(t, err)
	fields := raw[0].([]any)[1].([]any)
	names := []any{fields[0], fields[2], fields[4], fields[6], fields[8]}
	assert.Equal(t, []any{"type", "originalStream", "originalId", "group", "data"}, names, "Arc's fields, in Arc's order")

	entry, err := ReadDeadLetter(client.XRange(context.Background(), dlq, "-", "+").Val()[0])
	require.NoError(t, err)
	assert.Equal(t, "billing.charge", entry.Type)
	assert.Equal(t, stream, entry.OriginalStream)
	assert.Equal(t, entryID, entry.OriginalID, "the original entry id, from our subscriber")
	assert.Equal(t, "billing", entry.Group)
	assert.True(t, ev.Equal(entry.Envelope.Event))
	assert.Equal(t, 2, entry.Envelope.Attempts)
	assert.Equal(t, "Stripe API timeout", entry.Envelope.Error.Message)
	assert.Equal(t, middleware.ReasonRetryExhausted, entry.Envelope.Reason)
	assert.Equal(t, entryID, entry.Envelope.OriginalID)

	// Arc's own dead letter, as its RedisStreamTransport writes it.
	arcEnvelope := `{"event":{"type":"billing.charge","payload":{"amount":5},"meta":{"id":"e-9","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"c-1"}},"error":{"message":"exhausted retries — failure occurred on a different consumer; error context not preserved across consumer-group failover"},"attempts":5,"firstFailedAt":"2026-04-28T10:00:01.000Z","lastFailedAt":"2026-04-28T10:02:01.000Z"}`
	require.NoError(t, client.Do(context.Background(), "XADD", dlq, "*", "type", "billing.charge",
		"originalStream", "arc:events", "originalId", "1714298400000-0", "group", "default", "data", arcEnvelope).Err())
	all := client.XRange(context.Background(), dlq, "-", "+").Val()
	arcEntry, err := ReadDeadLetter(all[len(all)-1])
	require.NoError(t, err)
	assert.Equal(t, "arc:events", arcEntry.OriginalStream)
	assert.Equal(t, 5, arcEntry.Envelope.Attempts)
	assert.Equal(t, "e-9", arcEntry.Envelope.Event.Meta.ID)
	assert.Equal(t, time.Date(2026, 4, 28, 10, 2, 1, 0, time.UTC), arcEntry.Envelope.LastFailedAt)
	assert.Empty(t, arcEntry.Envelope.Reason, "Arc gives none")

	_, err = ReadDeadLetter(redis.XMessage{ID: "1-0", Values: map[string]any{"type": "x"}})
	assert.Error(t, err)
	assert.Error(t, (&DeadLetterPublisher{Client: client}).Publish(dlq, message.NewMessage("x", []byte("nope"))))
}

// Entries no Arc reader delivers either (no data, data not JSON, bytes
// that are not UTF-8), dead-lettered by the router: each dead letter keeps
// the entry's fields exactly, in order, byte for byte, its entry id, and
// the event id where the data has one.
func TestDeadLetter_UnreadableEntryKeepsItsFieldsAndIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	unreadable := [][]string{
		{"type", "order.x"},
		{"type", "order.x", "data", "{corrupt", "extra", "kept"},
		{"data", "\xff\xfe binary \x00", "type", "order.x", "type", "order.y"},
		{"type", "order.x", "data", `{"type":"order.x","payload":{},"meta":{"id":"","timestamp":1}}`},
		{"type", "order.x", "data", `{"type":"order.x","meta":{"id":"readable-id"},"payload":{}} trailing`},
	}
	var ids []string
	for _, fields := range unreadable {
		args := []any{"XADD", b.stream, "*"}
		for _, f := range fields {
			args = append(args, f)
		}
		id, err := b.client.Do(ctx, args...).Text()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	// One at a time, so the dead letters come in the entries' order.
	sub := b.subscriber(SubscriberConfig{MaxInFlight: 1})
	stack, err := middleware.NewStack(middleware.StackConfig{DeadLetter: middleware.DeadLetterConfig{
		Publisher: &DeadLetterPublisher{Client: b.client}, Topic: b.dlq, ConsumerGroup: "g"}})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: testWait}, nil)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "h", Subscriber: sub, Topic: b.stream, Patterns: []string{"*"},
		Middleware: stack.Middleware}, func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	go func() { _ = events.Run(context.Background()) }()
	defer router.Close()
	require.Eventually(t, func() bool { return b.xlen(b.dlq) == int64(len(unreadable)) }, testWait, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.pending("g") == 0 }, testWait, 10*time.Millisecond)

	dead, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	for i, e := range dead {
		dl, err := ReadDeadLetterEntry(e)
		require.NoError(t, err)
		assert.Equal(t, unreadable[i], dl.RawFields, "entry %d kept exactly", i)
		assert.Equal(t, ids[i], dl.OriginalID)
		assert.Equal(t, b.stream, dl.OriginalStream)
		assert.Equal(t, middleware.ReasonMalformed, dl.Envelope.Reason)
		assert.Equal(t, "<unknown>", dl.Type)
		assert.Equal(t, []string{"type", "originalStream", "originalId", "group", "data"},
			[]string{e.Fields[0], e.Fields[2], e.Fields[4], e.Fields[6], e.Fields[8]}, "Arc's fields first, in Arc's order")
	}
	assert.Equal(t, "readable-id", mustDeadLetter(t, dead[4]).Envelope.Event.Meta.ID, "the event id, read where it can be")
	assert.Equal(t, ids[0], mustDeadLetter(t, dead[0]).Envelope.Event.Meta.ID, "else the entry id, as Arc does")
}

// An unreadable entry left by a dead consumer, dead-lettered by a claim
// at MaxDeliveries: the same exact copy.
func TestDeadLetter_ClaimKeepsAnUnreadableEntryExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	fields := []string{"type", "order.x", "data", "\x00not json\xff"}
	id, err := b.client.Do(ctx, "XADD", b.stream, "*", fields[0], fields[1], fields[2], fields[3]).Text()
	require.NoError(t, err)
	b.readAs("g", "dead", 1)
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	sub := b.subscriber(SubscriberConfig{ClaimIdle: idle, ClaimInterval: idle, DeadLetterStream: b.dlq, MaxDeliveries: 1})
	_, err = sub.Subscribe(ctx, b.stream)
	require.NoError(t, err)
	assert.Equal(t, id, sub.signals.DeadLettered.WaitOrTimeout())
	dead, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	dl := mustDeadLetter(t, dead[0])
	assert.Equal(t, fields, dl.RawFields)
	assert.Equal(t, id, dl.OriginalID)
	assert.Equal(t, middleware.ReasonMalformed, dl.Envelope.Reason)
	assert.Zero(t, b.pending("g"))
}

// The envelope is written as JSON.stringify writes it: no \u003c for <,
// no \u0026 for &, U+2028 raw.
func TestDeadLetter_EnvelopeBytesAreJSONStringifys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ev, err := arc.NewEvent("order.x", map[string]string{"note": "<b>&</b>\u2028"}, arc.Meta{UserID: "<u&>"})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	pub, err := NewPublisher(PublisherConfig{Client: b.client})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(b.stream, msg))
	b.readAs("g", "dead", 1)
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	sub := b.subscriber(SubscriberConfig{ClaimIdle: idle, ClaimInterval: idle, DeadLetterStream: b.dlq, MaxDeliveries: 1})
	_, err = sub.Subscribe(ctx, b.stream)
	require.NoError(t, err)
	sub.signals.DeadLettered.WaitOrTimeout()
	dead, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	data := dead[0].Map()[FieldData].(string)
	assert.Contains(t, data, `"note":"<b>&</b>`+"\u2028"+`"`)
	assert.Contains(t, data, `"userId":"<u&>"`)
	assert.NotContains(t, data, `\u003c`)
	assert.NotContains(t, data, `\u0026`)
	assert.NotContains(t, data, `\u2028`)
}

func mustDeadLetter(t *testing.T, e Entry) DeadLetterEntry {
	t.Helper()
	dl, err := ReadDeadLetterEntry(e)
	require.NoError(t, err)
	return dl
}

// failOnce fails the next command of one name (and first argument, when
// arg is set), as a timeout or a failover would, and lets every other
// through.
type failOnce struct {
	name string
	arg  string
	arm  atomic.Bool
}

func (f *failOnce) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *failOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f *failOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if strings.EqualFold(cmd.Name(), f.name) && (f.arg == "" || len(args) > 1 && args[1] == f.arg) &&
			f.arm.CompareAndSwap(true, false) {
			cmd.SetErr(errors.New("test: i/o timeout"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

// A read of the entry that fails while dead-lettering leaves it pending (no
// content-less placeholder, no XACK); the next pass writes the dead letter
// with the event in it.
func TestDeadLetter_FailedReadNeverAcksWithoutContent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.publish("order.placed", 1)
	b.readAs("g", "dead", 1)
	const idle = 50 * time.Millisecond
	b.idleFor("g", idle)
	// The entry is read by a script that cuts oversized values (reads run a
	// script of their own, which must not be the one failed).
	hook := &failOnce{name: "evalsha", arg: readEntryScript.Hash()}
	hook.arm.Store(true)
	client := redis.NewClient(&redis.Options{Addr: b.client.Options().Addr})
	client.AddHook(hook)
	t.Cleanup(func() { _ = client.Close() })
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", BlockTime: testBlockTime,
		ClaimIdle: idle, ClaimInterval: idle, DeadLetterStream: b.dlq, MaxDeliveries: 1})
	require.NoError(t, err)
	sub.signals.Init(t)
	t.Cleanup(func() { _ = sub.Close() })
	_, err = sub.Subscribe(ctx, b.stream)
	require.NoError(t, err)
	first := sub.signals.Claimed.WaitOrTimeout()
	assert.Zero(t, first.DeadLettered, "nothing written while the entry could not be read")
	sub.signals.DeadLettered.WaitOrTimeout()
	dead, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	dl := mustDeadLetter(t, dead[0])
	assert.Equal(t, "order.placed", dl.Type, "the dead letter carries the event")
	assert.Equal(t, "order.placed", dl.Envelope.Event.Type)
}

// recordXAdd keeps the arguments of every XADD.
type recordXAdd struct {
	mu   sync.Mutex
	args [][]any
}

func (r *recordXAdd) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *recordXAdd) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *recordXAdd) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "xadd") {
			r.mu.Lock()
			r.args = append(r.args, cmd.Args())
			r.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

// Dead letters are never trimmed away silently: no MAXLEN by default, and
// with a cap set, a warning as the stream nears it.
func TestDeadLetter_StreamUncappedByDefaultAndWarnsNearACap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recordXAdd{}
	client := redis.NewClient(&redis.Options{Addr: b.client.Options().Addr})
	client.AddHook(rec)
	t.Cleanup(func() { _ = client.Close() })
	deadLetterMsg := func() *message.Message {
		ev, err := arc.NewEvent("order.x", nil, arc.Meta{})
		require.NoError(t, err)
		data, err := middleware.DeadLetteredEvent{Event: ev, Reason: middleware.ReasonRetryExhausted}.MarshalArc()
		require.NoError(t, err)
		return message.NewMessage(ev.Meta.ID, data)
	}
	require.NoError(t, (&DeadLetterPublisher{Client: client}).Publish(b.dlq, deadLetterMsg()))
	rec.mu.Lock()
	for _, a := range rec.args[0] {
		assert.NotEqual(t, "maxlen", strings.ToLower(fmt.Sprint(a)), "no cap by default")
	}
	rec.mu.Unlock()

	logs := watermill.NewCaptureLogger()
	capped := &DeadLetterPublisher{Client: client, MaxLen: 10, Logger: logs}
	warnings := func() int {
		n := 0
		for _, m := range logs.Captured()[watermill.ErrorLogLevel] {
			if strings.Contains(m.Msg, "near its cap") {
				n++
			}
		}
		return n
	}
	for i := 0; i < 7; i++ { // 8 of 10 with the first
		require.NoError(t, capped.Publish(b.dlq, deadLetterMsg()))
	}
	assert.Zero(t, warnings(), "8 of 10: not yet")
	require.NoError(t, capped.Publish(b.dlq, deadLetterMsg()))
	assert.Equal(t, 1, warnings(), "warned at 90 % of the cap")
	require.ErrorIs(t, (&DeadLetterPublisher{Client: client, MaxLen: -1}).Publish(b.dlq, deadLetterMsg()), ErrInvalidConfig)
}

// routedDeadLetters runs the wildcard router with the dead-letter stack
// over sub, until the test ends.
func (b *bundle) routedDeadLetters(sub *Subscriber, handled *counter) {
	b.t.Helper()
	b.routedDeadLettersFunc(sub, func(ev arc.Event) { handled.add(ev.Meta.ID) })
}

// routedDeadLettersFunc is routedDeadLetters with handle as the handler.
func (b *bundle) routedDeadLettersFunc(sub *Subscriber, handle func(arc.Event)) {
	b.t.Helper()
	stack, err := middleware.NewStack(middleware.StackConfig{DeadLetter: middleware.DeadLetterConfig{
		Publisher: &DeadLetterPublisher{Client: b.client}, Topic: b.dlq, ConsumerGroup: "g"}})
	require.NoError(b.t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: testWait}, nil)
	require.NoError(b.t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(b.t, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "h", Subscriber: sub, Topic: b.stream, Patterns: []string{"*"},
		Middleware: stack.Middleware}, func(_ context.Context, ev arc.Event) error { handle(ev); return nil })
	require.NoError(b.t, err)
	go func() { _ = events.Run(context.Background()) }()
	b.t.Cleanup(func() { _ = router.Close() })
}

// Foreign entries over MaxEntryBytes, and entries carrying two events
// (repeated type/data fields, of which Arc reads only the last), reach no
// handler: each is dead-lettered once with its reason. The oversized one
// is kept as an excerpt, and its dead letter is small; the other whole.
func TestDeadLetter_OversizedAndDoubledEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	big := strings.Repeat("x", 4<<20) // over the 3 MB a dead letter keeps whole
	bigID, err := b.client.Do(ctx, "XADD", b.stream, "*", "type", "order.big", "data", big).Text()
	require.NoError(t, err)
	doubled := []string{"type", "order.a", "data", `{"type":"order.a","payload":{},"meta":{"id":"e-1"}}`,
		"type", "order.b", "data", `{"type":"order.b","payload":{},"meta":{"id":"e-2"}}`}
	args := []any{"XADD", b.stream, "*"}
	for _, f := range doubled {
		args = append(args, f)
	}
	doubledID, err := b.client.Do(ctx, args...).Text()
	require.NoError(t, err)
	b.publish("order.ok", 1)

	var handled counter
	sub := b.subscriber(SubscriberConfig{MaxEntryBytes: 64 << 10})
	b.routedDeadLetters(sub, &handled)
	require.Eventually(t, func() bool { return handled.len() == 1 && b.xlen(b.dlq) == 2 && b.pending("g") == 0 },
		testWait, 10*time.Millisecond)

	dead, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", 0)
	require.NoError(t, err)
	byID := map[string]DeadLetterEntry{}
	for _, e := range dead {
		dl := mustDeadLetter(t, e)
		byID[dl.OriginalID] = dl
		size := 0
		for _, f := range e.Fields {
			size += len(f)
		}
		assert.Less(t, size, 64<<10, "a dead letter stays small")
	}
	over := byID[bigID]
	assert.Contains(t, over.Envelope.Error.Message, "over MaxEntryBytes")
	assert.Equal(t, int64(len("type")+len("order.big")+len("data")+len(big)), over.Truncated)
	assert.Equal(t, []string{"type", "order.big", "data", big[:1024]}, over.RawFields)
	two := byID[doubledID]
	assert.Contains(t, two.Envelope.Error.Message, "2 type and 2 data fields")
	assert.Equal(t, doubled, two.RawFields, "both events kept")
	assert.Zero(t, two.Truncated)
}
