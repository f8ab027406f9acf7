package redisstream

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

func TestReadErrorBackoff_Defaults(t *testing.T) {
	t.Parallel()
	var b ReadErrorBackoff
	b.setDefaults()
	assert.Equal(t, ReadErrorBackoff{Base: DefaultReadErrorBackoffBase, Max: DefaultReadErrorBackoffMax,
		Min: DefaultReadErrorBackoffMin}, b, "Arc's: base 1 s, cap 30 s, floor 100 ms")

	short := ReadErrorBackoff{Max: 500 * time.Millisecond}
	short.setDefaults()
	assert.Equal(t, 500*time.Millisecond, short.Base, "Base is at most Max")
	tiny := ReadErrorBackoff{Base: 20 * time.Millisecond}
	tiny.setDefaults()
	assert.Equal(t, 20*time.Millisecond, tiny.Min, "Min is at most Base")
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	require.NoError(t, SubscriberConfig{Client: client, ConsumerGroup: "g", ReadErrorBackoff: short}.Validate())
	require.NoError(t, SubscriberConfig{Client: client, ConsumerGroup: "g", ReadErrorBackoff: tiny}.Validate())
}

func TestReadErrorBackoff_ValidateNamesEachField(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{})
	defer client.Close()
	for name, tc := range map[string]struct {
		b     ReadErrorBackoff
		field string
	}{
		"negative base":  {ReadErrorBackoff{Base: -time.Second}, "ReadErrorBackoff.Base"},
		"negative max":   {ReadErrorBackoff{Max: -1}, "ReadErrorBackoff.Max"},
		"negative min":   {ReadErrorBackoff{Min: -time.Millisecond}, "ReadErrorBackoff.Min"},
		"base over max":  {ReadErrorBackoff{Base: time.Minute, Max: time.Second}, "ReadErrorBackoff.Base"},
		"floor over max": {ReadErrorBackoff{Base: time.Second, Max: time.Second, Min: 2 * time.Second}, "ReadErrorBackoff.Min"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := SubscriberConfig{Client: client, ConsumerGroup: "g", ReadErrorBackoff: tc.b}.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), "SubscriberConfig."+tc.field)
		})
	}
}

// The nth failure in a row pauses for a uniform draw in [0, min(Max,
// Base·2ⁿ)], never under Min; a success starts over at Base.
func TestReadBackoff_FullJitterBetweenFloorAndCeiling(t *testing.T) {
	t.Parallel()
	cfg := ReadErrorBackoff{}
	cfg.setDefaults()

	// The largest draw shows the ceiling: doubling from Base, capped at Max.
	b := newReadBackoff(cfg)
	b.draw = func(n int64) int64 { return n - 1 }
	var got []time.Duration
	for range 8 {
		got = append(got, b.next())
	}
	s := time.Second
	assert.Equal(t, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s}, got)
	b.reset()
	assert.Equal(t, time.Second, b.next(), "a success starts over at Base")

	// The smallest draw shows the floor.
	b = newReadBackoff(cfg)
	b.draw = func(int64) int64 { return 0 }
	for range 10 {
		assert.Equal(t, DefaultReadErrorBackoffMin, b.next())
	}

	// Real draws stay within [Min, ceiling] and spread over it.
	b = newReadBackoff(cfg)
	var low, high bool
	for range 2000 {
		b.reset()
		for i := range 3 {
			ceiling := b.ceiling()
			d := b.next()
			require.GreaterOrEqual(t, d, cfg.Min)
			require.LessOrEqual(t, d, ceiling)
			if i == 2 { // ceiling 4 s
				low, high = low || d < time.Second, high || d > 3*time.Second
			}
		}
	}
	assert.True(t, low && high, "full jitter: draws across the whole range")

	// Huge counts of failures neither overflow nor loop long.
	b.failures = 1 << 40
	assert.Equal(t, cfg.Max, b.ceiling())
}

// failedCommands counts the commands of a client that failed.
type failedCommands struct{ n atomic.Int64 }

func (f *failedCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failedCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && err != redis.Nil {
			f.n.Add(1)
		}
		return err
	}
}

func (f *failedCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			f.n.Add(1)
		}
		return err
	}
}

// readFailures returns the failures_in_a_row of each read-loop pause
// logged so far (Error or Info lines), in order.
func readFailures(logger *watermill.CaptureLoggerAdapter) []int {
	var out []int
	var all []watermill.CapturedMessage
	for _, level := range []watermill.LogLevel{watermill.InfoLogLevel, watermill.ErrorLogLevel} {
		all = append(all, logger.Captured()[level]...)
	}
	slices.SortStableFunc(all, func(a, b watermill.CapturedMessage) int { return a.Time.Compare(b.Time) })
	for _, m := range all {
		if n, ok := m.Fields["failures_in_a_row"].(int); ok {
			out = append(out, n)
		}
	}
	return out
}

// While Redis is down, the consumer's read loop backs off instead of
// spinning: within a window it tries a handful of times where a loop
// without pauses (go-redis fails fast on a refused dial) tries thousands.
// Once Redis is back, reading resumes, and the next outage starts the
// backoff over.
func TestReadErrors_BackOffAndResumeAfterRecovery(t *testing.T) {
	t.Parallel()
	srv := startRestartableRedis(t)
	// MaxRetries -1: each command is one attempt, so the count is the
	// read loop's, not go-redis's own retries.
	client := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1, DialTimeout: time.Second})
	var failed failedCommands
	client.AddHook(&failed)
	pubClient := redis.NewClient(&redis.Options{Addr: srv.addr})
	t.Cleanup(func() {
		_ = client.Close()
		_ = pubClient.Close()
	})
	logger := watermill.NewCaptureLogger()
	backoff := ReadErrorBackoff{Base: 40 * time.Millisecond, Max: 200 * time.Millisecond, Min: 20 * time.Millisecond}
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", BlockTime: testBlockTime,
		ReadErrorBackoff: backoff, Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	const stream = "arcmill-test:readerrors"
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	pub, err := NewPublisher(PublisherConfig{Client: pubClient})
	require.NoError(t, err)
	publishAndReceive := func(typ string) {
		t.Helper()
		ev, err := arc.NewEvent(typ, nil, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return pub.Publish(stream, msg) == nil }, testWait, 10*time.Millisecond,
			"publish (the publisher's client reconnects)")
		got := receive(t, msgs)
		assert.Equal(t, ev.Meta.ID, got.UUID)
		got.Ack()
	}
	publishAndReceive("order.created")

	// Outage: count the attempts in a window, once the loop is failing.
	srv.kill()
	require.Eventually(t, func() bool { return len(readFailures(logger)) > 0 }, testWait, 5*time.Millisecond,
		"the read loop sees Redis down")
	const window = time.Second
	before := failed.n.Load()
	time.Sleep(window) // the measuring window itself, not a wait for a condition
	attempts := failed.n.Load() - before
	// At most one pause per window/Min (a loop step issues one or two
	// commands); a loop without pauses makes thousands of attempts.
	maxAttempts := int64(3 * window / backoff.Min)
	t.Logf("%d failed commands in %s of outage (bound %d)", attempts, window, maxAttempts)
	assert.GreaterOrEqual(t, attempts, int64(2), "the loop keeps trying")
	assert.LessOrEqual(t, attempts, maxAttempts, "the loop spins: no backoff")
	firstOutage := readFailures(logger)
	assert.Greater(t, firstOutage[len(firstOutage)-1], 2, "failures in a row are counted up, so the pause grows")

	// Recovery: the same server, restarted. The first outage's failures are
	// counted once a read has succeeded: more are logged until the restart.
	srv.start()
	publishAndReceive("order.updated")
	recovered := len(readFailures(logger))

	// A second outage starts over at Base: the read that succeeded reset it.
	srv.kill()
	require.Eventually(t, func() bool { return len(readFailures(logger)) > recovered }, testWait,
		5*time.Millisecond, "the read loop sees Redis down again")
	assert.Equal(t, 1, readFailures(logger)[recovered], "the first failure after a success is the first in a row")
}

// A consumer pausing after a failed read stops at once on Close, however
// long its pause.
func TestReadErrors_CloseIsPromptDuringBackoff(t *testing.T) {
	t.Parallel()
	srv := startRestartableRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	logger := watermill.NewCaptureLogger()
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", BlockTime: testBlockTime,
		ReadErrorBackoff: ReadErrorBackoff{Base: time.Hour, Max: time.Hour, Min: time.Hour}, Logger: logger})
	require.NoError(t, err)
	var msgs <-chan *message.Message
	msgs, err = sub.Subscribe(context.Background(), "arcmill-test:readerrors-close")
	require.NoError(t, err)
	srv.kill()
	require.Eventually(t, func() bool { return len(readFailures(logger)) > 0 }, testWait, 5*time.Millisecond,
		"the read loop is in its hour-long pause")

	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(testWait):
		t.Fatal("Close waited for the read loop's pause")
	}
	_, open := <-msgs
	assert.False(t, open, "the subscription's channel is closed")
}
