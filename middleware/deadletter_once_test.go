package middleware

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/wildcard"
)

// onceFixture is a dead-letter stream on real Redis, and a guard prefix
// of its own.
type onceFixture struct {
	t      *testing.T
	client *redis.Client
	pub    *wredis.Publisher
	dlq    string
	prefix string
}

func newOnceFixture(t *testing.T) *onceFixture {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	pub, err := wredis.NewPublisher(wredis.PublisherConfig{Client: client}, watermill.NopLogger{})
	require.NoError(t, err)
	f := &onceFixture{t: t, client: client, pub: pub, dlq: "arcmill-test:" + uuid.NewString() + ":dlq",
		prefix: "arcmill-test:" + uuid.NewString() + ":once:"}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := client.Keys(ctx, f.prefix+"*").Result()
		assert.NoError(t, client.Del(ctx, append(keys, f.dlq)...).Err())
		assert.NoError(t, client.Close())
	})
	return f
}

// findingPublisher is the fixture's publisher that can tell whether it
// stored a dead letter, by reading the stream back.
type findingPublisher struct {
	*wredis.Publisher
	client *redis.Client
}

func (p findingPublisher) FindDeadLetter(ctx context.Context, q DeadLetterQuery) (bool, error) {
	entries, err := p.client.XRange(ctx, q.Topic, strconv.FormatInt(q.Since.UnixMilli(), 10)+"-0", "+").Result()
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		msg, err := wredis.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
		if err != nil {
			return false, err
		}
		md := msg.Metadata
		if md.Get(MetadataDLQOriginalID) == q.OriginalID && md.Get(MetadataDLQConsumerGroup) == q.ConsumerGroup &&
			md.Get(MetadataDLQSourceTopic) == q.SourceTopic && (q.Handler == "" || md.Get(MetadataDLQHandler) == q.Handler) {
			return true, nil
		}
	}
	return false, nil
}

// config is a guarded DeadLetterConfig writing to the fixture's stream.
// PublishTimeout bounds the claim, the look-up and the publish together:
// generous, for a shared Redis on a loaded machine; no test waits for the
// lease to end.
func (f *onceFixture) config(pub message.Publisher) DeadLetterConfig {
	if pub == nil {
		pub = f.pub
	}
	return DeadLetterConfig{Publisher: pub, Topic: f.dlq, ConsumerGroup: "billing",
		Guard: &RedisGuard{Client: f.client, Prefix: f.prefix}, PublishTimeout: 2 * time.Second,
		GuardLease: 3 * time.Second, OutageBackoff: time.Millisecond, OutageMaxBackoff: time.Millisecond}
}

func (f *onceFixture) deadLetters() int64 {
	n, err := f.client.XLen(context.Background(), f.dlq).Result()
	require.NoError(f.t, err)
	return n
}

// delivery is a message as a Streams subscriber delivers entry id of
// source: its transport id in MetadataOriginalID.
func delivery(uuid, id string, payload []byte) *message.Message {
	msg := message.NewMessage(uuid, payload)
	msg.Metadata.Set(MetadataOriginalID, id)
	return msg
}

func malformedErr() error { return errors.Join(arc.ErrMalformedEvent, errors.New("not JSON")) }

// A delivery that comes back after its dead letter was written (the
// consumer died before the ack) is acknowledged without a second dead
// letter, on both paths: the router's malformed messages and a handler's
// final failure.
func TestDeadLetterOnce_RedeliveryAckedWithoutSecondDeadLetter(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	d, err := NewDeadLetter(f.config(nil))
	require.NoError(t, err)
	require.True(t, d.Guarded())

	msg := delivery(uuid.NewString(), "1-1", []byte("\x00not json"))
	for range 3 {
		require.NoError(t, d.Malformed(msg.Copy(), malformedErr()))
	}
	assert.EqualValues(t, 1, f.deadLetters(), "malformed: one dead letter for three deliveries")

	ev, err := arc.NewEvent("billing.charge", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	fails := d.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
	})
	for _, handler := range []string{"charge", "charge", "audit"} {
		m, err := arc.ToMessage(ev)
		require.NoError(t, err)
		m.Metadata.Set(MetadataOriginalID, "2-1")
		m.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: handler, Topic: "orders",
			Pattern: "billing.*", Event: ev}))
		_, err = fails(m)
		require.NoError(t, err, handler)
	}
	assert.EqualValues(t, 3, f.deadLetters(), "one per handler: charge's second delivery writes none, audit writes its own")
	st := d.Stats()
	assert.EqualValues(t, 3, st.DeadLettered)
	assert.EqualValues(t, 3, st.RepeatsSkipped)
}

// The guard names the delivery by its transport id, not the message UUID:
// a redriven dead letter (the same UUID in a new entry) that fails again
// is dead-lettered again.
func TestDeadLetterOnce_RedriveDeadLetteredAgain(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	d, err := NewDeadLetter(f.config(nil))
	require.NoError(t, err)
	id := uuid.NewString()
	require.NoError(t, d.Malformed(delivery(id, "1-1", []byte("x")), malformedErr()))
	require.NoError(t, d.Malformed(delivery(id, "7-1", []byte("x")), malformedErr()))
	assert.EqualValues(t, 2, f.deadLetters())
	assert.Zero(t, d.Stats().RepeatsSkipped)
}

// flakyPublisher fails its first fails publishes, then publishes.
type flakyPublisher struct {
	message.Publisher
	fails atomic.Int32
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.fails.Add(-1) >= 0 {
		return errors.New("dead-letter stream refused the write")
	}
	return p.Publisher.Publish(topic, msgs...)
}

// A failed publish releases the claim: the next delivery writes the dead
// letter at once, without waiting for the lease.
func TestDeadLetterOnce_FailedPublishReleasesTheClaim(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	pub := &flakyPublisher{Publisher: f.pub}
	pub.fails.Store(1)
	cfg := f.config(pub)
	cfg.PublishTimeout, cfg.GuardLease = time.Minute, time.Hour // a claim left behind would hold it for an hour
	d, err := NewDeadLetter(cfg)
	require.NoError(t, err)
	msg := delivery(uuid.NewString(), "1-1", []byte("x"))
	require.Error(t, d.Malformed(msg.Copy(), malformedErr()), "nacked: nothing written")
	assert.Zero(t, f.deadLetters())
	require.NoError(t, d.Malformed(msg.Copy(), malformedErr()))
	assert.EqualValues(t, 1, f.deadLetters())
	assert.Zero(t, d.Stats().GuardBusy)
}

// A guard that cannot be reached nacks the message: nothing is written
// unguarded, nothing is acknowledged unwritten.
func TestDeadLetterOnce_GuardOutageNacks(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	cfg := f.config(nil)
	cfg.Guard = &RedisGuard{Client: down}
	d, err := NewDeadLetter(cfg)
	require.NoError(t, err)
	err = d.Malformed(delivery(uuid.NewString(), "1-1", []byte("x")), malformedErr())
	require.Error(t, err)
	assert.Zero(t, f.deadLetters())
	assert.EqualValues(t, 1, d.Stats().GuardFailures)
}

// redisClientPublisher is a publisher that shares its Redis client, as
// arcmill's redisstream publishers do.
type redisClientPublisher struct {
	message.Publisher
	client redis.UniversalClient
}

func (p redisClientPublisher) RedisClient() redis.UniversalClient { return p.client }

// Under the defaults the guard is on whenever it can be: a publisher that
// shares its Redis client, or a GuardClient, with a ConsumerGroup; it is
// off without a group, with NoGuard, or with neither client.
func TestDeadLetterOnce_OnByDefaultWhereItCanBe(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	shared := redisClientPublisher{f.pub, f.client}
	for name, tc := range map[string]struct {
		cfg  DeadLetterConfig
		want bool
	}{
		"publisher shares its client": {DeadLetterConfig{Publisher: shared, Topic: f.dlq, ConsumerGroup: "g"}, true},
		"GuardClient":                 {DeadLetterConfig{Publisher: f.pub, Topic: f.dlq, ConsumerGroup: "g", GuardClient: f.client}, true},
		"no client":                   {DeadLetterConfig{Publisher: f.pub, Topic: f.dlq, ConsumerGroup: "g"}, false},
		"no consumer group":           {DeadLetterConfig{Publisher: shared, Topic: f.dlq}, false},
		"NoGuard":                     {DeadLetterConfig{Publisher: shared, Topic: f.dlq, ConsumerGroup: "g", NoGuard: true}, false},
		"NoGuard and a Guard": {DeadLetterConfig{Publisher: f.pub, Topic: f.dlq, ConsumerGroup: "g", NoGuard: true,
			Guard: &RedisGuard{Client: f.client}}, false},
	} {
		d, err := NewDeadLetter(tc.cfg)
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, d.Guarded(), name)
	}
	// And through NewStack, from the shared client alone: a second
	// delivery of a dead-lettered entry writes nothing.
	stack, err := NewStack(StackConfig{DeadLetter: DeadLetterConfig{Publisher: shared, Topic: f.dlq, ConsumerGroup: "g"}})
	require.NoError(t, err)
	msg := delivery(uuid.NewString(), "1-"+uuid.NewString()[:8], []byte("x"))
	require.NoError(t, stack.DeadLetter.Malformed(msg.Copy(), malformedErr()))
	require.NoError(t, stack.DeadLetter.Malformed(msg.Copy(), malformedErr()))
	assert.EqualValues(t, 1, f.deadLetters())
	stack, err = NewStack(StackConfig{Redis: f.client, DeadLetter: DeadLetterConfig{Publisher: f.pub, Topic: f.dlq, ConsumerGroup: "g"}})
	require.NoError(t, err)
	assert.True(t, stack.DeadLetter.Guarded(), "StackConfig.Redis")
	// The default guard's key is under DefaultGuardPrefix: remove it.
	keys, err := f.client.Keys(context.Background(), DefaultGuardPrefix+`"g":"`+f.dlq+`"*`).Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NoError(t, f.client.Del(context.Background(), keys...).Err())
}

// RedisGuard's states: a claim holds off others for its lease, is taken
// over after it (with when it was made), and a done mark ends it.
func TestRedisGuard_States(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	g := &RedisGuard{Client: f.client, Prefix: f.prefix}
	ctx := context.Background()
	// The lease must outlast the three claims and the release that expect
	// it held (round trips a loaded machine can stall for hundreds of ms);
	// waiting it out costs the test its length once.
	const lease, ttl = 2 * time.Second, time.Minute
	c, err := g.Claim(ctx, "k", "a", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardClaimed, c.State)
	c, err = g.Claim(ctx, "k", "b", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardBusy, c.State)
	require.NoError(t, g.Release(ctx, "k", "b"), "not b's: kept")
	c, err = g.Claim(ctx, "k", "b", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardBusy, c.State)
	require.Eventually(t, func() bool {
		c, err = g.Claim(ctx, "k", "b", lease, ttl)
		return err == nil && c.State == GuardReclaimed
	}, lease+waitTimeout, pollInterval, "a's lease ends")
	assert.WithinDuration(t, time.Now(), c.PriorClaim, 10*time.Second)
	require.NoError(t, g.Release(ctx, "k", "b"))
	c, err = g.Claim(ctx, "k", "c", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardReclaimed, c.State, "released: taken over at once")
	require.NoError(t, g.Release(ctx, "k", "c"))
	c, err = g.Claim(ctx, "fresh", "c", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardClaimed, c.State)
	require.NoError(t, g.Done(ctx, "k", ttl))
	c, err = g.Claim(ctx, "k", "d", lease, ttl)
	require.NoError(t, err)
	assert.Equal(t, GuardDone, c.State)
}

// A claim taken over from one that never marked its dead letter done
// reports the first claim of that chain, not the last: every delivery
// since may have stored the dead letter (a publish that failed after
// writing, ErrNotDurable; a look-up that failed), and a DeadLetterFinder
// asked only since the last claim misses what an earlier one wrote, and
// the dead letter is written twice.
func TestRedisGuard_ReclaimReportsTheChainsFirstClaim(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	g := &RedisGuard{Client: f.client, Prefix: f.prefix}
	ctx := context.Background()
	const lease, ttl = time.Minute, 2 * time.Minute
	c, err := g.Claim(ctx, "k", "a", lease, ttl)
	require.NoError(t, err)
	require.Equal(t, GuardClaimed, c.State)
	afterA := f.client.Time(ctx).Val()
	require.NoError(t, g.Release(ctx, "k", "a"))
	// b's claim is made after a's (Redis's clock counts milliseconds).
	require.Eventually(t, func() bool { return f.client.Time(ctx).Val().UnixMilli() > afterA.UnixMilli()+1 },
		waitTimeout, time.Millisecond)
	c, err = g.Claim(ctx, "k", "b", lease, ttl)
	require.NoError(t, err)
	require.Equal(t, GuardReclaimed, c.State)
	first := c.PriorClaim
	require.NoError(t, g.Release(ctx, "k", "b"))
	c, err = g.Claim(ctx, "k", "c", lease, ttl)
	require.NoError(t, err)
	require.Equal(t, GuardReclaimed, c.State)
	assert.Equal(t, first, c.PriorClaim, "a's claim, the first whose dead letter may be stored")
}

func TestDeadLetterOnce_ConfigValidated(t *testing.T) {
	t.Parallel()
	guard := &RedisGuard{}
	pub := &flakyPublisher{}
	for name, cfg := range map[string]DeadLetterConfig{
		"lease not longer than the publish": {Publisher: pub, Topic: "t", Guard: guard, PublishTimeout: time.Second, GuardLease: time.Second},
		"TTL not longer than the lease":     {Publisher: pub, Topic: "t", Guard: guard, GuardLease: time.Minute, GuardTTL: time.Minute},
		"negative TTL":                      {Publisher: pub, Topic: "t", Guard: guard, GuardTTL: -1},
	} {
		assert.ErrorIs(t, cfg.Validate(), ErrInvalidConfig, name)
	}
	assert.NoError(t, DeadLetterConfig{Publisher: pub, Topic: "t", GuardLease: time.Millisecond}.Validate(),
		"no guard: its timings are not used")
}

// Transports reuse ids (a JetStream stream deleted and recreated restarts
// its sequences at 1): two distinct events that fail for good under the
// same transport id within GuardTTL each get their dead letter; the
// second is not acknowledged as already written.
func TestDeadLetterOnce_ReusedTransportIDStillDeadLettersDistinctEvents(t *testing.T) {
	t.Parallel()
	f := newOnceFixture(t)
	d, err := NewDeadLetter(f.config(nil))
	require.NoError(t, err)
	fails := d.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
	})
	for i := range 2 {
		ev, err := arc.NewEvent("billing.charge", map[string]int{"n": i}, arc.Meta{})
		require.NoError(t, err)
		m, err := arc.ToMessage(ev)
		require.NoError(t, err)
		m.Metadata.Set(MetadataOriginalID, "7") // the same stream sequence, in a recreated stream
		m.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "charge", Topic: "orders",
			Pattern: "billing.*", Event: ev}))
		_, err = fails(m)
		require.NoError(t, err)
	}
	assert.EqualValues(t, 2, f.deadLetters(), "two distinct events, two dead letters")
	assert.Zero(t, d.Stats().RepeatsSkipped)

	// Malformed messages too: no event, told apart by their UUIDs.
	require.NoError(t, d.Malformed(delivery(uuid.NewString(), "9", []byte("x")), malformedErr()))
	require.NoError(t, d.Malformed(delivery(uuid.NewString(), "9", []byte("y")), malformedErr()))
	assert.EqualValues(t, 4, f.deadLetters())
}
