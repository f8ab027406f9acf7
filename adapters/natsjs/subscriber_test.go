package natsjs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// bundle is one test's own streams on the real server.
type bundle struct {
	url, prefix, stream, dlqPrefix, dlqStream string
	js                                        nats.JetStreamContext
	pub                                       *Publisher
}

func setup(t *testing.T) *bundle {
	t.Helper()
	url := testenv.NatsURL(t)
	nc := connect(t, url)
	t.Cleanup(nc.Close) // after the streams are deleted: cleanups run last first
	js, err := nc.JetStream()
	require.NoError(t, err)
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	b := &bundle{url: url, prefix: "arcmillt" + id, stream: "ARCMILL_T_" + id, js: js}
	b.dlqPrefix, b.dlqStream = b.prefix+"dlq", b.stream+"_DLQ"
	require.NoError(t, EnsureStream(js, b.stream, b.prefix))
	require.NoError(t, EnsureStream(js, b.dlqStream, b.dlqPrefix))
	t.Cleanup(func() {
		assert.NoError(t, js.DeleteStream(b.stream))
		assert.NoError(t, js.DeleteStream(b.dlqStream))
	})
	b.pub, err = NewPublisher(PublisherConfig{Conn: connect(t, url), Prefix: b.prefix})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.pub.Close()) })
	return b
}

// publish publishes an event of type typ and returns its id.
func (b *bundle) publish(t *testing.T, typ string) string {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, b.pub.Publish("", msg))
	return ev.Meta.ID
}

// subscriber returns a Subscriber of group g on its own connection.
func (b *bundle) subscriber(t *testing.T, cfg SubscriberConfig) *Subscriber {
	t.Helper()
	cfg.Conn = connect(t, b.url)
	if cfg.Group == "" {
		cfg.Group = "g"
	}
	if cfg.DeadLetterSubject == "" {
		cfg.DeadLetterSubject = b.dlqPrefix + "." + cfg.Group
	}
	sub, err := NewSubscriber(cfg)
	require.NoError(t, err)
	return sub
}

// consumerExists reports whether the group's consumer of subject is on
// the server.
func (b *bundle) consumer(t *testing.T, group, subject string) *nats.ConsumerInfo {
	t.Helper()
	info, err := b.js.ConsumerInfo(b.stream, durableName(group, subject))
	require.NoError(t, err, "the durable consumer of %s is on the server", subject)
	return info
}

// recorder collects the event ids handlers saw, safe for several
// goroutines.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorder) add(id string) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.ids {
		if x == id {
			n++
		}
	}
	return n
}

// ackAll acks every message of msgs and records its UUID (the event id).
func ackAll(msgs <-chan *message.Message, r *recorder) {
	for m := range msgs {
		r.add(m.UUID)
		m.Ack()
	}
}

// A graceful Close leaves the durable consumer and its acknowledged
// position on the server: the next start receives what came after, and
// nothing that was acknowledged comes back.
func TestSubscriber_CloseKeepsDurableConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	first := []string{b.publish(t, "order.created"), b.publish(t, "order.paid")}

	sub := b.subscriber(t, SubscriberConfig{})
	msgs, err := sub.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	var seen recorder
	done := make(chan struct{})
	go func() { ackAll(msgs, &seen); close(done) }()
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.AckFloor.Stream == 2 && info.NumAckPending == 0
	}, waitTimeout, pollInterval)
	require.NoError(t, sub.Close())
	<-done
	info := b.consumer(t, "g", subject)
	assert.EqualValues(t, 2, info.AckFloor.Stream, "the position survives Close")

	later := b.publish(t, "order.shipped")
	again := b.subscriber(t, SubscriberConfig{})
	t.Cleanup(func() { assert.NoError(t, again.Close()) })
	msgs, err = again.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	var after recorder
	go ackAll(msgs, &after)
	require.Eventually(t, func() bool { return after.count(later) == 1 }, waitTimeout, pollInterval)
	for _, id := range first {
		assert.Equal(t, 1, seen.count(id))
		assert.Zero(t, after.count(id), "an acknowledged event is not replayed after a restart")
	}
}

// Environment of the subscriber process TestSubscriber_KillChild runs:
// "<url>|<prefix>|<dead-letter subject>|<report subject>".
const killChildEnv = "ARCMILL_TEST_NATS_KILL_CHILD"

// TestSubscriber_KillChild is the group member the kill test runs and
// SIGKILLs; it does nothing in a normal run. It acks each message, then
// reports its UUID on the report subject.
func TestSubscriber_KillChild(t *testing.T) {
	spec := os.Getenv(killChildEnv)
	if spec == "" {
		t.Skip("the child of TestSubscriber_SurvivesSIGKILLOfAMember; not run on its own")
	}
	parts := strings.Split(spec, "|")
	require.Len(t, parts, 4)
	url, prefix, dlq, report := parts[0], parts[1], parts[2], parts[3]
	nc := connect(t, url)
	sub, err := NewSubscriber(SubscriberConfig{Conn: connect(t, url), Group: "g", DeadLetterSubject: dlq})
	require.NoError(t, err)
	msgs, err := sub.Subscribe(context.Background(), prefix+".>")
	require.NoError(t, err)
	for m := range msgs { // until killed
		m.Ack()
		require.NoError(t, nc.Publish(report, []byte(m.UUID)))
		require.NoError(t, nc.Flush())
	}
}

// A group of two instances: one is SIGKILLed and restarted, the other
// stops gracefully. The consumer survives both, the other member keeps
// receiving throughout (an event published while the first is down is
// handled), and nothing acknowledged comes back.
func TestSubscriber_SurvivesSIGKILLOfAMember(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	report := "_arcmilltest.report." + b.stream
	nc := connect(t, b.url)
	t.Cleanup(nc.Close)
	var handled recorder // by either member
	reports, err := nc.Subscribe(report, func(m *nats.Msg) { handled.add(string(m.Data)) })
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, reports.Unsubscribe()) })
	startChild := func() *exec.Cmd {
		child := exec.Command(os.Args[0], "-test.run=^TestSubscriber_KillChild$", "-test.count=1")
		child.Env = append(os.Environ(), killChildEnv+"="+strings.Join([]string{b.url, b.prefix,
			b.dlqPrefix + ".g", report}, "|"))
		require.NoError(t, child.Start())
		return child
	}
	kill := func(child *exec.Cmd) {
		require.NoError(t, child.Process.Kill()) // SIGKILL
		_ = child.Wait()                         // "signal: killed", by design
	}
	waitHandled := func(ids ...string) {
		t.Helper()
		require.Eventually(t, func() bool {
			for _, id := range ids {
				if handled.count(id) == 0 {
					return false
				}
			}
			return true
		}, DefaultAckWaitTimeout+waitTimeout, pollInterval) // the server may have pushed one to the member just killed: it comes again after AckWait
	}

	var before []string
	for range 5 {
		before = append(before, b.publish(t, "order.created"))
	}
	child := startChild()
	waitHandled(before...)

	member := b.subscriber(t, SubscriberConfig{})
	msgs, err := member.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	memberDone := make(chan struct{})
	go func() {
		for m := range msgs {
			handled.add(m.UUID)
			m.Ack()
		}
		close(memberDone)
	}()

	kill(child)
	b.consumer(t, "g", subject) // survives the SIGKILL
	during := b.publish(t, "order.paid")
	waitHandled(during) // by the other member, while the first is down

	child = startChild()
	t.Cleanup(func() { kill(child) })
	var after []string
	for range 10 {
		after = append(after, b.publish(t, "order.shipped"))
	}
	waitHandled(after...)

	require.NoError(t, member.Close()) // graceful: the consumer stays for the child
	<-memberDone
	b.consumer(t, "g", subject)
	last := b.publish(t, "order.closed")
	waitHandled(last) // the child alone now
	for _, id := range before {
		assert.Equal(t, 1, handled.count(id), "acknowledged before the kill, never redelivered")
	}
	assert.Equal(t, 1, handled.count(during))
}

// A nack is redelivered after BackOff's wait, never at once (no hot
// loop); after MaxDeliver deliveries JetStream gives up, and its advisory
// becomes a dead letter in the dead-letter stream, for an event and for a
// message that is no event.
func TestSubscriber_MaxDeliverDeadLettersWithBackOff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const maxDeliver, backOff = 3, 200 * time.Millisecond
	subject := b.prefix + ".>"
	logger := watermill.NewCaptureLogger()
	sub := b.subscriber(t, SubscriberConfig{MaxDeliver: maxDeliver, BackOff: []time.Duration{backOff},
		AckWaitTimeout: 5 * time.Second, Logger: logger})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	info := b.consumer(t, "g", subject)
	assert.Equal(t, maxDeliver, info.Config.MaxDeliver)
	assert.Equal(t, []time.Duration{5*time.Second + backOff}, info.Config.BackOff)

	var mu sync.Mutex
	deliveries := map[string][]time.Time{}
	go func() {
		for m := range msgs {
			mu.Lock()
			deliveries[m.UUID] = append(deliveries[m.UUID], time.Now())
			mu.Unlock()
			m.Nack()
		}
	}()
	id := b.publish(t, "order.created")
	_, err = b.js.Publish(b.prefix+".junk", []byte("not an event"), nats.MsgId("junk-1"))
	require.NoError(t, err)

	var dead []DeadLetter
	require.Eventually(t, func() bool {
		dead, err = ReadDeadLetters(b.js, b.dlqStream, 0, 0)
		require.NoError(t, err)
		return len(dead) == 2
	}, waitTimeout, pollInterval)
	mu.Lock()
	for _, uid := range []string{id, "junk-1"} {
		times := deliveries[uid]
		assert.Len(t, times, maxDeliver, uid)
		for i := 1; i < len(times); i++ {
			assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), backOff, "redelivery %d of %s waited BackOff", i, uid)
		}
	}
	mu.Unlock()
	byType := map[string]DeadLetter{}
	for _, d := range dead {
		byType[d.Envelope.Event.Type] = d
	}
	ev := byType["order.created"].Envelope
	assert.Equal(t, id, ev.Event.Meta.ID)
	assert.Equal(t, middleware.ReasonRetryExhausted, ev.Reason)
	assert.Equal(t, maxDeliver, ev.Attempts)
	assert.Equal(t, "g", ev.ConsumerGroup)
	assert.Equal(t, b.prefix+".order.created", ev.SourceTopic)
	assert.Contains(t, ev.Error.Message, "MaxDeliver")
	junk := byType["<unknown>"].Envelope
	assert.Equal(t, middleware.ReasonMalformed, junk.Reason)
	require.NotNil(t, junk.Raw)
	assert.Equal(t, "not an event", junk.Raw.Payload)
	assert.Equal(t, b.dlqPrefix+".g", byType["<unknown>"].Subject)

	// Each dead letter is logged at Error, with its reason, as
	// middleware.DeadLetter logs them: someone must look at it. The line
	// comes after the dead letter is stored.
	reasons := map[any]string{}
	require.Eventually(t, func() bool {
		for _, l := range logger.Captured()[watermill.ErrorLogLevel] {
			if l.Msg == "Message given up by JetStream dead-lettered" {
				reasons[l.Fields["reason"]] = l.Err.Error()
			}
		}
		return len(reasons) == 2
	}, waitTimeout, pollInterval, "two dead letters logged at Error: %v", reasons)
	assert.Contains(t, reasons[middleware.ReasonRetryExhausted], "MaxDeliver")
	assert.Contains(t, reasons, middleware.ReasonMalformed)
}

// A delayed-retry copy carries the event id as its UUID, yet gets a Nats-Msg-Id
// of its own, so JetStream's duplicate window does not drop it; a plain
// republish inside the window is still dropped. The subscriber holds the
// copy back until its delay has passed.
func TestPublisher_DelayedRetryGetsFreshMsgID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev, err := arc.NewEvent("order.created", nil, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, b.pub.Publish("", msg))
	require.NoError(t, b.pub.Publish("", msg.Copy()), "a republish")
	retry := msg.Copy()
	retry.Metadata.Set(middleware.MetadataDelayedRetries, "1")
	const wait = 2 * time.Second
	delay.Message(retry, delay.For(wait))
	published := time.Now()
	require.NoError(t, b.pub.Publish("", retry))
	assert.Equal(t, ev.Meta.ID+".retry.1", MsgID(retry))
	info, err := b.js.StreamInfo(b.stream)
	require.NoError(t, err)
	assert.EqualValues(t, 2, info.State.Msgs, "the event once, its delayed retry once")

	sub := b.subscriber(t, SubscriberConfig{})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(context.Background(), b.prefix+".>")
	require.NoError(t, err)
	for range 2 {
		select {
		case m := <-msgs:
			if m.Metadata.Get(middleware.MetadataDelayedRetries) == "1" {
				// DelayedUntil is written in whole seconds.
				assert.GreaterOrEqual(t, time.Since(published), wait-time.Second, "held back until its delay")
			}
			m.Ack()
		case <-time.After(waitTimeout):
			t.Fatal("not delivered")
		}
	}
}

// A subject the server would refuse (here 10,000 tokens, which closed the
// connection and broke every later subscription) is refused before
// anything is sent: the connection stays up and the next subscription
// works.
func TestSubscriber_RefusesOversizedSubjectBeforeServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.subscriber(t, SubscriberConfig{})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	_, err := sub.Subscribe(context.Background(), b.prefix+"."+strings.Repeat("a.", 10000)+">")
	require.ErrorIs(t, err, ErrInvalidSubject)
	_, err = sub.Subscribe(context.Background(), b.prefix+".a b")
	require.ErrorIs(t, err, ErrInvalidSubject)
	assert.True(t, sub.cfg.Conn.IsConnected())
	msgs, err := sub.Subscribe(context.Background(), b.prefix+".order.>")
	require.NoError(t, err)
	id := b.publish(t, "order.created")
	select {
	case m := <-msgs:
		assert.Equal(t, id, m.UUID)
		m.Ack()
	case <-time.After(waitTimeout):
		t.Fatal("the subscription after the refused one receives nothing")
	}
	msg := message.NewMessage(uuid.NewString(), []byte(`{}`)) // arc refuses such a type; a raw message can carry it
	msg.Metadata.Set(arc.MetadataType, strings.Repeat("a.", 10000)+"a")
	assert.ErrorIs(t, b.pub.Publish("", msg), ErrInvalidSubject, "the publisher checks too")
}

// Close waits CloseTimeout for a handler, then cancels its message's
// context with ErrClosed (a middleware.ErrShutdown, so no attempt is
// burnt) and nacks it at once: another member receives it without waiting
// for the ack deadline.
func TestSubscriber_CloseCancelsStuckHandlerWithErrClosed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	stuck := b.subscriber(t, SubscriberConfig{CloseTimeout: 100 * time.Millisecond})
	msgs, err := stuck.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	id := b.publish(t, "order.created")
	var held *message.Message
	select {
	case held = <-msgs:
	case <-time.After(waitTimeout):
		t.Fatal("not delivered")
	}
	assert.Equal(t, "1", held.Metadata.Get(MetadataDelivered))
	require.NoError(t, stuck.Close()) // the handler never settles
	select {
	case <-held.Context().Done():
	default:
		t.Fatal("the message's context is not cancelled after CloseTimeout")
	}
	assert.ErrorIs(t, context.Cause(held.Context()), ErrClosed)
	assert.True(t, middleware.IsShutdown(held.Context()))

	other := b.subscriber(t, SubscriberConfig{})
	t.Cleanup(func() { assert.NoError(t, other.Close()) })
	msgs, err = other.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		assert.Equal(t, id, m.UUID)
		assert.Equal(t, "2", m.Metadata.Get(MetadataDelivered))
		m.Ack()
	case <-time.After(DefaultAckWaitTimeout / 2):
		t.Fatal("the nacked message waited for its ack deadline")
	}
}

// A handler slower than the ack wait keeps its message: the subscriber
// reports progress, so the server neither redelivers it to another member
// nor counts a delivery.
func TestSubscriber_SlowHandlerKeepsItsMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	// Progress is reported every ackWait/2: an ack wait this long survives
	// a report stalled by hundreds of ms on a loaded machine.
	const ackWait, backOff = 1500 * time.Millisecond, 50 * time.Millisecond
	cfg := SubscriberConfig{AckWaitTimeout: ackWait, BackOff: []time.Duration{backOff}, MaxDeliver: 2}
	slow, idle := b.subscriber(t, cfg), b.subscriber(t, cfg)
	t.Cleanup(func() { assert.NoError(t, slow.Close()) })
	t.Cleanup(func() { assert.NoError(t, idle.Close()) })
	slowMsgs, err := slow.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	b.publish(t, "order.created")
	var m *message.Message
	select {
	case m = <-slowMsgs:
	case <-time.After(waitTimeout):
		t.Fatal("not delivered")
	}
	idleMsgs, err := idle.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	select {
	case other := <-idleMsgs:
		t.Fatalf("redelivered to the other member while the handler worked: %s", other.UUID)
	case <-time.After(2 * (ackWait + backOff)): // the handler's work: two ack waits
	}
	// A redelivery may go to the slow member itself, which holds it behind
	// the handler: the server's count of deliveries tells.
	assert.EqualValues(t, 1, b.consumer(t, "g", subject).Delivered.Consumer, "redelivered while the handler worked")
	m.Ack()
	require.Eventually(t, func() bool {
		info := b.consumer(t, "g", subject)
		return info.NumAckPending == 0 && info.AckFloor.Stream == 1
	}, waitTimeout, pollInterval)
	assert.Zero(t, b.consumer(t, "g", subject).NumRedelivered)
}

// When middleware.DeadLetter cannot store a dead letter (its subject has
// no stream), the message is nacked with BackOff's delay, not in a hot
// loop, and after MaxDeliver deliveries the subscriber's own dead letter
// stores it: nothing is lost, and the handler ran MaxDeliver times.
func TestSubscriber_FailedDeadLetterPublishIsNoHotLoop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const maxDeliver, backOff = 3, 150 * time.Millisecond
	sub := b.subscriber(t, SubscriberConfig{MaxDeliver: maxDeliver, BackOff: []time.Duration{backOff}})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: b.pub, Topic: "nostream" + b.stream + ".dlq"},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	var attempts []time.Time
	h := func(*message.Message) error {
		mu.Lock()
		attempts = append(attempts, time.Now())
		mu.Unlock()
		return errors.New("poison")
	}
	router.AddConsumerHandler("poison", b.prefix+".>", sub, func(msg *message.Message) error {
		_, err := chain(stack.Middleware, func(m *message.Message) ([]*message.Message, error) { return nil, h(m) })(msg)
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	id := b.publish(t, "order.created")

	var dead []DeadLetter
	require.Eventually(t, func() bool {
		dead, err = ReadDeadLetters(b.js, b.dlqStream, 0, 0)
		require.NoError(t, err)
		return len(dead) == 1
	}, waitTimeout, pollInterval)
	assert.Equal(t, id, dead[0].Envelope.Event.Meta.ID)
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, attempts, maxDeliver, "one attempt per delivery, no hot loop")
	for i := 1; i < len(attempts); i++ {
		assert.GreaterOrEqual(t, attempts[i].Sub(attempts[i-1]), backOff)
	}
	assert.EqualValues(t, maxDeliver, stack.DeadLetter.Stats().PublishFailures, "each delivery's dead letter failed")
}

// chain applies middleware, the first outermost, as a router does.
func chain(mws []message.HandlerMiddleware, h message.HandlerFunc) message.HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// A consumer left by an earlier version (created by nats.go on subscribe,
// no MaxDeliver, no BackOff) is brought to the configured limits in place,
// keeping its position and deliver subject.
func TestSubscriber_UpdatesAnEarlierConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subject := b.prefix + ".>"
	durable := durableName("g", subject)
	_, err := b.js.AddConsumer(b.stream, &nats.ConsumerConfig{Durable: durable, DeliverSubject: "_INBOX.old" + b.stream,
		DeliverGroup: durable, FilterSubject: subject, AckPolicy: nats.AckExplicitPolicy, AckWait: DefaultAckWaitTimeout})
	require.NoError(t, err)
	sub := b.subscriber(t, SubscriberConfig{})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(context.Background(), subject)
	require.NoError(t, err)
	info := b.consumer(t, "g", subject)
	assert.Equal(t, DefaultMaxDeliver, info.Config.MaxDeliver)
	assert.Len(t, info.Config.BackOff, len(DefaultBackOff()))
	assert.Equal(t, "_INBOX.old"+b.stream, info.Config.DeliverSubject)
	id := b.publish(t, "order.created")
	select {
	case m := <-msgs:
		assert.Equal(t, id, m.UUID)
		m.Ack()
	case <-time.After(waitTimeout):
		t.Fatal("not delivered through the updated consumer")
	}
}

// A dead-letter subject in the events' own stream is refused: its dead
// letters would reach every "*" consumer.
func TestSubscriber_RefusesDeadLettersInTheEventsStream(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.subscriber(t, SubscriberConfig{DeadLetterSubject: b.prefix + ".dlq"})
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	_, err := sub.Subscribe(context.Background(), b.prefix+".order.>")
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "DeadLetterSubject")
}
