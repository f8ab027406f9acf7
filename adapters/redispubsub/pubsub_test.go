package redispubsub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

const (
	// waitTimeout bounds every wait for something that should happen, with
	// seconds to spare on a loaded machine: a wait ends at the event.
	waitTimeout = 30 * time.Second
	// pollInterval is how often a condition is checked.
	pollInterval = 10 * time.Millisecond
	// absenceWait is how long a test watches for something that must not
	// happen, where there is no signal to wait on.
	absenceWait = 100 * time.Millisecond
)

func newPubSub(t *testing.T, cfg Config) *PubSub {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
		cfg.CloseClient = true
	}
	ps, err := New(cfg)
	require.NoError(t, err)
	return ps
}

func mustMessage(t *testing.T, ev arc.Event) *message.Message {
	t.Helper()
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return msg
}

func mustMarshal(t *testing.T, ev arc.Event) []byte {
	t.Helper()
	b, err := arc.Marshal(ev)
	require.NoError(t, err)
	return b
}

func receive(t *testing.T, ch <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "%s: channel closed", what)
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("%s: nothing within %v", what, waitTimeout)
		return nil
	}
}

// What Watermill's universal suite would check, for a transport that keeps
// nothing (the suite publishes before subscribing in nearly every
// scenario, which at-most-once Pub/Sub cannot serve): order, back-pressure
// until ack, redelivery on nack, metadata, close.
func TestDeliverySemantics(t *testing.T) {
	t.Parallel()
	ps := newPubSub(t, Config{Codec: WatermillCodec{}})
	topic := "arcmill-test-" + uuid.NewString()
	msgs, err := ps.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	var sent []*message.Message
	for i := 0; i < 50; i++ {
		m := message.NewMessage(uuid.NewString(), []byte{byte(i)})
		m.Metadata.Set("i", string(rune('a'+i%26)))
		sent = append(sent, m)
	}
	require.NoError(t, ps.Publish(topic, sent...))

	first := receive(t, msgs, "first")
	select {
	case <-msgs:
		t.Fatal("a second message before the first was acked")
	case <-time.After(absenceWait):
	}
	first.Nack()
	again := receive(t, msgs, "redelivery")
	assert.Equal(t, first.UUID, again.UUID, "a nacked message comes again")
	again.Ack()
	for i := 1; i < 50; i++ {
		m := receive(t, msgs, "next")
		assert.Equal(t, sent[i].UUID, m.UUID, "in order")
		assert.Equal(t, sent[i].Metadata.Get("i"), m.Metadata.Get("i"))
		assert.Equal(t, sent[i].Payload, m.Payload)
		m.Ack()
	}
	require.NoError(t, ps.Close())
	_, open := <-msgs
	assert.False(t, open, "Close closes the channel")
	assert.ErrorIs(t, ps.Publish(topic, sent[0]), ErrClosed)
	_, err = ps.Subscribe(context.Background(), topic)
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, ps.Close(), "idempotent")
}

// Arc's wire: PUBLISH arc-events:<type> <event JSON>; a glob topic uses
// PSUBSCRIBE, a literal one SUBSCRIBE; ours and Arc's bodies read alike.
func TestArcWireOnRealRedis(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { assert.NoError(t, raw.Close()) })
	prefix := "arcmill-test-" + uuid.NewString()[:8]
	ps := newPubSub(t, Config{})
	t.Cleanup(func() { assert.NoError(t, ps.Close()) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	orders, err := ps.Subscribe(ctx, prefix+":order.*")
	require.NoError(t, err)
	exact, err := ps.Subscribe(ctx, prefix+":user.created")
	require.NoError(t, err)
	// Redis says which kind of subscription each one is.
	n, err := raw.Do(ctx, "PUBSUB", "NUMPAT").Int()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 1)
	subs := raw.PubSubNumSub(ctx, prefix+":user.created").Val()
	assert.Equal(t, int64(1), subs[prefix+":user.created"])

	// An Arc service publishes: its body, its channel.
	arcBody := `{"type":"order.created","payload":{"orderId":"o-1"},"meta":{"id":"e-1","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-1","hostKey":{"x":1}}}`
	require.NoError(t, raw.Publish(ctx, prefix+":order.created", arcBody).Err())
	require.NoError(t, raw.Publish(ctx, prefix+":order.created", "not json").Err())
	select {
	case m := <-orders:
		m.Ack()
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, arcBody, string(mustMarshal(t, ev)))
		assert.Equal(t, prefix+":order.created", m.Metadata.Get(MetadataChannel))
	case <-time.After(waitTimeout):
		t.Fatal("no event")
	}
	select {
	case m := <-orders:
		m.Ack()
		_, err := arc.FromMessage(m)
		assert.ErrorIs(t, err, arc.ErrMalformedEvent, "flagged, not dropped")
		assert.Equal(t, "not json", string(m.Payload))
	case <-time.After(waitTimeout):
		t.Fatal("malformed message dropped")
	}

	// We publish: Arc's channel and body; the count says who got it.
	ev, err := arc.NewEvent("user.created", map[string]string{"name": "Zoë <x>"}, arc.Meta{})
	require.NoError(t, err)
	msg := mustMessage(t, ev)
	counts, err := ps.PublishCount(prefix, msg)
	require.NoError(t, err)
	assert.Equal(t, []int64{1}, counts)
	select {
	case m := <-exact:
		m.Ack()
		got, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, string(mustMarshal(t, ev)), string(mustMarshal(t, got)))
	case <-time.After(waitTimeout):
		t.Fatal("no event on the exact channel")
	}
	_, err = ps.PublishCount(prefix, msg)
	require.NoError(t, err)
	receive(t, exact, "second publish").Ack()

	// Cancelling really unsubscribes (Arc's unsubscribe never UNSUBSCRIBEs).
	patternsBefore, err := raw.Do(context.Background(), "PUBSUB", "NUMPAT").Int()
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		return raw.PubSubNumSub(context.Background(), prefix+":user.created").Val()[prefix+":user.created"] == 0
	}, waitTimeout, pollInterval)
	require.Eventually(t, func() bool {
		n, err := raw.Do(context.Background(), "PUBSUB", "NUMPAT").Int()
		return err == nil && n < patternsBefore // server-wide: other clients may hold patterns
	}, waitTimeout, pollInterval, "pattern unsubscribed")

	_, err = ps.PublishCount(prefix, message.NewMessage("x", nil))
	assert.Error(t, err, "a message that is not an Arc event has no Arc channel")
	assert.True(t, IsPattern("a:*") && IsPattern("a:?") && IsPattern("a:[ab]") && !IsPattern("a:b"))
}

// Every refused Config wraps ErrInvalidConfig and names its field; zero
// values take the Default* constants.
func TestConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	for name, tc := range map[string]struct {
		cfg   Config
		field string
	}{
		"no client":                {Config{}, "Client"},
		"negative CloseTimeout":    {Config{Client: client, CloseTimeout: -2}, "CloseTimeout"},
		"negative MaxMessageBytes": {Config{Client: client, MaxMessageBytes: -2}, "MaxMessageBytes"},
		"negative codec MaxDepth":  {Config{Client: client, Codec: ArcCodec{Limits: arc.Limits{MaxDepth: -2}}}, "MaxDepth"},
	} {
		_, err := New(tc.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), tc.field, name)
		assert.ErrorIs(t, tc.cfg.Validate(), ErrInvalidConfig, name)
	}
	require.NoError(t, Config{Client: client, CloseTimeout: NoCloseTimeout}.Validate())
	ps, err := New(Config{Client: client})
	require.NoError(t, err)
	assert.Equal(t, DefaultCloseTimeout, ps.cfg.CloseTimeout)
	assert.Equal(t, DefaultMaxMessageBytes, ps.cfg.MaxMessageBytes)
	assert.Equal(t, ArcCodec{}, ps.cfg.Codec)
	select {
	case <-ps.Running():
	default:
		t.Fatal("a PubSub runs from New on")
	}
	require.NoError(t, ps.Close())
}

// ErrClosed is the shutdown cause arcmill's middleware recognises.
func TestErrClosedIsAShutdown(t *testing.T) {
	t.Parallel()
	assert.ErrorIs(t, ErrClosed, middleware.ErrShutdown)
	assert.ErrorIs(t, fmt.Errorf("wrapped: %w", ErrClosed), ErrClosed)
	assert.NotErrorIs(t, middleware.ErrShutdown, ErrClosed)
}

// Close stops reading at once, but a handler holding a message keeps its
// context for CloseTimeout: one that finishes in time is never cancelled,
// and Close returns nil.
func TestCloseLetsHandlersFinishWithinCloseTimeout(t *testing.T) {
	t.Parallel()
	ps := newPubSub(t, Config{Codec: WatermillCodec{}, CloseTimeout: waitTimeout})
	topic := "arcmill-test-" + uuid.NewString()
	msgs, err := ps.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	require.NoError(t, ps.Publish(topic, message.NewMessage(uuid.NewString(), nil)))
	m := receive(t, msgs, "message")

	closed := make(chan error, 1)
	go func() { closed <- ps.Close() }()
	// Close waits for the handler: no return while the message is held.
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while a handler held a message", err)
	case <-time.After(absenceWait):
	}
	assert.NoError(t, m.Context().Err(), "the handler's context lives on until CloseTimeout")
	m.Ack()
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return after the ack")
	}
	_, open := <-msgs
	assert.False(t, open)
}

// A handler that outlives CloseTimeout has its context cancelled with
// ErrClosed as the cause (middleware.IsShutdown), and Close says how many
// messages it could not finish.
func TestCloseCancelsHandlersPastCloseTimeoutWithErrClosed(t *testing.T) {
	t.Parallel()
	const closeTimeout = 50 * time.Millisecond
	ps := newPubSub(t, Config{Codec: WatermillCodec{}, CloseTimeout: closeTimeout})
	topic := "arcmill-test-" + uuid.NewString()
	msgs, err := ps.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	require.NoError(t, ps.Publish(topic, message.NewMessage(uuid.NewString(), nil)))
	m := receive(t, msgs, "message")

	start := time.Now()
	err = ps.Close()
	require.ErrorIs(t, err, ErrCloseTimeout)
	assert.Contains(t, err.Error(), "1 message(s)")
	assert.GreaterOrEqual(t, time.Since(start), closeTimeout)
	require.Error(t, m.Context().Err())
	assert.ErrorIs(t, context.Cause(m.Context()), ErrClosed)
	assert.True(t, middleware.IsShutdown(m.Context()))
	select {
	case <-ps.Closed():
	default:
		t.Fatal("Closed not closed after Close returned")
	}
}

// The same when the subscription's own context ends: reading stops, the
// handler keeps its context for CloseTimeout, then it is cancelled with
// ErrClosed, never with the subscription's plain cancel.
func TestEndedSubscriptionCancelsHandlersWithErrClosed(t *testing.T) {
	t.Parallel()
	ps := newPubSub(t, Config{Codec: WatermillCodec{}, CloseTimeout: NoCloseTimeout})
	t.Cleanup(func() { assert.NoError(t, ps.Close()) })
	topic := "arcmill-test-" + uuid.NewString()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := ps.Subscribe(ctx, topic)
	require.NoError(t, err)
	require.NoError(t, ps.Publish(topic, message.NewMessage(uuid.NewString(), nil)))
	m := receive(t, msgs, "message")
	cancel()
	select {
	case <-m.Context().Done():
	case <-time.After(waitTimeout):
		t.Fatal("handler context not cancelled")
	}
	assert.ErrorIs(t, context.Cause(m.Context()), ErrClosed)
}

// Subscribe, cancel and Close called at the same time from 10 goroutines,
// 20 cycles each, on one PubSub and then on fresh ones: no race, no
// panic, Subscribe after Close fails with ErrClosed, every channel closes,
// and no goroutine of the package is left.
func TestConcurrentSubscribeCloseLeavesNothing(t *testing.T) {
	const goroutines, cycles = 10, 20
	addr := testenv.RedisAddr(t)
	shared := newPubSub(t, Config{})
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; c < cycles; c++ {
				if !stressCycle(t, addr, shared, fmt.Sprintf("arcmill-test-stress-%d-%d", g, c), c%2 == 1) {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, shared.Close())
	_, err := shared.Subscribe(context.Background(), "after-close")
	require.ErrorIs(t, err, ErrClosed)
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/redispubsub", waitTimeout)
}

// stressCycle subscribes once: on shared, ended by cancelling, or on a
// PubSub of its own whose Close races the Subscribe. It reports false
// once the test has failed.
func stressCycle(t *testing.T, addr string, shared *PubSub, topic string, own bool) bool {
	ps := shared
	closed := make(chan struct{})
	if own {
		var err error
		ps, err = New(Config{Client: redis.NewClient(&redis.Options{Addr: addr}), CloseClient: true})
		if !assert.NoError(t, err) {
			return false
		}
		go func() { // Close racing Subscribe
			defer close(closed)
			assert.NoError(t, ps.Close())
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := ps.Subscribe(ctx, topic)
	if err != nil {
		assert.ErrorIs(t, err, ErrClosed)
	} else {
		if !own {
			cancel()
		}
		select {
		case _, open := <-ch:
			assert.False(t, open, "nothing was published")
		case <-time.After(waitTimeout):
			assert.Fail(t, "the subscription's channel did not close")
		}
	}
	if own {
		<-closed
		assert.NoError(t, ps.Close(), "Close after Close")
	}
	return !t.Failed()
}

// discardPublisher records dead letters, to show there are none.
type discardPublisher struct {
	mu  sync.Mutex
	got []*message.Message
}

func (d *discardPublisher) Publish(_ string, msgs ...*message.Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, msgs...)
	return nil
}

func (d *discardPublisher) Close() error { return nil }

// With arcmill's middleware stack on a handler that is still working when
// the PubSub closes: the handler's context ends with ErrClosed after
// CloseTimeout, Retry does not count that failure as an attempt or retry
// it, and DeadLetter nacks instead of dead-lettering.
func TestShutdownIsNoFailureForTheMiddleware(t *testing.T) {
	t.Parallel()
	const closeTimeout = 50 * time.Millisecond
	ps := newPubSub(t, Config{CloseTimeout: closeTimeout})
	dlq := &discardPublisher{}
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 5, Backoff: middleware.NoBackoff},
		DeadLetter: middleware.DeadLetterConfig{Publisher: dlq, Topic: "dlq"},
	})
	require.NoError(t, err)
	var calls int
	started := make(chan struct{})
	handler := message.HandlerFunc(func(m *message.Message) ([]*message.Message, error) {
		calls++
		close(started)
		<-m.Context().Done() // a handler that waits on its dependency until it is cancelled
		return nil, fmt.Errorf("dependency: %w", context.Cause(m.Context()))
	})
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		handler = stack.Middleware[i](handler)
	}

	prefix := "arcmill-test-" + uuid.NewString()[:8]
	msgs, err := ps.Subscribe(context.Background(), prefix+":order.*")
	require.NoError(t, err)
	ev, err := arc.NewEvent("order.created", nil, arc.Meta{})
	require.NoError(t, err)
	require.NoError(t, ps.Publish(prefix, mustMessage(t, ev)))
	m := receive(t, msgs, "event")
	result := make(chan error, 1)
	go func() {
		_, err := handler(m)
		result <- err
	}()
	<-started
	require.ErrorIs(t, ps.Close(), ErrCloseTimeout)
	select {
	case err := <-result:
		require.ErrorIs(t, err, middleware.ErrShutdown, "nacked as a shutdown")
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(waitTimeout):
		t.Fatal("the handler chain did not return after its context ended")
	}
	assert.Equal(t, 1, calls, "no retry of a shutdown")
	assert.Zero(t, stack.Retry.Retried())
	dlq.mu.Lock()
	assert.Empty(t, dlq.got, "no dead letter")
	dlq.mu.Unlock()
}
