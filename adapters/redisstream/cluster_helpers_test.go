package redisstream

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// clusterWait bounds the conditions of the cluster tests: a failover on a
// loaded machine takes seconds, and go-redis refreshes a cluster client's
// slot map only every 10 s unless told of a MOVED.
const clusterWait = 90 * time.Second

// clusterTimings are the subscriber timings of the cluster tests: an entry
// whose XACK died with a primary is claimed again within seconds, and a
// consumer that lost its primary tries again at least every 2 s.
func clusterSubscriberConfig(client redis.UniversalClient, dlq string) SubscriberConfig {
	return SubscriberConfig{Client: client, ConsumerGroup: "g", Consumer: "c", BlockTime: 100 * time.Millisecond,
		ClaimIdle: 2 * time.Second, ClaimInterval: 200 * time.Millisecond, DeadLetterStream: dlq,
		ReadErrorBackoff: ReadErrorBackoff{Base: 200 * time.Millisecond, Max: 2 * time.Second}}
}

// replyCounter counts, per kind, the cluster replies and transport errors
// the nodes of a ClusterClient saw: MOVED, ASK, CLUSTERDOWN, TRYAGAIN,
// refused dials. It proves a run went through what it means to test.
type replyCounter struct {
	mu      sync.Mutex
	n       map[string]int
	example map[string]string // the first error of each kind
}

func (r *replyCounter) add(err error) {
	if err == nil {
		return
	}
	kind := ""
	var re redis.Error
	switch {
	case errors.As(err, &re):
		if strings.Contains(re.Error(), "setinfo") {
			return // go-redis' CLIENT SETINFO, which Redis 7.0 does not know: harmless
		}
		kind, _, _ = strings.Cut(re.Error(), " ")
	case errors.Is(err, context.Canceled):
		return
	default:
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			kind = "dial"
		} else {
			kind = "network"
		}
	}
	r.mu.Lock()
	r.n[kind]++
	if _, ok := r.example[kind]; !ok {
		r.example[kind] = err.Error()
	}
	r.mu.Unlock()
}

func (r *replyCounter) get(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[kind]
}

func (r *replyCounter) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for k, v := range r.n {
		b.WriteString(k + "=" + itoa(v) + " (" + r.example[k] + ") ")
	}
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func (r *replyCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		r.add(err)
		return c, err
	}
}

func (r *replyCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !errors.Is(err, redis.Nil) {
			r.add(err)
		}
		return err
	}
}

func (r *replyCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if !errors.Is(c.Err(), redis.Nil) {
				r.add(c.Err())
			}
		}
		return err
	}
}

// countedClient returns a new ClusterClient of c whose every node counts
// its errors in the returned counter.
func countedClient(c *testenv.Cluster) (*redis.ClusterClient, *replyCounter) {
	counter := &replyCounter{n: map[string]int{}, example: map[string]string{}}
	cc := c.NewClient(redis.ClusterOptions{})
	cc.OnNewNode(func(rc *redis.Client) { rc.AddHook(counter) })
	return cc, counter
}

// clusterRun is one run of publishing and consuming on a cluster: a
// publisher appending numbered events to streams in turn, retrying each
// until Publish accepts it, and a subscriber handling them. Several
// streams give the partitioned variant; one gives the single stream.
type clusterRun struct {
	t       *testing.T
	client  *redis.ClusterClient
	streams []string
	pub     message.Publisher

	mu        sync.Mutex
	acked     map[string]string // event id → stream, once Publish returned nil
	handled   map[string]int    // event id → deliveries to the handler
	pubErrors []string          // the distinct errors Publish returned, for the log
	errors    int               // how many times Publish failed
	published atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
	stopped  sync.WaitGroup
}

// newClusterRun returns a run; the publisher and the consumers are stopped
// at the end of the test whatever happens.
func newClusterRun(t *testing.T, client *redis.ClusterClient, pub message.Publisher, streams ...string) *clusterRun {
	r := &clusterRun{t: t, client: client, streams: streams, pub: pub, acked: map[string]string{},
		handled: map[string]int{}, stop: make(chan struct{})}
	t.Cleanup(r.stopPublishing)
	return r
}

// consume subscribes sub to every stream and records each delivery.
func (r *clusterRun) consume(sub message.Subscriber) {
	for _, s := range r.streams {
		msgs, err := sub.Subscribe(context.Background(), s)
		require.NoError(r.t, err)
		r.t.Cleanup(func() { _ = sub.Close() })
		r.stopped.Add(1)
		go func() {
			defer r.stopped.Done()
			for msg := range msgs {
				r.mu.Lock()
				r.handled[msg.UUID]++
				r.mu.Unlock()
				msg.Ack()
			}
		}()
	}
}

// publish starts one publisher: event i goes to stream i mod
// len(streams), published again after each failure until it is accepted.
func (r *clusterRun) publish() { r.publishConcurrently(1, 1) }

// publishConcurrently starts workers publishers, each publishing batches of
// batch events (one pipelined Publish) to the streams in turn, each batch
// published again after a failure until it is accepted as a whole.
func (r *clusterRun) publishConcurrently(workers, batch int) {
	for w := 0; w < workers; w++ {
		r.stopped.Add(1)
		go func() {
			defer r.stopped.Done()
			for i := w; ; i += workers {
				stream := r.streams[i%len(r.streams)]
				evs := make([]arc.Event, batch)
				for k := range evs {
					ev, err := arc.NewEvent("order.placed", map[string]int{"i": i, "k": k}, arc.Meta{})
					require.NoError(r.t, err)
					evs[k] = ev
				}
				for {
					select {
					case <-r.stop:
						return
					default:
					}
					msgs := make([]*message.Message, batch)
					for k, ev := range evs {
						msg, err := arc.ToMessage(ev)
						require.NoError(r.t, err)
						msgs[k] = msg
					}
					if err := r.pub.Publish(stream, msgs...); err != nil {
						r.noteError(err)
						select {
						case <-r.stop:
							return
						case <-time.After(20 * time.Millisecond): // pacing a retry loop, not waiting for a condition
						}
						continue
					}
					r.mu.Lock()
					for _, ev := range evs {
						r.acked[ev.Meta.ID] = stream
					}
					r.mu.Unlock()
					r.published.Add(int64(batch))
					break
				}
			}
		}()
	}
}

func (r *clusterRun) noteError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160]
	}
	for _, e := range r.pubErrors {
		if e == msg {
			return
		}
	}
	if len(r.pubErrors) < 20 {
		r.pubErrors = append(r.pubErrors, msg)
	}
}

// errorCount returns how many times Publish failed.
func (r *clusterRun) errorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

// waitPublished polls until n events have been accepted since the start.
func (r *clusterRun) waitPublished(n int64) {
	r.t.Helper()
	if !assert.Eventually(r.t, func() bool { return r.published.Load() >= n }, clusterWait, 10*time.Millisecond,
		"the publisher got to %d accepted events", n) {
		r.report(nil)
		r.t.FailNow()
	}
}

// stopPublishing stops the publisher; idempotent.
func (r *clusterRun) stopPublishing() {
	r.stopOnce.Do(func() { close(r.stop) })
}

// inStreams returns the ids of the events now in the streams.
func (r *clusterRun) inStreams() map[string]bool {
	r.t.Helper()
	present := map[string]bool{}
	for _, s := range r.streams {
		entries, err := RangeEntries(context.Background(), r.client, s, "-", "+", 0)
		require.NoError(r.t, err)
		for _, e := range entries {
			data, _ := e.Map()["data"].(string)
			var ev arc.Event
			require.NoError(r.t, arc.Unmarshal([]byte(data), &ev), "entry %s", e.ID)
			present[ev.Meta.ID] = true
		}
	}
	return present
}

// lostAndUnhandled returns how many accepted events are missing from the
// streams, how many of those no consumer handled either (handled before
// the loss: a group reading later would still miss them), and how many of
// those present were never handled.
func (r *clusterRun) lostAndUnhandled(present, acked map[string]bool) (missing, neverHandled, unhandled int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range acked {
		switch {
		case !present[id]:
			missing++
			if r.handled[id] == 0 {
				neverHandled++
			}
		case r.handled[id] == 0:
			unhandled++
		}
	}
	return missing, neverHandled, unhandled
}

// redelivered returns how many accepted events were handled more than once.
func (r *clusterRun) redelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.handled {
		if c > 1 {
			n++
		}
	}
	return n
}

// waitAllHandled polls until every accepted event that is in the streams
// has been handled and nothing is pending in the group: no consumer is
// stuck. It returns how many accepted events the streams lost (logging how
// many of those no consumer had handled before).
func (r *clusterRun) waitAllHandled(group string) (lost int) {
	r.t.Helper()
	var present map[string]bool
	deadline := time.Now().Add(clusterWait)
	for {
		// The accepted events first, then the streams: a publish still in
		// flight when publishing stopped may return after the streams were
		// read, and its events, written after that read, are not lost.
		acked := r.ackedSnapshot()
		present = r.inStreams()
		missing, neverHandled, unhandled := r.lostAndUnhandled(present, acked)
		pending := int64(0)
		for _, s := range r.streams {
			p, err := r.client.XPending(context.Background(), s, group).Result()
			require.NoError(r.t, err)
			pending += p.Count
		}
		if unhandled == 0 && pending == 0 {
			r.t.Logf("accepted events missing from the streams: %d, of which no consumer handled %d", missing, neverHandled)
			if missing > 0 {
				r.whereAreTheMissing(present, acked)
			}
			return missing
		}
		if time.Now().After(deadline) {
			r.report(nil)
			r.t.Fatalf("after %s: %d accepted events in the streams never handled, %d pending: a stuck consumer",
				clusterWait, unhandled, pending)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition, with a deadline
	}
}

// ackedSnapshot returns the ids of the events accepted so far.
func (r *clusterRun) ackedSnapshot() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.acked))
	for id := range r.acked {
		out[id] = true
	}
	return out
}

// whereAreTheMissing logs, for a failed run, every key of every node (primaries
// and replicas) that holds an entry of a missing event: a stray copy of a
// stream left on another node, or nothing at all, tells two kinds of loss
// apart.
func (r *clusterRun) whereAreTheMissing(present, acked map[string]bool) {
	var ids []string
	for id := range acked {
		if !present[id] {
			ids = append(ids, id)
		}
	}
	ctx := context.Background()
	_ = r.client.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		// A node that does not own a slot refuses every read of its keys
		// (MOVED), but counts and names them: a stray copy shows here.
		for _, st := range r.streams {
			slot, err := r.client.ClusterKeySlot(ctx, st).Result()
			if err != nil {
				continue
			}
			n, _ := node.ClusterCountKeysInSlot(ctx, int(slot)).Result()
			ks, _ := node.ClusterGetKeysInSlot(ctx, int(slot), 10).Result()
			r.t.Logf("%s holds %d key(s) of slot %d: %v", node.Options().Addr, n, slot, ks)
		}
		keys, err := node.Keys(ctx, "*").Result()
		if err != nil {
			r.t.Logf("%s: KEYS: %v", node.Options().Addr, err)
			return nil
		}
		for _, k := range keys {
			entries, err := node.XRange(ctx, k, "-", "+").Result()
			if err != nil {
				continue // not a stream, or not served here
			}
			for _, e := range entries {
				data, _ := e.Values["data"].(string)
				for _, id := range ids {
					if strings.Contains(data, id) {
						r.t.Logf("missing event %s found on %s in %s as entry %s (the key has %d entries)",
							id, node.Options().Addr, k, e.ID, len(entries))
					}
				}
			}
		}
		return nil
	})
	r.t.Logf("missing events: %v", ids)
}

// deadLetters returns the length of the dead-letter streams.
func (r *clusterRun) deadLetters(dlqs ...string) int64 {
	r.t.Helper()
	var n int64
	for _, d := range dlqs {
		l, err := r.client.XLen(context.Background(), d).Result()
		require.NoError(r.t, err)
		n += l
	}
	return n
}

// report logs what the run saw.
func (r *clusterRun) report(counter *replyCounter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("accepted %d events", len(r.acked))
	if counter != nil {
		r.t.Logf("replies seen by the clients: %s", counter)
	}
	for _, e := range r.pubErrors {
		r.t.Logf("publish error (retried): %s", e)
	}
}
