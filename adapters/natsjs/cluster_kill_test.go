package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// publishRetry pace: a publisher that meets an outage tries again.
const publishRetry = 50 * time.Millisecond

// outageLog keeps what the publishers met during the outages: every error
// must be a transport error (middleware.IsTransportError), or it would cost
// an event an attempt, or a dead letter.
type outageLog struct {
	mu           sync.Mutex
	transport    map[string]int // innermost error → count
	unclassified []error
}

func (o *outageLog) add(err error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !middleware.IsTransportError(err) {
		o.unclassified = append(o.unclassified, err)
		return false
	}
	if o.transport == nil {
		o.transport = map[string]int{}
	}
	root := err
	for u := errors.Unwrap(root); u != nil; u = errors.Unwrap(root) {
		root = u
	}
	o.transport[fmt.Sprintf("%v (%T)", root, root)]++
	return true
}

func (o *outageLog) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var lines []string
	for text, n := range o.transport {
		lines = append(lines, fmt.Sprintf("%4d × %s", n, text))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// publishUntilAcked publishes msg until JetStream acknowledges it,
// retrying (same Nats-Msg-Id, so stored once) on transport errors, and
// fails t on any other error.
func publishUntilAcked(t *testing.T, pub message.Publisher, msg *message.Message, outages *outageLog) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		err := pub.Publish("", msg)
		if err == nil {
			return
		}
		if !outages.add(err) {
			t.Fatalf("publishing %s: an error that is no transport error: %v (%T)", msg.UUID, err, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing %s: still failing after %v: %v", msg.UUID, clusterWait, err)
		}
		time.Sleep(publishRetry) // a publisher's retry pace during an outage
	}
}

// waitCurrent waits until every replica of the stream, and of each
// consumer, is current (none offline, none behind), as after a node
// rejoined and caught up.
func waitCurrent(t *testing.T, js nats.JetStreamManager, stream string, consumers ...string) {
	t.Helper()
	current := func(ci *nats.ClusterInfo) bool {
		if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
			return false
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	}
	require.Eventually(t, func() bool {
		info, err := js.StreamInfo(stream)
		if err != nil || !current(info.Cluster) {
			return false
		}
		for _, c := range consumers {
			info, err := js.ConsumerInfo(stream, c)
			if err != nil || !current(info.Cluster) {
				return false
			}
		}
		return true
	}, clusterWait, pollInterval, "every replica of %s and its consumers current", stream)
}

// TestCluster_NodeKilledMidRun SIGKILLs nodes of a private 3-node cluster
// while events flow through an R3 stream: first the stream's leader, then
// (after it rejoined and caught up) the leader of the consumer. A group of
// two instances runs the Arc handlers through the recovery stack; the
// order.created handler publishes an order.confirmed follow-up (as a
// service does), so the outage reaches handlers too. Every publish the
// stream acknowledged is consumed (and its follow-up), no consumer is left
// with pending or unacknowledged messages, every error the publishers met
// is a transport error, and nothing is dead-lettered: an outage costs no
// attempt.
func TestCluster_NodeKilledMidRun(t *testing.T) {
	cl := testenv.PrivateNatsCluster(t, 3)
	c := newClusterStreams(t, cl.URLs())
	// The follow-ups' stream: one replica, on node 0, so that while node 0
	// is down the handlers that write to it meet a long outage (the
	// events' R3 stream stays up: its consumers keep delivering).
	followPrefix, followStream := c.prefix+"follow", c.stream+"_FOLLOW"
	_, err := c.js.AddStream(&nats.StreamConfig{Name: followStream, Subjects: []string{followPrefix + ".>"}, Replicas: 1,
		Placement: &nats.Placement{Tags: []string{cl.Tag(0)}}})
	require.NoError(t, err)
	t.Cleanup(func() { deleteStreamEventually(t, c.js, followStream) })
	logger := watermill.NopLogger{}
	opts := []nats.Option{nats.ReconnectWait(100 * time.Millisecond)}
	newPub := func(prefix string) *Publisher {
		pub, err := NewPublisher(PublisherConfig{URL: cl.URL(), Options: opts, Prefix: prefix, Logger: logger})
		require.NoError(t, err)
		return pub
	}
	pub, followUps, dlqPub := newPub(c.prefix), newPub(followPrefix), newPub(c.prefix)
	var outages outageLog
	var handlerOutages atomic.Int64 // follow-up publishes that failed

	var mu sync.Mutex
	created, confirmed := map[string]int{}, map[string]int{}
	handledBy := []map[string]bool{{}, {}} // by instance
	var routers []*message.Router
	var subs []*Subscriber
	var stacks []*middleware.Stack
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 { // two instances of the group
		subOpts := opts
		if i == 0 { // on node 0 (the first URL) from the start: step 3 cuts its connection
			subOpts = append(slices.Clone(opts), nats.DontRandomize())
		}
		sub, err := NewSubscriber(SubscriberConfig{URL: cl.URL(), Options: subOpts, Group: "billing",
			DeadLetterSubject: c.dlqPrefix + ".billing", AckWaitTimeout: 5 * time.Second,
			BackOff: []time.Duration{500 * time.Millisecond, time.Second}, Logger: logger})
		require.NoError(t, err)
		subs = append(subs, sub)
		stack, err := middleware.NewStack(middleware.StackConfig{
			Retry: middleware.RetryConfig{MaxRetries: 2, Backoff: 10 * time.Millisecond,
				OutageBackoff: 50 * time.Millisecond, OutageMaxBackoff: 500 * time.Millisecond},
			DeadLetter: middleware.DeadLetterConfig{Publisher: dlqPub, Topic: c.dlqPrefix + ".billing", ConsumerGroup: "billing"},
		})
		require.NoError(t, err)
		stacks = append(stacks, stack)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
		require.NoError(t, err)
		routers = append(routers, router)
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		require.NoError(t, err)
		handle := func(prefix, pattern string, h func(context.Context, arc.Event) error) {
			subject, exact := Subject(prefix, pattern)
			require.True(t, exact)
			_, err := events.Handle(wildcard.HandlerConfig{Name: fmt.Sprintf("%s-%d", pattern, i), Subscriber: sub,
				Topic: subject, Patterns: []string{pattern}, Middleware: stack.Middleware}, h)
			require.NoError(t, err)
		}
		handle(c.prefix, "order.created", func(_ context.Context, ev arc.Event) error {
			// The follow-up's id is the order's, so a retry is stored once.
			next, err := arc.NewEvent("order.confirmed", map[string]string{"order": ev.Meta.ID},
				arc.Meta{ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(ev.Meta.ID)).String()})
			if err != nil {
				return err
			}
			follow, err := arc.ToMessage(next)
			if err != nil {
				return err
			}
			if err := followUps.Publish("", follow); err != nil {
				outages.add(err)
				handlerOutages.Add(1)
				return err // Retry waits out a transport error; anything else costs an attempt
			}
			mu.Lock()
			created[ev.Meta.ID]++
			handledBy[i][ev.Meta.ID] = true
			mu.Unlock()
			return nil
		})
		handle(followPrefix, "order.confirmed", func(_ context.Context, ev arc.Event) error {
			var p struct{ Order string }
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				return err
			}
			mu.Lock()
			confirmed[p.Order]++
			mu.Unlock()
			return nil
		})
		go func() { _ = events.Run(ctx) }()
		select {
		case <-events.Running():
		case <-time.After(clusterWait):
			t.Fatal("router not running")
		}
	}

	var acked []string
	publishN := func(n int) {
		for range n {
			msg, ev := arcMessage(t, "order.created", map[string]int{"n": len(acked)}, arc.Meta{})
			publishUntilAcked(t, pub, msg, &outages)
			acked = append(acked, ev.Meta.ID)
		}
	}
	handledAtLeast := func(n int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(confirmed) >= n
		}
	}
	createdSubject, _ := Subject(c.prefix, "order.created")
	confirmedSubject, _ := Subject(followPrefix, "order.confirmed")
	createdConsumer, confirmedConsumer := durableName("billing", createdSubject), durableName("billing", confirmedSubject)
	// leader names the leader of the stream (consumer "") or of one of its
	// consumers; "" while there is none.
	leader := func(consumer string) string {
		var ci *nats.ClusterInfo
		if consumer == "" {
			if info, err := c.js.StreamInfo(c.stream); err == nil {
				ci = info.Cluster
			}
		} else if info, err := c.js.ConsumerInfo(c.stream, consumer); err == nil {
			ci = info.Cluster
		}
		if ci == nil {
			return ""
		}
		return ci.Leader
	}
	leaderOf := func(consumer string) string {
		var name string
		require.Eventually(t, func() bool { name = leader(consumer); return name != "" }, clusterWait, pollInterval)
		return name
	}
	handledCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(created)
	}

	const perPhase = 100
	publishN(perPhase)
	require.Eventually(t, handledAtLeast(perPhase/2), clusterWait, pollInterval, "flowing before the first kill")
	waitCurrent(t, c.js, c.stream, createdConsumer)

	// 1. The stream's leader, while the handlers work through a backlog.
	// Its consumer is led elsewhere (a leader that shares the node steps
	// down), so that deliveries go on through the election.
	require.Eventually(t, func() bool {
		streamLeader, consumerLeader := leader(""), leader(createdConsumer)
		if consumerLeader == "" || consumerLeader == streamLeader {
			_, _ = c.nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+c.stream+"."+createdConsumer, nil, 5*time.Second)
			return false
		}
		return streamLeader != ""
	}, clusterWait, pollInterval, "the consumer led away from the stream's leader")
	waitCurrent(t, c.js, c.stream, createdConsumer)
	victim := cl.Index(leaderOf(""))
	before := handledCount()
	publishN(2 * perPhase) // the backlog
	require.Eventually(t, func() bool { return handledCount() >= before+5 }, clusterWait, pollInterval)
	cl.Kill(victim)
	publishN(perPhase) // during the election and with one node down
	cl.Restart(victim)
	waitCurrent(t, c.js, c.stream, createdConsumer)

	// 2. The leader of the order.created consumer, with a backlog.
	publishN(perPhase)
	victim = cl.Index(leaderOf(createdConsumer))
	cl.Kill(victim)
	publishN(perPhase)
	cl.Restart(victim)
	waitCurrent(t, c.js, c.stream, createdConsumer)

	// 3. Node 0, home of the follow-ups' stream: the handlers cannot
	// write their follow-ups until it is back, however long that takes.
	publishN(perPhase)
	cl.Kill(0)
	afterKill := len(acked)
	outagesBefore := handlerOutages.Load()
	require.Eventually(t, func() bool { return handlerOutages.Load() >= outagesBefore+20 }, clusterWait, pollInterval,
		"the handlers meet the outage")
	publishN(perPhase)
	cl.Restart(0)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range acked {
			if created[id] == 0 || confirmed[id] == 0 {
				return false
			}
		}
		return true
	}, 2*clusterWait, pollInterval, "every acknowledged publish consumed, and its follow-up")
	for consumer, stream := range map[string]string{createdConsumer: c.stream, confirmedConsumer: followStream} {
		require.Eventually(t, func() bool {
			info, err := c.js.ConsumerInfo(stream, consumer)
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		}, 2*clusterWait, pollInterval, "consumer %s: nothing pending or unacknowledged", consumer)
	}

	mu.Lock()
	resumed := 0
	for _, id := range acked[afterKill:] {
		if handledBy[0][id] {
			resumed++
		}
	}
	mu.Unlock()
	assert.Positive(t, resumed, "the instance whose node was killed reconnected and took events published after")

	dlq, err := c.js.StreamInfo(c.dlqStream)
	require.NoError(t, err)
	assert.Zero(t, dlq.State.Msgs, "nothing dead-lettered: the outage cost no attempt")
	for _, stack := range stacks {
		assert.Zero(t, stack.DeadLetter.Stats().DeadLettered)
	}
	outages.mu.Lock()
	assert.Empty(t, outages.unclassified, "every error met was a transport error")
	outages.mu.Unlock()
	mu.Lock()
	dups := 0
	for _, id := range acked {
		dups += created[id] - 1
	}
	mu.Unlock()
	t.Logf("%d events acknowledged, all consumed; %d handled more than once (at-least-once redeliveries); "+
		"%d follow-up publishes failed in handlers; errors met:\n%s", len(acked), dups, handlerOutages.Load(), outages.String())

	cancel()
	for _, r := range routers {
		require.Eventually(t, r.IsClosed, clusterWait, pollInterval)
	}
	for _, s := range subs {
		require.NoError(t, s.Close())
	}
	for _, p := range []*Publisher{pub, followUps, dlqPub} {
		require.NoError(t, p.Close())
	}
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/adapters/natsjs", clusterWait)
}

// TestCluster_QuorumLost kills two of the three nodes, leaving an R3
// stream without a majority: a publish then fails with a transport error
// (an outage: it pauses, nothing is charged); once one node is back the
// same message, published again with its Nats-Msg-Id, is stored once,
// whether or not the failed attempt had reached the stream; after both are
// back the stream holds every
// acknowledged event exactly once, and a consumer reads them all.
func TestCluster_QuorumLost(t *testing.T) {
	cl := testenv.PrivateNatsCluster(t, 3)
	c := newClusterStreams(t, cl.URLs())
	pub, err := NewPublisher(PublisherConfig{URL: cl.URL(), Prefix: c.prefix,
		Options: []nats.Option{nats.ReconnectWait(100 * time.Millisecond)}})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, pub.Close()) })
	var outages outageLog
	var acked []string
	for i := range 50 {
		msg, ev := arcMessage(t, "order.created", map[string]int{"n": i}, arc.Meta{})
		publishUntilAcked(t, pub, msg, &outages)
		acked = append(acked, ev.Meta.ID)
	}
	waitCurrent(t, c.js, c.stream)

	leaderName := ""
	require.Eventually(t, func() bool {
		info, err := c.js.StreamInfo(c.stream)
		if err == nil && info.Cluster != nil {
			leaderName = info.Cluster.Leader
		}
		return leaderName != ""
	}, clusterWait, pollInterval)
	leader := cl.Index(leaderName)
	other := (leader + 1) % 3
	cl.Kill(leader)
	cl.Kill(other)

	msg, ev := arcMessage(t, "order.created", map[string]int{"n": 50}, arc.Meta{})
	lost := pub.Publish("", msg)
	require.Error(t, lost, "no majority: the stream cannot acknowledge")
	assert.True(t, middleware.IsTransportError(lost), "an outage, not the event's fault: %v (%T)", lost, lost)

	cl.Restart(other)
	publishUntilAcked(t, pub, msg, &outages) // the same Nats-Msg-Id
	acked = append(acked, ev.Meta.ID)
	for i := range 50 {
		msg, ev := arcMessage(t, "order.created", map[string]int{"n": 51 + i}, arc.Meta{})
		publishUntilAcked(t, pub, msg, &outages)
		acked = append(acked, ev.Meta.ID)
	}
	cl.Restart(leader)
	waitCurrent(t, c.js, c.stream)

	info, err := c.js.StreamInfo(c.stream)
	require.NoError(t, err)
	assert.EqualValues(t, len(acked), info.State.Msgs, "every acknowledged event stored, each once")
	sub, err := NewSubscriber(SubscriberConfig{URL: cl.URL(), Group: "g", DeadLetterSubject: c.dlqPrefix + ".g"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(t.Context(), c.prefix+".>")
	require.NoError(t, err)
	seen := map[string]int{}
	deadline := time.After(clusterWait)
	for len(seen) < len(acked) {
		select {
		case m := <-msgs:
			seen[m.UUID]++
			m.Ack()
		case <-deadline:
			t.Fatalf("read %d of %d events", len(seen), len(acked))
		}
	}
	for _, id := range acked {
		assert.Equal(t, 1, seen[id], id)
	}
	outages.mu.Lock()
	assert.Empty(t, outages.unclassified)
	outages.mu.Unlock()
	t.Logf("with no majority: %v; while it came back:\n%s", lost, outages.String())
}
