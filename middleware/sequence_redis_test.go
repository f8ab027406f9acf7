package middleware_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/leaktest"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// seqWait bounds every condition the sequence tests wait for: generous, as
// the machine is shared.
const seqWait = 60 * time.Second

// seqEnv is one test's stream, dead-letter stream, group and key prefix.
type seqEnv struct {
	t                          *testing.T
	addr                       string
	client                     redis.UniversalClient
	stream, dlq, group, prefix string
	pub                        *redisstream.Publisher
	admin                      middleware.SequenceAdmin
}

func newSeqEnv(t *testing.T, addr string) *seqEnv {
	return cleanSeqEnv(openSeqEnv(t, addr, uuid.NewString()))
}

// newClusterSeqEnv is a seqEnv on a Redis Cluster: the stream and its
// dead-letter stream share a hash tag (a redrive moves an entry between
// them in one script); the sequences' keys have their own.
func newClusterSeqEnv(t *testing.T, addrs []string) *seqEnv {
	id := uuid.NewString()
	return cleanSeqEnv(openSeqEnvOn(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), "",
		"arcmill-test:seq:{"+id+"}", id))
}

func cleanSeqEnv(e *seqEnv) *seqEnv {
	e.t.Cleanup(func() {
		ctx := context.Background()
		del := func(ctx context.Context, c *redis.Client) error {
			keys, _ := c.Keys(ctx, e.prefix+"*").Result()
			for _, k := range keys {
				if err := c.Del(ctx, k).Err(); err != nil {
					return err
				}
			}
			return nil
		}
		if cc, ok := e.client.(*redis.ClusterClient); ok {
			assert.NoError(e.t, cc.ForEachMaster(ctx, del))
		} else {
			assert.NoError(e.t, del(ctx, e.client.(*redis.Client)))
		}
		assert.NoError(e.t, e.client.Del(ctx, e.stream, e.dlq).Err()) // one slot
		assert.NoError(e.t, e.client.Close())
	})
	return e
}

// openSeqEnv opens the env of id, which another process may share.
func openSeqEnv(t *testing.T, addr, id string) *seqEnv {
	return openSeqEnvOn(t, redis.NewClient(&redis.Options{Addr: addr}), addr, "arcmill-test:seq:"+id, id)
}

func openSeqEnvOn(t *testing.T, client redis.UniversalClient, addr, stream, id string) *seqEnv {
	e := &seqEnv{t: t, addr: addr, client: client,
		stream: stream, group: "orders-svc", prefix: "arcmill-test:seqkeys:" + id + ":"}
	e.dlq = e.stream + ":dlq"
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: e.client})
	require.NoError(t, err)
	e.pub = pub
	e.admin = middleware.SequenceAdmin{Client: e.client, Prefix: e.prefix}
	return e
}

// publish puts an event of key on the stream, its name as payload.
func (e *seqEnv) publish(key, name string) {
	e.t.Helper()
	ev, err := arc.NewEvent("order.step", map[string]string{"name": name}, arc.Meta{PartitionKey: key})
	require.NoError(e.t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(e.t, err)
	require.NoError(e.t, e.pub.Publish(e.stream, msg))
}

// nameOf reads an event's name back.
func nameOf(ev arc.Event) string {
	var p struct{ Name string }
	_ = json.Unmarshal(ev.Payload, &p)
	return p.Name
}

// seqInstance is one consumer process: subscriber, routers, stack.
type seqInstance struct {
	sub       *redisstream.Subscriber
	router    *message.Router
	stack     *middleware.Stack
	done      chan struct{}
	closeOnce sync.Once
}

// start runs an instance whose handler "orders" runs fn on every
// order.* event.
func (e *seqEnv) start(consumer string, lease time.Duration, fn wildcard.Handler) *seqInstance {
	t := e.t
	t.Helper()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: e.client, ConsumerGroup: e.group,
		Consumer: consumer, BlockTime: 100 * time.Millisecond})
	require.NoError(t, err)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: e.client},
			Topic: e.dlq, ConsumerGroup: e.group},
		Sequence: &middleware.SequenceConfig{Handler: "orders", Prefix: e.prefix, PollInterval: 50 * time.Millisecond,
			Lease: lease},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "orders", Subscriber: sub, Topic: e.stream,
		Patterns: []string{"order.*"}, Middleware: stack.Middleware}, fn)
	require.NoError(t, err)
	in := &seqInstance{sub: sub, router: router, stack: stack, done: make(chan struct{})}
	t.Cleanup(func() { in.close(t) }) // after a failed test too, so that no drainer outlives it
	go func() {
		defer close(in.done)
		_ = events.Run(context.Background())
	}()
	select {
	case <-router.Running():
	case <-time.After(seqWait):
		t.Fatal("router not running")
	}
	return in
}

// close stops the instance as a restart would.
func (in *seqInstance) close(t *testing.T) {
	t.Helper()
	in.closeOnce.Do(func() {
		assert.NoError(t, in.router.Close())
		<-in.done
		assert.NoError(t, in.stack.Close())
	})
}

// recorder is what the handlers did, across instances.
type recorder struct {
	mu     sync.Mutex
	ran    map[string][]string // key → names, in the order they succeeded
	poison map[string]bool     // names that fail
	tries  map[string]int
}

func newRecorder() *recorder {
	return &recorder{ran: map[string][]string{}, poison: map[string]bool{}, tries: map[string]int{}}
}

func (r *recorder) handler(ctx context.Context, ev arc.Event) error {
	name := nameOf(ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries[name]++
	if r.poison[name] {
		return fmt.Errorf("%w: %s is poison", arc.ErrUnrecoverable, name)
	}
	r.ran[ev.Meta.PartitionKey] = append(r.ran[ev.Meta.PartitionKey], name)
	return nil
}

func (r *recorder) setPoison(name string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.poison[name] = on
}

func (r *recorder) of(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ran[key])
}

func (r *recorder) triesOf(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries[name]
}

// eventually polls cond until it holds or seqWait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(seqWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

// parked returns key's parked sequence, if any.
func (e *seqEnv) parked(key string) (middleware.ParkedSequence, bool) {
	seqs, err := e.admin.List(context.Background(), middleware.ParkedFilter{Key: key})
	require.NoError(e.t, err)
	if len(seqs) == 0 {
		return middleware.ParkedSequence{}, false
	}
	require.Len(e.t, seqs, 1)
	return seqs[0], true
}

// waitParked waits until key has n events parked behind its head.
func (e *seqEnv) waitParked(key string, n int64) middleware.ParkedSequence {
	e.t.Helper()
	var seq middleware.ParkedSequence
	eventually(e.t, fmt.Sprintf("%d events of %s parked", n, key), func() bool {
		s, ok := e.parked(key)
		seq = s
		return ok && s.Status == "parked" && s.Parked == n
	})
	return seq
}

// redriveAll moves every dead letter back onto the source stream, as
// `arcmill dlq redrive` does.
func (e *seqEnv) redriveAll() int {
	e.t.Helper()
	ctx := context.Background()
	entries, err := e.client.XRange(ctx, e.dlq, "-", "+").Result()
	require.NoError(e.t, err)
	for _, x := range entries {
		dl, rerr := redisstream.ReadDeadLetter(x)
		fields, ok := redisstream.RedriveFields(dl, rerr)
		require.True(e.t, ok)
		moved, err := redisstream.RedriveEntry(ctx, e.client, e.dlq, x.ID, dl.OriginalStream, 0, fields)
		require.NoError(e.t, err)
		require.True(e.t, moved)
	}
	return len(entries)
}

func (e *seqEnv) deadLetters() int64 {
	n, err := e.client.XLen(context.Background(), e.dlq).Result()
	require.NoError(e.t, err)
	return n
}

// Per-key order across a failure, a restart and a redrive: the failed
// event's later events wait (while another key flows), survive a restart
// of the consumer, and run after the redriven head, in order, once each.
func TestSequenceOrderAcrossFailureRestartRedrive(t *testing.T) {
	sequenceOrderAcrossFailureRestartRedrive(t, newSeqEnv(t, testenv.RedisAddr(t)))
}

// The same on a Redis Cluster: each script touches the keys of one
// sequence and its handler's index, which share a hash tag.
func TestSequenceOrderOnCluster(t *testing.T) {
	sequenceOrderAcrossFailureRestartRedrive(t, newClusterSeqEnv(t, testenv.RedisClusterAddrs(t)))
}

func sequenceOrderAcrossFailureRestartRedrive(t *testing.T, e *seqEnv) {
	rec := newRecorder()
	rec.setPoison("a1", true)
	first := e.start("c1", 0, rec.handler)

	e.publish("A", "a1")
	e.publish("A", "a2")
	e.publish("B", "b1")
	e.publish("A", "a3")
	e.publish("B", "b2")
	seq := e.waitParked("A", 2)
	assert.Equal(t, "orders", seq.Handler)
	assert.Equal(t, e.group, seq.Group)
	assert.Equal(t, middleware.ReasonUnrecoverable, seq.Head.Reason)
	assert.Equal(t, "order.step", seq.Head.Type)
	assert.Contains(t, seq.Head.Error, "a1 is poison")
	eventually(t, "key B flows while A is parked", func() bool { return slices.Equal(rec.of("B"), []string{"b1", "b2"}) })
	assert.Empty(t, rec.of("A"), "nothing of A ran past its dead letter")
	assert.EqualValues(t, 1, e.deadLetters())

	// Restart mid-sequence; an event published while no consumer runs
	// joins the sequence on the new one.
	first.close(t)
	e.publish("A", "a4")
	second := e.start("c2", 0, rec.handler)
	defer second.close(t)
	e.waitParked("A", 3)
	assert.Empty(t, rec.of("A"))

	rec.setPoison("a1", false)
	require.Equal(t, 1, e.redriveAll())
	eventually(t, "A released in order", func() bool { return len(rec.of("A")) == 4 })
	e.publish("A", "a5")
	eventually(t, "a new event of A runs after", func() bool { return len(rec.of("A")) == 5 })
	assert.Equal(t, []string{"a1", "a2", "a3", "a4", "a5"}, rec.of("A"))
	for _, n := range []string{"a2", "a3", "a4", "a5"} {
		assert.Equal(t, 1, rec.triesOf(n), "%s ran once", n)
	}
	_, still := e.parked("A")
	assert.False(t, still, "the sequence is gone once drained")
	assert.EqualValues(t, 0, e.deadLetters())
	st := second.stack.Sequencer.Stats()
	assert.EqualValues(t, 1, st.Released)
	assert.EqualValues(t, 3, st.Drained)
}

// A parked event dead-lettered while its sequence drains becomes the new
// head: the events behind it stay parked until it is redriven.
func TestSequenceDeadLetterWhileReleasing(t *testing.T) {
	e := newSeqEnv(t, testenv.RedisAddr(t))
	rec := newRecorder()
	rec.setPoison("a1", true)
	rec.setPoison("a3", true)
	in := e.start("c1", 0, rec.handler)
	defer in.close(t)
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5"} {
		e.publish("A", n)
	}
	e.waitParked("A", 4)
	rec.setPoison("a1", false)
	require.Equal(t, 1, e.redriveAll())
	seq := e.waitParked("A", 2)
	assert.Equal(t, []string{"a1", "a2"}, rec.of("A"))
	assert.Contains(t, seq.Head.Error, "a3 is poison")
	rec.setPoison("a3", false)
	require.Equal(t, 1, e.redriveAll())
	eventually(t, "the rest of A", func() bool { return len(rec.of("A")) == 5 })
	assert.Equal(t, []string{"a1", "a2", "a3", "a4", "a5"}, rec.of("A"))
}

// Two consumers of one group park the same key's events atomically, and
// an operator's release drains them on one of them, in order, once each.
func TestSequenceTwoInstancesAndOperatorRelease(t *testing.T) {
	e := newSeqEnv(t, testenv.RedisAddr(t))
	rec := newRecorder()
	rec.setPoison("k0", true)
	one := e.start("c1", 0, rec.handler)
	defer one.close(t)
	two := e.start("c2", 0, rec.handler)
	defer two.close(t)

	e.publish("K", "k0")
	e.waitParked("K", 0)
	var want []string
	for i := 1; i <= 30; i++ {
		name := fmt.Sprintf("k%d", i)
		want = append(want, name)
		e.publish("K", name)
		e.publish(fmt.Sprintf("other-%d", i), "o")
	}
	e.waitParked("K", 30)
	eventually(t, "other keys flow", func() bool {
		for i := 1; i <= 30; i++ {
			if len(rec.of(fmt.Sprintf("other-%d", i))) != 1 {
				return false
			}
		}
		return true
	})
	assert.Empty(t, rec.of("K"))
	st1, st2 := one.stack.Sequencer.Stats(), two.stack.Sequencer.Stats()
	assert.EqualValues(t, 30, st1.Parked+st2.Parked)

	n, err := e.admin.Release(context.Background(), middleware.ParkedFilter{Key: "K"})
	require.NoError(t, err)
	assert.EqualValues(t, 30, n)
	eventually(t, "K released", func() bool { return len(rec.of("K")) == 30 })
	assert.Equal(t, want, rec.of("K"), "in order, once each; the head k0 stays a dead letter")
	_, still := e.parked("K")
	assert.False(t, still)
	assert.EqualValues(t, 1, e.deadLetters())
	assert.Equal(t, 1, rec.triesOf("k0"))

	_, err = e.admin.Release(context.Background(), middleware.ParkedFilter{Key: "K"})
	assert.ErrorIs(t, err, middleware.ErrNotParked)
}

// An operator discards a parked sequence: its events never run, and the
// key's new events run again.
func TestSequenceDiscard(t *testing.T) {
	e := newSeqEnv(t, testenv.RedisAddr(t))
	rec := newRecorder()
	rec.setPoison("d1", true)
	in := e.start("c1", 0, rec.handler)
	defer in.close(t)
	e.publish("D", "d1")
	e.publish("D", "d2")
	e.publish("D", "d3")
	e.waitParked("D", 2)
	msgs, err := e.admin.Events(context.Background(), middleware.ParkedFilter{Key: "D"}, 0)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	ev, err := arc.FromMessage(msgs[0])
	require.NoError(t, err)
	assert.Equal(t, "d2", nameOf(ev))

	n, err := e.admin.Discard(context.Background(), middleware.ParkedFilter{Key: "D", Handler: "orders"})
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	e.publish("D", "d4")
	eventually(t, "a new event of D runs", func() bool { return len(rec.of("D")) == 1 })
	assert.Equal(t, []string{"d4"}, rec.of("D"))
	assert.Zero(t, rec.triesOf("d2"))
	assert.Zero(t, rec.triesOf("d3"))
	assert.EqualValues(t, 1, e.deadLetters(), "the head's dead letter stays")
	_, err = e.admin.Discard(context.Background(), middleware.ParkedFilter{Key: "D"})
	assert.ErrorIs(t, err, middleware.ErrNotParked)
}

// Events with neither partition key nor aggregate are not sequenced: a
// failure of one holds nothing back.
func TestSequenceUnkeyedEventsAreNotSequenced(t *testing.T) {
	e := newSeqEnv(t, testenv.RedisAddr(t))
	rec := newRecorder()
	rec.setPoison("u1", true)
	in := e.start("c1", 0, rec.handler)
	defer in.close(t)
	e.publish("", "u1")
	e.publish("", "u2")
	eventually(t, "u2 runs", func() bool { return len(rec.of("")) == 1 })
	seqs, err := e.admin.List(context.Background(), middleware.ParkedFilter{})
	require.NoError(t, err)
	assert.Empty(t, seqs)
}

// Close stops the drainer: no goroutine of the package is left.
func TestSequencerCloseLeavesNoGoroutine(t *testing.T) {
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	s, err := middleware.NewSequencer(middleware.SequenceConfig{Client: client, Handler: "h",
		Prefix: "arcmill-test:seqleak:" + uuid.NewString() + ":", PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	s.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	leaktest.RequireNone(t, "github.com/arcmill/arcmill/middleware.(*Sequencer)", 10*time.Second)
}

func TestSequenceConfigValidate(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for name, c := range map[string]middleware.SequenceConfig{
		"no client":  {Handler: "h"},
		"no handler": {Client: client},
		"lease":      {Client: client, Handler: "h", Lease: time.Millisecond},
		"prefix":     {Client: client, Handler: "h", Prefix: "app:{seq}:"},
		"publisher":  {Client: client, Handler: "h", Publisher: &redisstream.DeadLetterPublisher{}},
	} {
		err := c.Validate()
		assert.ErrorIs(t, err, middleware.ErrInvalidConfig, name)
	}
	assert.NoError(t, middleware.SequenceConfig{Client: client, Handler: "h"}.Validate())
}

// A Sequencer serves one handler: applying it to a second panics, rather
// than drain one handler's parked events through the other.
func TestSequencerServesOneHandler(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	s, err := middleware.NewSequencer(middleware.SequenceConfig{Client: client, Handler: "h",
		Prefix: "arcmill-test:seqone:" + uuid.NewString() + ":"})
	require.NoError(t, err)
	defer s.Close()
	h := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	s.Middleware(h)
	assert.Panics(t, func() { s.Middleware(h) })
}

// The cost of a Sequencer on a handler whose keys are not parked (one
// EXISTS per keyed event), against the same stack without it:
//
//	go test -run '^$' -bench BenchmarkSequencer -benchtime 2000x ./middleware/
func BenchmarkSequencer(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer client.Close()
	prefix := "arcmill-test:seqbench:" + uuid.NewString() + ":"
	for _, sequenced := range []bool{false, true} {
		b.Run(fmt.Sprintf("sequenced=%v", sequenced), func(b *testing.B) {
			cfg := middleware.StackConfig{
				Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
				DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: client},
					Topic: prefix + "dlq", ConsumerGroup: "g"},
			}
			if sequenced {
				cfg.Sequence = &middleware.SequenceConfig{Handler: "h", Prefix: prefix}
			}
			stack, err := middleware.NewStack(cfg)
			require.NoError(b, err)
			defer stack.Close()
			var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) { return nil, nil }
			for i := len(stack.Middleware) - 1; i >= 0; i-- {
				h = stack.Middleware[i](h)
			}
			ev, err := arc.NewEvent("order.paid", map[string]int{"amount": 1}, arc.Meta{PartitionKey: "order-1"})
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				msg, _ := arc.ToMessage(ev)
				if _, err := h(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
