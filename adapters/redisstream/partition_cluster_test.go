package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// clusterClient is a client of the shared Redis Cluster (scripts/services.sh:
// three primaries, three replicas), closed at the end of the test.
func clusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisClusterAddrs(t)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clusterStream is a stream name of the test's own, its partitions (and
// their dead letters) deleted at the end.
func clusterStream(t testing.TB, c *redis.ClusterClient, n int) Partitions {
	t.Helper()
	p := Partitions{Stream: "arcmill-test:" + uuid.NewString(), N: n}
	t.Cleanup(func() {
		for i := 0; i < n; i++ {
			c.Del(context.Background(), p.Key(i), p.DeadLetterKey(i))
		}
	})
	return p
}

// The universal suite on the partitioned Pub/Sub, on the cluster: three
// partitions, so every test's messages spread over the three primaries.
// Order holds per routing key, not across keys, and the suite's messages
// each have their own UUID as their key: GuaranteedOrder and
// GuaranteedOrderWithSingleSubscriber are false (per-key order is
// TestPartition_PerKeyOrderAcrossPartitions).
//
// Under -race the suite runs in its short mode (clusterSuiteShort).
func TestPartition_UniversalPubSubOnCluster(t *testing.T) {
	addrs := testenv.RedisClusterAddrs(t)
	newPS := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: 3, Publisher: PublisherConfig{
			Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), CloseClient: true,
			Marshaller: wredis.DefaultMarshallerUnmarshaller{}}})
		require.NoError(t, err)
		if group == "" {
			group = "arcmill-test-" + watermill.NewShortUUID()
		}
		sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: 3, Subscriber: SubscriberConfig{
			Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), CloseClient: true,
			BlockingClient: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}),
			ConsumerGroup:  group, Unmarshaller: wredis.DefaultMarshallerUnmarshaller{},
			BlockTime: suiteBlockTime, ClaimIdle: suiteClaimIdle, ClaimInterval: suiteClaimInterval,
			CloseTimeout: suiteCloseTimeout, AckFlushInterval: suiteAckFlushInterval}})
		require.NoError(t, err)
		return pub, partitionSuiteSubscriber{sub}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          clusterSuiteShort,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) { return newPS(t, "") }, newPS)
}

// clusterSuiteShort runs the universal suites on the cluster in their
// short mode under -race: their TestConcurrentSubscribe runs 50
// subscribers of 50 groups over 5,000 messages, which with three
// partitions each is 150 Subscribers in one process, and under the race
// detector on a 2-core machine that test alone outlasted go test's 10
// minutes. The full size runs without -race (about 40 s), and on one node
// under -race in TestUniversalPubSub: the same Subscriber, unpartitioned.
const clusterSuiteShort = raceDetector

// partitionSuiteSubscriber forgives ErrCloseTimeout, as suiteSubscriber
// does, for the same reason.
type partitionSuiteSubscriber struct{ *PartitionSubscriber }

func (s partitionSuiteSubscriber) Close() error {
	if err := s.PartitionSubscriber.Close(); err != nil && !errors.Is(err, ErrCloseTimeout) {
		return err
	}
	return nil
}

// The single-stream Publisher and Subscriber run as they are on a Cluster
// client: the universal suite, one stream per topic (short under -race,
// see clusterSuiteShort).
func TestSingleStream_UniversalPubSubOnCluster(t *testing.T) {
	addrs := testenv.RedisClusterAddrs(t)
	newPS := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := NewPublisher(PublisherConfig{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}),
			Marshaller: wredis.DefaultMarshallerUnmarshaller{}, CloseClient: true})
		require.NoError(t, err)
		if group == "" {
			group = "arcmill-test-" + watermill.NewShortUUID()
		}
		sub, err := NewSubscriber(SubscriberConfig{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}),
			ConsumerGroup: group, Unmarshaller: wredis.DefaultMarshallerUnmarshaller{}, CloseClient: true,
			BlockTime: suiteBlockTime, ClaimIdle: suiteClaimIdle, ClaimInterval: suiteClaimInterval,
			CloseTimeout: suiteCloseTimeout, AckFlushInterval: suiteAckFlushInterval})
		require.NoError(t, err)
		return pub, suiteSubscriber{sub}
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          clusterSuiteShort,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) { return newPS(t, "") }, newPS)
}

// orderLog checks, per key, that every handler run of a key's event n
// comes after event n-1 of that key was handled, and that every event is
// handled.
type orderLog struct {
	mu         sync.Mutex
	done       map[string]int // key → events handled (the next expected sequence)
	violations []string
	attempts   int
}

// start records a handler run for key's event seq; false when the run is
// out of order.
func (l *orderLog) start(key string, seq int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts++
	if seq != l.done[key] && seq != l.done[key]-1 { // the next one, or a redelivery of the last
		l.violations = append(l.violations, fmt.Sprintf("%s: event %d run after %d handled", key, seq, l.done[key]))
		return false
	}
	return true
}

func (l *orderLog) handled(key string, seq int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq == l.done[key] {
		l.done[key]++
	}
}

func (l *orderLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, d := range l.done {
		n += d
	}
	return n
}

// Per-key order across partitions, end to end: 200 keys × 50 events over
// six partitions on the cluster, read by two subscriber instances of one
// group (each its own three partitions) through the wildcard router, with
// handlers that fail one run in ten at random (nacked, delivered again).
// Every key's events are handled in order (a run of event n only once
// event n-1 is handled), and every event is handled. The keys are
// meta.partitionKey, aggregate ids and resourceIds, a third each: the
// subscriber keeps in order the key that chose the partition.
func TestPartition_PerKeyOrderAcrossPartitions(t *testing.T) {
	const keys, perKey, n = 200, 50, 6
	c := clusterClient(t)
	parts := clusterStream(t, c, n)
	pub, err := NewPartitionPublisher(PartitionPublisherConfig{Partitions: n, Publisher: PublisherConfig{Client: c}})
	require.NoError(t, err)
	keyOf := func(k int) string { return "key-" + strconv.Itoa(k) }
	var batch []*message.Message
	used := map[int]bool{}
	for seq := 0; seq < perKey; seq++ {
		for k := 0; k < keys; k++ {
			var meta arc.Meta
			switch k % 3 {
			case 0:
				meta.PartitionKey = keyOf(k)
			case 1:
				meta.Aggregate = &arc.Aggregate{Type: "order", ID: keyOf(k)}
			default:
				meta.ResourceID = keyOf(k)
			}
			ev, err := arc.NewEvent("order.step", map[string]any{"key": keyOf(k), "seq": seq}, meta)
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			used[parts.OfMessage(msg)] = true
			batch = append(batch, msg)
			if len(batch) == 500 {
				require.NoError(t, pub.Publish(parts.Stream, batch...))
				batch = nil
			}
		}
	}
	require.NoError(t, pub.Publish(parts.Stream, batch...))
	require.Len(t, used, n, "the keys spread over every partition")
	var written int64
	for _, k := range parts.Keys() {
		l, err := c.XLen(context.Background(), k).Result()
		require.NoError(t, err)
		written += l
	}
	require.EqualValues(t, keys*perKey, written)

	log := &orderLog{done: map[string]int{}}
	for member := 0; member < 2; member++ {
		sub, err := NewPartitionSubscriber(PartitionSubscriberConfig{Partitions: n, Assign: AssignPartitions(member, 2, n),
			Subscriber: SubscriberConfig{Client: c, ConsumerGroup: "order", Consumer: "instance-" + strconv.Itoa(member),
				BlockTime: testBlockTime}})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: testWait}, nil)
		require.NoError(t, err)
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		require.NoError(t, err)
		_, err = events.HandleFunc(wildcard.HandlerConfig{Name: "steps", Subscriber: sub, Topic: parts.Stream,
			Patterns: []string{"order.*"}}, func(msg *message.Message) ([]*message.Message, error) {
			var p struct {
				Key string `json:"key"`
				Seq int    `json:"seq"`
			}
			ev, err := arc.FromMessage(msg)
			if err != nil {
				return nil, err
			}
			if err := jsonUnmarshal(ev.Payload, &p); err != nil {
				return nil, err
			}
			if !log.start(p.Key, p.Seq) {
				return nil, nil // recorded; acked so the run goes on to find every violation
			}
			if rand.IntN(10) == 0 {
				return nil, errors.New("random failure") // nacked: delivered again, first
			}
			log.handled(p.Key, p.Seq)
			return nil, nil
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = events.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; _ = router.Close(); _ = sub.Close() })
	}
	require.Eventually(t, func() bool { return log.total() == keys*perKey || len(log.violations) > 0 },
		120*time.Second, 20*time.Millisecond, "handled %d of %d", log.total(), keys*perKey)
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
	for k := 0; k < keys; k++ {
		assert.Equal(t, perKey, log.done[keyOf(k)], keyOf(k))
	}
	assert.Greater(t, log.attempts, keys*perKey, "some runs failed and were retried")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
