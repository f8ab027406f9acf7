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
func connect(t testing.TB, url string) *nats.Conn {
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
		"negative max deliver":            {SubscriberConfig{Conn: conn, Group: "g", MaxDeliver: -2}.Validate(), "MaxDeliver"},
		"max deliver within the backoff":  {SubscriberConfig{Conn: conn, Group: "g", MaxDeliver: 3}.Validate(), "MaxDeliver"},
		"negative max ack pending":        {SubscriberConfig{Conn: conn, Group: "g", MaxAckPending: -1}.Validate(), "MaxAckPending"},
		"empty backoff":                   {SubscriberConfig{Conn: conn, Group: "g", BackOff: []time.Duration{}}.Validate(), "BackOff"},
		"zero backoff":                    {SubscriberConfig{Conn: conn, Group: "g", BackOff: []time.Duration{0}}.Validate(), "BackOff[0]"},
		"wildcard dead-letter subject":    {SubscriberConfig{Conn: conn, Group: "g", DeadLetterSubject: "dlq.>"}.Validate(), "DeadLetterSubject"},
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
	assert.Equal(t, DefaultMaxDeliver, sc.MaxDeliver)
	assert.Equal(t, DefaultMaxAckPending, sc.MaxAckPending)
	assert.Equal(t, DefaultBackOff(), sc.BackOff)
	assert.Equal(t, DefaultDeadLetterPrefix+".g", sc.DeadLetterSubject)
	require.NoError(t, SubscriberConfig{Conn: conn, Group: "g", MaxDeliver: NoMaxDeliver}.Validate())
}

// The exact flag tells the truth for each mode: Arc's "order.*" takes any
// depth (">"), SegmentMode's one token ("*"); what the server cannot match
// falls back to <prefix>.> for the wildcard router to filter.
func TestSubjectExactPerMode(t *testing.T) {
	t.Parallel()
	type want struct {
		subject string
		exact   bool
	}
	for _, tc := range []struct {
		mode    wildcard.Mode
		pattern string
		want    want
	}{
		{wildcard.ArcMode, "order.created", want{"arc.order.created", true}},
		{wildcard.ArcMode, "order.*", want{"arc.order.>", true}},
		{wildcard.ArcMode, "order.line.*", want{"arc.order.line.>", true}},
		{wildcard.ArcMode, "*", want{"arc.>", true}},
		{wildcard.ArcMode, "order:*", want{"arc.>", false}}, // Arc's colon prefix is no subject wildcard
		{wildcard.ArcMode, "order*", want{"arc.>", false}},
		{wildcard.ArcMode, "order placed.*", want{"arc.>", false}},
		{wildcard.ArcMode, "*.created", want{"arc.>", false}}, // a literal type in Arc, no subject
		{wildcard.ArcStreamsMode, "order:*", want{"arc.>", false}},
		{wildcard.SegmentMode, "order.*", want{"arc.order.*", true}},
		{wildcard.SegmentMode, "*.created", want{"arc.*.created", true}},
		{wildcard.SegmentMode, "order.>", want{"arc.order.>", true}},
		{wildcard.SegmentMode, "*", want{"arc.*", true}},
		{wildcard.SegmentMode, "order.>.x", want{"arc.>", false}},
		{wildcard.ArcMode, strings.Repeat("a.", 10000) + "*", want{"arc.>", false}},
		{wildcard.SegmentMode, strings.Repeat("a.", 10000) + ">", want{"arc.>", false}},
	} {
		subject, exact := SubjectMode("arc", tc.pattern, tc.mode)
		name := tc.mode.String() + " " + tc.pattern[:min(len(tc.pattern), 20)]
		assert.Equal(t, tc.want, want{subject, exact}, name)
		if tc.mode == wildcard.ArcMode {
			s, e := Subject("arc", tc.pattern)
			assert.Equal(t, tc.want, want{s, e}, "Subject is ArcMode: "+name)
		}
	}
}

func TestValidateSubject(t *testing.T) {
	t.Parallel()
	for subject, wildcards := range map[string]bool{"arc.order.created": false, "arc.order.>": true, "arc.*.x": true,
		strings.Repeat("a.", MaxSubjectTokens-1) + "a": false} {
		assert.NoError(t, ValidateSubject(subject, wildcards), subject)
	}
	for subject, wildcards := range map[string]bool{"": true, "arc..x": true, "arc.>.x": true, "arc.o*": true,
		"arc.order.>": false, "arc.a b": true, "arc.\t": false,
		strings.Repeat("a.", MaxSubjectTokens) + "a":            true,
		"arc." + strings.Repeat("x", MaxSubjectLength):          true,
		"arc." + strings.Repeat("x", MaxSubjectLength/2) + "\t": true,
	} {
		assert.ErrorIs(t, ValidateSubject(subject, wildcards), ErrInvalidSubject, subject[:min(len(subject), 20)])
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
	dlqPrefix, dlqStream := prefix+"dlq", stream+"_DLQ"
	require.NoError(t, EnsureStream(js, dlqStream, dlqPrefix))
	t.Cleanup(func() { assert.NoError(t, js.DeleteStream(dlqStream)) })

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
		DeadLetter: middleware.DeadLetterConfig{Publisher: pub, Topic: dlqPrefix + ".billing", ConsumerGroup: "billing",
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

	// The dead letter is stored, in its own stream: no "*" consumer of the
	// events sees it.
	dead, err := ReadDeadLetters(js, dlqStream, 0, 0)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "order.refunded", dead[0].Envelope.Event.Type)
	assert.Equal(t, middleware.ReasonRetryExhausted, dead[0].Envelope.Reason)
	assert.Equal(t, "refunds are not supported", dead[0].Envelope.Error.Message)
	info, err := js.StreamInfo(stream)
	require.NoError(t, err)
	assert.EqualValues(t, 4, info.State.Msgs, "the events' stream holds no dead letter")
	assert.ErrorIs(t, pub.Publish(prefix+".dlq", mustDeadLetterMessage(t)), ErrInvalidSubject,
		"a dead letter under the events' prefix is refused")

	bad, err := arc.NewEvent("order placed", nil, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(bad)
	require.NoError(t, err)
	assert.Error(t, pub.Publish("", msg), "a type that is no subject is refused")
}

// mustDeadLetterMessage is a message as middleware.DeadLetter publishes
// one.
func mustDeadLetterMessage(t *testing.T) *message.Message {
	t.Helper()
	msg := message.NewMessage(uuid.NewString(), []byte(`{}`))
	msg.Metadata.Set(middleware.MetadataDLQReason, middleware.ReasonRetryExhausted)
	return msg
}

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
