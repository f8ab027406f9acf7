package natsjs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

const (
	// waitTimeout bounds every wait for something that should happen.
	waitTimeout = 10 * time.Second
	// pollInterval is how often a condition is checked.
	pollInterval = 10 * time.Millisecond
)

// connect opens a connection of its own for a publisher or subscriber,
// whose Close closes it.
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	return nc
}

// Every refused config wraps ErrInvalidConfig and names its field; zero
// values take the Default* constants.
func TestConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	conn := &nats.Conn{} // never used: validation fails first, or nothing is sent
	for name, tc := range map[string]struct {
		err   error
		field string
	}{
		"publisher without a connection":  {PublisherConfig{}.Validate(), "Conn"},
		"prefix with a wildcard":          {PublisherConfig{Conn: conn, Prefix: "arc.*"}.Validate(), "Prefix"},
		"subscriber without a connection": {SubscriberConfig{Group: "g"}.Validate(), "Conn"},
		"subscriber without a group":      {SubscriberConfig{Conn: conn}.Validate(), "Group"},
		"group with a dot":                {SubscriberConfig{Conn: conn, Group: "a.b"}.Validate(), "Group"},
		"negative close timeout":          {SubscriberConfig{Conn: conn, Group: "g", CloseTimeout: -1}.Validate(), "CloseTimeout"},
		"negative ack wait":               {SubscriberConfig{Conn: conn, Group: "g", AckWaitTimeout: -1}.Validate(), "AckWaitTimeout"},
	} {
		require.ErrorIs(t, tc.err, ErrInvalidConfig, name)
		assert.Contains(t, tc.err.Error(), tc.field, name)
	}
	_, err := NewPublisher(PublisherConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewSubscriber(SubscriberConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	pc := PublisherConfig{Conn: conn}
	pc.setDefaults()
	assert.Equal(t, DefaultPrefix, pc.Prefix)
	sc := SubscriberConfig{Conn: conn, Group: "g"}
	sc.setDefaults()
	assert.Equal(t, DefaultCloseTimeout, sc.CloseTimeout)
	assert.Equal(t, DefaultAckWaitTimeout, sc.AckWaitTimeout)
}

func TestSubject(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]struct {
		subject string
		exact   bool
	}{
		"order.created":  {"arc.order.created", true},
		"order.*":        {"arc.order.>", true},
		"order.line.*":   {"arc.order.line.>", true},
		"*":              {"arc.>", true},
		"order:*":        {"arc.>", false}, // Arc's colon prefix is no subject wildcard
		"order*":         {"arc.>", false},
		"order placed.*": {"arc.>", false},
	} {
		got, exact := Subject("arc", pattern)
		assert.Equal(t, want.subject, got, pattern)
		assert.Equal(t, want.exact, exact, pattern)
	}
}

// The same Arc handlers and wildcard router as on Redis, on a real NATS
// JetStream: subjects per type, patterns as filtered durable consumers,
// retry then dead letter, nothing delivered twice.
func TestWildcardRouterOnJetStream(t *testing.T) {
	t.Parallel()
	url := testenv.NatsURL(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close) // after the stream is deleted: cleanups run last first
	js, err := nc.JetStream()
	require.NoError(t, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix, stream := "arcmilltest"+id, "ARCMILL_TEST_"+id
	require.NoError(t, EnsureStream(js, stream, prefix))
	require.NoError(t, EnsureStream(js, stream, prefix), "idempotent")
	t.Cleanup(func() { assert.NoError(t, js.DeleteStream(stream)) })

	logger := watermill.NopLogger{}
	pub, err := NewPublisher(PublisherConfig{Conn: connect(t, url), Prefix: prefix, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, pub.Close()) })
	sub, err := NewSubscriber(SubscriberConfig{Conn: connect(t, url), Group: "billing", Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })

	dlq := make(chan middleware.DeadLetteredEvent, 4)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: 1, Backoff: time.Millisecond},
		DeadLetter: middleware.DeadLetterConfig{Publisher: discard{}, Topic: "dlq",
			OnDeadLetter: func(dl middleware.DeadLetteredEvent) { dlq <- dl }},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 2 * time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(t, err)

	var mu sync.Mutex
	got := map[string][]string{}
	handle := func(name, pattern string) {
		subject, exact := Subject(prefix, pattern)
		require.True(t, exact, pattern)
		_, err := events.Handle(wildcard.HandlerConfig{Name: name, Subscriber: sub, Topic: subject,
			Patterns: []string{pattern}, Middleware: stack.Middleware}, func(_ context.Context, ev arc.Event) error {
			mu.Lock()
			got[name] = append(got[name], ev.Type)
			mu.Unlock()
			if name == "orders" && ev.Type == "order.refunded" {
				return errors.New("refunds are not supported")
			}
			return nil
		})
		require.NoError(t, err)
	}
	handle("orders", "order.*")
	handle("audit", "*")
	handle("payments", "payment.captured")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	select {
	case <-events.Running():
	case <-time.After(waitTimeout):
		t.Fatal("router not running")
	}

	for _, typ := range []string{"order.created", "payment.captured", "order.refunded", "user.signed_up"} {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish("ignored", msg))
	}
	select {
	case dl := <-dlq:
		assert.Equal(t, "order.refunded", dl.Event.Type)
		assert.Equal(t, "orders", dl.HandlerName)
	case <-time.After(waitTimeout):
		t.Fatal("no dead letter")
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["audit"]) == 4 && len(got["payments"]) == 1
	}, waitTimeout, pollInterval)
	// Every consumer has delivered everything and holds no unacked
	// delivery: no redelivery can come.
	for _, pattern := range []string{"order.*", "*", "payment.captured"} {
		subject, _ := Subject(prefix, pattern)
		require.Eventually(t, func() bool {
			info, err := js.ConsumerInfo(stream, durableName("billing", subject))
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		}, waitTimeout, pollInterval, pattern)
	}
	mu.Lock()
	assert.ElementsMatch(t, []string{"order.created", "order.refunded", "order.refunded"}, got["orders"],
		"the server filtered order.* (the refund tried twice, then dead-lettered)")
	assert.ElementsMatch(t, []string{"order.created", "payment.captured", "order.refunded", "user.signed_up"}, got["audit"])
	assert.Equal(t, []string{"payment.captured"}, got["payments"])
	mu.Unlock()

	// Each pattern is a durable consumer filtered on its subject.
	consumer, err := js.ConsumerInfo(stream, durableName("billing", prefix+".order.>"))
	require.NoError(t, err)
	assert.Equal(t, prefix+".order.>", consumer.Config.FilterSubject)
	assert.Zero(t, consumer.NumAckPending, "every delivery acknowledged")

	bad, err := arc.NewEvent("order placed", nil, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(bad)
	require.NoError(t, err)
	assert.Error(t, pub.Publish("", msg), "a type that is no subject is refused")
}

type discard struct{}

func (discard) Publish(string, ...*message.Message) error { return nil }
func (discard) Close() error                              { return nil }

// Subjects that look alike get different consumers, and a type with a '/'
// (legal in a subject) still gets a valid consumer name.
func TestDurableNames(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, subject := range []string{"p.order.>", "p.order.all", "p.>", "p.all", "p.order.created", "p.order_created", "p.a/b"} {
		name := durableName("billing", subject)
		assert.Regexp(t, `^[A-Za-z0-9_-]+$`, name, subject)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the consumer %s", subject, other, name)
		}
		seen[name] = subject
	}
	url := testenv.NatsURL(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close) // after the stream is deleted: cleanups run last first
	js, err := nc.JetStream()
	require.NoError(t, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix, stream := "arcmilldur"+id, "ARCMILL_DUR_"+id
	require.NoError(t, EnsureStream(js, stream, prefix))
	t.Cleanup(func() { assert.NoError(t, js.DeleteStream(stream)) })
	sub, err := NewSubscriber(SubscriberConfig{Conn: connect(t, url), Group: "billing"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, pattern := range []string{"order.*", "order.all", "a/b.c"} {
		subject, _ := Subject(prefix, pattern)
		_, err := sub.Subscribe(ctx, subject)
		require.NoError(t, err, pattern)
	}
}
