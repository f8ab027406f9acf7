package natsjs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// clusterWait bounds every wait for a condition on a cluster: Raft
// elections and catch-up take seconds, and the machine is shared.
const clusterWait = 60 * time.Second

// clusterStreams is a test's own R3 streams on a cluster: the events
// (<prefix>.>) and the dead letters (<prefix>dlq.>).
type clusterStreams struct {
	url, prefix, stream, dlqPrefix, dlqStream string
	nc                                        *nats.Conn
	js                                        nats.JetStreamContext
}

// newClusterStreams creates the streams with 3 replicas through a
// connection to all of urls; they are deleted when t ends.
func newClusterStreams(t *testing.T, urls []string) *clusterStreams {
	t.Helper()
	id := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	c := &clusterStreams{url: strings.Join(urls, ","), prefix: "arcmillc" + id, stream: "ARCMILL_C_" + id}
	c.dlqPrefix, c.dlqStream = c.prefix+"dlq", c.stream+"_DLQ"
	c.nc = connect(t, c.url)
	t.Cleanup(c.nc.Close) // after the streams are deleted: cleanups run last first
	var err error
	c.js, err = c.nc.JetStream()
	require.NoError(t, err)
	for stream, prefix := range map[string]string{c.stream: c.prefix, c.dlqStream: c.dlqPrefix} {
		require.NoError(t, EnsureStreamConfig(c.js, StreamConfig{Name: stream, Prefix: prefix, Replicas: 3}))
		t.Cleanup(func() { deleteStreamEventually(t, c.js, stream) })
	}
	return c
}

// connectTo opens a connection of its own to url (one node, or several
// comma-separated), reconnecting for ever, as the adapters' own do.
func connectTo(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	return nc
}

// arcMessage returns an Arc event of type typ as a message, with meta's
// fields.
func arcMessage(t *testing.T, typ string, payload any, meta arc.Meta) (*message.Message, arc.Event) {
	t.Helper()
	ev, err := arc.NewEvent(typ, payload, meta)
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	return msg, ev
}

// A stream made with Replicas 3 is held by all three nodes of the cluster
// (a leader and two current followers); one made with the default is
// scaled to 3 in place, keeping its messages; a count JetStream refuses is
// refused before anything reaches the server.
func TestCluster_ReplicatedStreams(t *testing.T) {
	// Not parallel: a cluster test loads the machine, and the single-server
	// tests wait on deadlines.
	urls := testenv.NatsClusterURLs(t)
	c := newClusterStreams(t, urls)
	info, err := c.js.StreamInfo(c.stream)
	require.NoError(t, err)
	assert.Equal(t, 3, info.Config.Replicas)
	require.NotNil(t, info.Cluster)
	assert.NotEmpty(t, info.Cluster.Leader)
	assert.Len(t, info.Cluster.Replicas, 2, "two followers besides the leader")

	// Scaled in place: R1 with a message, then R3.
	name, prefix := c.stream+"_SCALE", c.prefix+"scale"
	require.NoError(t, EnsureStream(c.js, name, prefix))
	t.Cleanup(func() { deleteStreamEventually(t, c.js, name) })
	info, err = c.js.StreamInfo(name)
	require.NoError(t, err)
	assert.Equal(t, DefaultReplicas, info.Config.Replicas)
	_, err = c.js.Publish(prefix+".order.created", []byte(`{}`))
	require.NoError(t, err)
	require.NoError(t, EnsureStreamConfig(c.js, StreamConfig{Name: name, Prefix: prefix, Replicas: 3}))
	require.Eventually(t, func() bool {
		info, err := c.js.StreamInfo(name)
		if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return info.Config.Replicas == 3 && info.State.Msgs == 1
	}, clusterWait, pollInterval, "R3, every replica current, the message kept")
	require.NoError(t, EnsureStreamConfig(c.js, StreamConfig{Name: name, Prefix: prefix, Replicas: 3}), "idempotent")
	require.NoError(t, EnsureStream(c.js, name, prefix))
	info, err = c.js.StreamInfo(name)
	require.NoError(t, err)
	assert.Equal(t, 3, info.Config.Replicas, "EnsureStream (Replicas 0) leaves an existing stream's count alone")

	for _, bad := range []StreamConfig{{Prefix: "p"}, {Name: "N", Prefix: "p.>"}, {Name: "N", Prefix: "p", Replicas: 6},
		{Name: "N", Prefix: "p", Replicas: -1}} {
		assert.ErrorIs(t, EnsureStreamConfig(c.js, bad), ErrInvalidConfig, "%+v", bad)
	}
	require.NoError(t, StreamConfig{Name: "N", Prefix: "p"}.Validate())

	// Publisher and subscriber on different nodes: the consumer and its
	// position are the stream's, not a node's.
	pub, err := NewPublisher(PublisherConfig{Conn: connectTo(t, urls[0]), Prefix: c.prefix})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, pub.Close()) })
	sub, err := NewSubscriber(SubscriberConfig{Conn: connectTo(t, urls[2]), Group: "g", DeadLetterSubject: c.dlqPrefix + ".g"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(t.Context(), c.prefix+".>")
	require.NoError(t, err)
	msg, ev := arcMessage(t, "order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, pub.Publish("", msg))
	select {
	case m := <-msgs:
		assert.Equal(t, ev.Meta.ID, m.UUID)
		m.Ack()
	case <-time.After(clusterWait):
		t.Fatal("not delivered across nodes")
	}
	require.Eventually(t, func() bool {
		info, err := c.js.ConsumerInfo(c.stream, durableName("g", c.prefix+".>"))
		return err == nil && info.AckFloor.Stream == 1 && info.Config.Replicas == 0 && info.Cluster != nil &&
			len(info.Cluster.Replicas) == 2
	}, clusterWait, pollInterval, "the consumer inherits the stream's three replicas, and its acknowledged position")
}

// suiteStreams gives each topic of Watermill's universal suite a stream
// of its own: the suite publishes one message UUID to several topics
// (TestConcurrentSubscribeMultipleTopics), and JetStream's deduplication
// (Nats-Msg-Id, the UUID: one event id is stored once) holds per stream.
// Arc events cannot meet this: an event's subject is its type's.
type suiteStreams struct {
	js       nats.JetStreamManager
	prefix   string
	replicas int

	mu      sync.Mutex
	streams map[string]bool // created, deleted when the test ends
}

// subject returns <prefix>.<topic>, after making sure the topic's stream,
// holding <prefix>.<topic>.>, exists.
func (s *suiteStreams) subject(topic string) (string, error) {
	name := "SUITE_" + strings.ToUpper(durableName("t", topic))
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.streams[name] {
		if err := EnsureStreamConfig(s.js, StreamConfig{Name: name, Prefix: s.prefix + "." + topic, Replicas: s.replicas}); err != nil {
			return "", err
		}
		s.streams[name] = true
	}
	return s.prefix + "." + topic, nil
}

// suitePublisher adapts the Publisher to the universal suite, whose
// messages are no Arc events: each goes out with "<topic>.m" as its type,
// so on <prefix>.<topic>.m, in the topic's stream.
type suitePublisher struct {
	*Publisher
	streams *suiteStreams
}

func (p suitePublisher) Publish(topic string, msgs ...*message.Message) error {
	if _, err := p.streams.subject(topic); err != nil {
		return err
	}
	for _, m := range msgs {
		m.Metadata.Set(arc.MetadataType, topic+".m")
	}
	return p.Publisher.Publish(topic, msgs...)
}

// suiteSubscriber subscribes the suite's topic as <prefix>.<topic>.>.
type suiteSubscriber struct {
	*Subscriber
	streams *suiteStreams
}

func (s suiteSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	subject, err := s.streams.subject(topic)
	if err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, subject+".>")
}

// Timings of the universal suite's subscribers: a nack comes back after
// suiteBackOff, Close waits suiteCloseTimeout for the messages the suite
// deliberately leaves unacknowledged, and nothing is given up
// (NoMaxDeliver): the suite nacks some messages many times.
const (
	suiteBackOff      = 20 * time.Millisecond
	suiteCloseTimeout = 200 * time.Millisecond
	suiteAckWait      = 5 * time.Second
)

// TestCluster_UniversalPubSub runs Watermill's universal suite on the
// 3-node cluster, each topic in an R3 stream of its own (see
// suiteStreams), each publisher and subscriber connected to all three
// nodes (nats.go picks one at random, so they spread). It runs short
// (ForceShort: 100 messages, 10 subscribers where the long form has 5,000
// and 50): the long form's load is the machine's, not the cluster's. Its
// tests that need features JetStream consumers do not promise skip
// themselves: TestNoAck needs GuaranteedOrder (a nack is redelivered after
// a delay, behind later messages), and TestReconnect a
// RestartServiceCommand (TestCluster_NodeKilledMidRun kills nodes of a
// private cluster instead).
func TestCluster_UniversalPubSub(t *testing.T) {
	universalSuite(t, testenv.NatsClusterURLs(t), 3)
}

// TestUniversalPubSub runs the same suite on the single server, R1.
func TestUniversalPubSub(t *testing.T) {
	universalSuite(t, []string{testenv.NatsURL(t)}, 1)
}

func universalSuite(t *testing.T, urls []string, replicas int) {
	url := strings.Join(urls, ",")
	nc := connect(t, url)
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	require.NoError(t, err)
	streams := &suiteStreams{js: js, prefix: "arcmillsuite" + strings.ReplaceAll(uuid.NewString()[:8], "-", ""),
		replicas: replicas, streams: map[string]bool{}}
	t.Cleanup(func() {
		for name := range streams.streams {
			assert.NoError(t, js.DeleteStream(name))
		}
	})
	dlqPrefix, dlqStream := streams.prefix+"dlq", "SUITE_DLQ_"+strings.ToUpper(streams.prefix)
	require.NoError(t, EnsureStreamConfig(js, StreamConfig{Name: dlqStream, Prefix: dlqPrefix, Replicas: replicas}))
	t.Cleanup(func() { deleteStreamEventually(t, js, dlqStream) })
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := NewPublisher(PublisherConfig{Conn: connectTo(t, url), Prefix: streams.prefix})
		require.NoError(t, err)
		if group == "" { // a group of its own, like a fan-out subscriber
			group = "suite" + strings.ReplaceAll(uuid.NewString(), "-", "")
		}
		sub, err := NewSubscriber(SubscriberConfig{Conn: connectTo(t, url), Group: group,
			DeadLetterSubject: dlqPrefix + "." + group, MaxDeliver: NoMaxDeliver, BackOff: []time.Duration{suiteBackOff},
			CloseTimeout: suiteCloseTimeout, AckWaitTimeout: suiteAckWait})
		require.NoError(t, err)
		return suitePublisher{pub, streams}, suiteSubscriber{sub, streams}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return newPubSub(t, "")
	}, newPubSub)
}

// Dead letters on the cluster, through JetStream's max-deliveries
// advisory: three members of a group, each connected to another node,
// nack every poison message (Arc events, and bytes that are no Arc event);
// after MaxDeliver deliveries the server gives up, every member hears the
// advisory, and the dead-letter stream (R3, a real one) holds exactly one
// dead letter per poison message, with its reason and its original bytes.
// The good messages are all handled, none dead-lettered.
func TestCluster_DeadLettersThroughTheAdvisory(t *testing.T) {
	// Not parallel: a cluster test loads the machine, and the single-server
	// tests wait on deadlines.
	urls := testenv.NatsClusterURLs(t)
	c := newClusterStreams(t, urls)
	pub, err := NewPublisher(PublisherConfig{Conn: connectTo(t, c.url), Prefix: c.prefix})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, pub.Close()) })

	const maxDeliver = 3
	var handled recorder
	var subs []*Subscriber
	var conns []*nats.Conn
	var wg sync.WaitGroup
	for _, url := range urls {
		conn := connectTo(t, url)
		conns = append(conns, conn)
		sub, err := NewSubscriber(SubscriberConfig{Conn: conn, Group: "billing", DeadLetterSubject: c.dlqPrefix + ".billing",
			MaxDeliver: maxDeliver, BackOff: []time.Duration{50 * time.Millisecond}, AckWaitTimeout: 5 * time.Second})
		require.NoError(t, err)
		subs = append(subs, sub)
		msgs, err := sub.Subscribe(t.Context(), c.prefix+".>")
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				if m.Metadata.Get(arc.MetadataType) == "order.poison" || m.Metadata.Get(arc.MetadataType) == "" {
					m.Nack()
					continue
				}
				handled.add(m.UUID)
				m.Ack()
			}
		}()
	}
	closeAll := func() { // Close drains: the advisories already received are handled first
		for _, s := range subs {
			assert.NoError(t, s.Close())
		}
		wg.Wait()
	}
	t.Cleanup(closeAll) // idempotent; before the streams are deleted

	poison := map[string]bool{}
	var good []string
	for i := range 10 {
		msg, ev := arcMessage(t, "order.created", map[string]int{"n": i}, arc.Meta{})
		require.NoError(t, pub.Publish("", msg))
		good = append(good, ev.Meta.ID)
		if i%3 == 0 {
			msg, ev := arcMessage(t, "order.poison", map[string]int{"n": i}, arc.Meta{})
			require.NoError(t, pub.Publish("", msg))
			poison[ev.Meta.ID] = true
		}
	}
	raw := map[string]bool{}
	for range 2 { // no Arc event: bytes another client wrote
		body := "not arc " + uuid.NewString()
		_, err := c.js.Publish(c.prefix+".foreign.raw", []byte(body))
		require.NoError(t, err)
		raw[body] = true
	}

	want := len(poison) + len(raw)
	require.Eventually(t, func() bool {
		info, err := c.js.StreamInfo(c.dlqStream)
		return err == nil && info.State.Msgs >= uint64(want)
	}, clusterWait, pollInterval, "a dead letter per poison message")
	require.Eventually(t, func() bool {
		info, err := c.js.ConsumerInfo(c.stream, durableName("billing", c.prefix+".>"))
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, clusterWait, pollInterval, "every message settled: acknowledged, or given up")
	closeAll()
	for _, conn := range conns {
		require.Eventually(t, conn.IsClosed, clusterWait, pollInterval, "drained: every advisory received was handled")
	}

	dead, err := ReadDeadLetters(c.js, c.dlqStream, 0, 0)
	require.NoError(t, err)
	require.Len(t, dead, want, "exactly one dead letter per poison message, though three members heard each advisory")
	for _, d := range dead {
		env := d.Envelope
		assert.Equal(t, c.dlqPrefix+".billing", d.Subject)
		assert.Equal(t, maxDeliver, env.Attempts)
		assert.Equal(t, "billing", env.ConsumerGroup)
		if env.Reason == middleware.ReasonMalformed {
			require.NotNil(t, env.Raw)
			assert.True(t, raw[env.Raw.Payload], "the original bytes: %q", env.Raw.Payload)
			delete(raw, env.Raw.Payload)
			continue
		}
		assert.Equal(t, middleware.ReasonRetryExhausted, env.Reason)
		assert.Equal(t, "order.poison", env.Event.Type)
		assert.True(t, poison[env.Event.Meta.ID], "a poison event: %s", env.Event.Meta.ID)
		delete(poison, env.Event.Meta.ID)
	}
	assert.Empty(t, poison, "each poison event dead-lettered")
	assert.Empty(t, raw, "each foreign message dead-lettered")
	for _, id := range good {
		assert.GreaterOrEqual(t, handled.count(id), 1, "good event %s handled", id)
	}
}

// deleteStreamEventually deletes a test's stream, asking again while the
// cluster answers with a timeout: after a test took a majority of nodes
// down, the meta leader may take longer than one API call's wait to be
// back on a loaded machine.
func deleteStreamEventually(t *testing.T, js nats.JetStreamContext, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := js.DeleteStream(name)
		if err == nil || errors.Is(err, nats.ErrStreamNotFound) {
			return
		}
		if time.Now().After(deadline) {
			assert.NoError(t, err, "deleting stream %s", name)
			return
		}
		time.Sleep(200 * time.Millisecond) // polling a condition, with a deadline
	}
}
