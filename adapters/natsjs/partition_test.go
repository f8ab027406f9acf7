package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// The key is meta.partitionKey, else the aggregate's id, else
// meta.resourceId, else the event id; a key that is no plain token gets a
// hashed token; the partition is FNV-1a 32 of the token modulo n.
func TestPartitionKeyAndToken(t *testing.T) {
	t.Parallel()
	for want, meta := range map[string]arc.Meta{
		"pk":  {ID: "id", PartitionKey: "pk", Aggregate: &arc.Aggregate{Type: "order", ID: "agg"}, ResourceID: "res"},
		"agg": {ID: "id", Aggregate: &arc.Aggregate{Type: "order", ID: "agg"}, ResourceID: "res"},
		"res": {ID: "id", ResourceID: "res"},
		"id":  {ID: "id"},
	} {
		msg, _ := arcMessage(t, "order.created", nil, meta)
		assert.Equal(t, want, PartitionKey(msg))
	}
	for _, key := range []string{"cust-42", "A_b:c/d@e", strings.Repeat("k", MaxRawKeyToken)} {
		assert.Equal(t, key, KeyToken(key))
	}
	seen := map[string]bool{}
	for _, key := range []string{"", "acme.eu", "a b", "a*", "a>", "~x", "ünï", "tab\t", strings.Repeat("k", MaxRawKeyToken+1)} {
		token := KeyToken(key)
		assert.Regexp(t, `^~[0-9a-f]{32}$`, token, "%q", key)
		assert.False(t, seen[token], "%q", key)
		seen[token] = true
		assert.NoError(t, ValidateSubject("in."+token+".order.created", false))
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte("cust-42"))
	assert.Equal(t, int(h.Sum32()%7), Partition("cust-42", 7), "FNV-1a 32 of the key, modulo n")

	src, dst := PartitionMapping("arcin", "arcp", 4)
	assert.Equal(t, "arcin.*.>", src)
	assert.Equal(t, "arcp.{{partition(4,1)}}.{{wildcard(1)}}.>", dst)
	assert.Equal(t, "mappings = {\n  \"arcin.*.>\": \"arcp.{{partition(4,1)}}.{{wildcard(1)}}.>\"\n}\n",
		PartitionMappingConfig("arcin", "arcp", 4))
	assert.Equal(t, "arcp.3.>", PartitionSubject("arcp", 3))

	conn := &nats.Conn{} // never used: validation only
	for _, bad := range []PublisherConfig{{Conn: conn, PartitionIngress: "in.*"}, {Conn: conn, PartitionIngress: "arc"},
		{Conn: conn, PartitionIngress: "arc.in"}} {
		err := bad.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, bad.PartitionIngress)
		assert.Contains(t, err.Error(), "PartitionIngress")
	}
	require.NoError(t, PublisherConfig{Conn: conn, PartitionIngress: "arcin"}.Validate())
}

// Per-key order on a 3-node cluster with the server's subject-mapping
// partitions: many keys × events published on the ingress, placed by the
// servers on 4 partitions of an R3 stream, handled by two instances of a
// group with one consumer per partition (MaxAckPending 1) and failures:
// some events fail once and are retried in process (middleware.Retry),
// others fail a whole delivery and come back through JetStream after a
// nack. Every event is handled, each key's events in publish order, each
// on the partition Partition computes (the servers' FNV-1a agrees with
// ours), and every partition carries some keys.
func TestCluster_PartitionsKeepOrderPerKey(t *testing.T) {
	// Not parallel: a cluster test loads the machine, and the single-server
	// tests wait on deadlines.
	const (
		ingress, prefix = "arcmillpin", "arcmillp"
		partitions      = 4
		keys, perKey    = 40, 25
	)
	cl := testenv.PrivateNatsCluster(t, 3, PartitionMappingConfig(ingress, prefix, partitions))
	nc := connectTo(t, cl.URL())
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	require.NoError(t, err)
	require.NoError(t, EnsureStreamConfig(js, StreamConfig{Name: "PARTITIONED", Prefix: prefix, Replicas: 3}))
	require.NoError(t, EnsureStreamConfig(js, StreamConfig{Name: "DEAD", Prefix: prefix + "dlq", Replicas: 3}))

	pub, err := NewPublisher(PublisherConfig{URL: cl.URL(), Prefix: prefix, PartitionIngress: ingress})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, pub.Close()) })

	type payload struct {
		Key string
		Seq int
	}
	keyOf := func(k int) string { // plain tokens, and keys that need a hashed token
		if k%4 == 3 {
			return fmt.Sprintf("acme.eu/tenant %d", k)
		}
		return fmt.Sprintf("cust-%d", k)
	}
	metaOf := func(key string, k int) arc.Meta { // the key in each field PartitionKey reads
		switch k % 3 {
		case 0:
			return arc.Meta{PartitionKey: key}
		case 1:
			return arc.Meta{Aggregate: &arc.Aggregate{Type: "order", ID: key}}
		default:
			return arc.Meta{ResourceID: key}
		}
	}

	var mu sync.Mutex
	attempts := map[payload]int{}
	done := map[payload]bool{}
	order := map[string][]int{} // each key's successes, in handling order
	var violations []string
	perPartition := map[int]map[string]bool{}
	handler := func(p int) func(context.Context, arc.Event) error {
		return func(_ context.Context, ev arc.Event) error {
			var pl payload
			if err := json.Unmarshal(ev.Payload, &pl); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			attempts[pl]++
			switch {
			case pl.Seq%5 == 2 && attempts[pl] <= 2: // the whole first delivery (two attempts) fails
				return errors.New("fails its first delivery")
			case pl.Seq%7 == 3 && attempts[pl] == 1: // retried in process
				return errors.New("fails once")
			}
			if want := Partition(pl.Key, partitions); want != p {
				violations = append(violations, fmt.Sprintf("key %q on partition %d, not %d", pl.Key, p, want))
			}
			if pl.Seq > 0 && !done[payload{pl.Key, pl.Seq - 1}] {
				violations = append(violations, fmt.Sprintf("key %q: event %d before %d", pl.Key, pl.Seq, pl.Seq-1))
			}
			done[pl] = true
			order[pl.Key] = append(order[pl.Key], pl.Seq)
			if perPartition[p] == nil {
				perPartition[p] = map[string]bool{}
			}
			perPartition[p][pl.Key] = true
			return nil
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var routers []*message.Router
	for i := range 2 { // two instances of the group, each with every partition's consumer
		sub, err := NewSubscriber(SubscriberConfig{URL: cl.URL(), Group: "orders", MaxAckPending: 1,
			DeadLetterSubject: prefix + "dlq.orders", BackOff: []time.Duration{20 * time.Millisecond}, MaxDeliver: 10})
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, sub.Close()) })
		retry, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: 1, Backoff: time.Millisecond})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		routers = append(routers, router)
		events, err := wildcard.NewRouter(router, wildcard.Config{})
		require.NoError(t, err)
		for p := range partitions {
			_, err := events.Handle(wildcard.HandlerConfig{Name: fmt.Sprintf("p%d-%d", p, i), Subscriber: sub,
				Topic: PartitionSubject(prefix, p), Patterns: []string{"*"},
				Middleware: []message.HandlerMiddleware{retry.Middleware}}, handler(p))
			require.NoError(t, err)
		}
		go func() { _ = events.Run(ctx) }()
		select {
		case <-events.Running():
		case <-time.After(clusterWait):
			t.Fatal("router not running")
		}
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range routers {
			assert.Eventually(t, r.IsClosed, clusterWait, pollInterval)
		}
	})

	// Keys interleaved in bursts: five events of a key in a row, then five
	// of the next key, so that a key's next event is right behind the one
	// that fails, and two members of the group would take them at once.
	const burst = 5
	for from := 0; from < perKey; from += burst {
		for k := range keys {
			key := keyOf(k)
			for s := from; s < min(from+burst, perKey); s++ {
				ev, err := arc.NewEvent("order.updated", payload{key, s}, metaOf(key, k))
				require.NoError(t, err)
				msg, err := arc.ToMessage(ev)
				require.NoError(t, err)
				require.NoError(t, pub.Publish("", msg))
			}
		}
	}

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == keys*perKey
	}, 2*clusterWait, pollInterval, "every event handled")
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, violations)
	for k := range keys {
		key := keyOf(k)
		var firsts []int // the first success of each event, duplicates aside
		seen := map[int]bool{}
		for _, s := range order[key] {
			if !seen[s] {
				seen[s] = true
				firsts = append(firsts, s)
			}
		}
		require.Len(t, firsts, perKey, key)
		for s, got := range firsts {
			require.Equal(t, s, got, "key %q in order", key)
		}
	}
	assert.Len(t, perPartition, partitions, "every partition carries keys")

	// Stored where the servers put them: <prefix>.<partition>.<key token>.<type>.
	raw, err := js.GetMsg("PARTITIONED", 1)
	require.NoError(t, err)
	key := keyOf(0)
	assert.Equal(t, fmt.Sprintf("%s.%d.%s.order.updated", prefix, Partition(key, partitions), KeyToken(key)), raw.Subject)
	dead, err := js.StreamInfo("DEAD")
	require.NoError(t, err)
	assert.Zero(t, dead.State.Msgs, "nothing given up")
}
