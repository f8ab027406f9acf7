package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// tailGapTimeout bounds TestTailMissesNothingBetweenReads.
const tailGapTimeout = 10 * time.Second

// gapHook adds an event right after an XREAD that found nothing.
type gapHook struct {
	other  *redis.Client
	stream string
	fired  atomic.Bool
}

func (h *gapHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gapHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *gapHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "xread" && errors.Is(err, redis.Nil) && h.fired.CompareAndSwap(false, true) {
			if xerr := h.other.XAdd(context.Background(), &redis.XAddArgs{Stream: h.stream, Values: []any{"type", "t.gap", "data",
				`{"type":"t.gap","payload":null,"meta":{"id":"gap-1","timestamp":"2026-01-01T00:00:00.000Z"}}`}}).Err(); xerr != nil {
				return errors.Join(err, xerr)
			}
		}
		return err
	}
}

// An event that lands between two blocking reads is read: each read goes
// on from the last id seen, never from "$".
func TestTailMissesNothingBetweenReads(t *testing.T) {
	other := redisClient(t)
	stream := tempStream(t, other)
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	hook := &gapHook{other: other, stream: stream}
	c.AddHook(hook)
	ctx, cancel := context.WithTimeout(context.Background(), tailGapTimeout)
	defer cancel()
	var got []string
	err := tailStream(ctx, env{stderr: io.Discard}, c, tailOpts{stream: stream, wait: true}, "*", func(data []byte, where string) (bool, error) {
		got = append(got, string(data))
		cancel() // the one event is in: stop tailing
		return true, nil
	})
	if err != nil {
		require.ErrorIs(t, err, context.Canceled, "tail ends only because the test stops it")
	}
	require.True(t, hook.fired.Load(), "an event was added after an empty read")
	require.Len(t, got, 1)
	assert.Contains(t, got[0], "gap-1")
}

// With --group, tail acknowledges what it reads (printed or filtered), never
// reads past --count, and prints a pretty-printed payload on one line.
func TestTailGroupAcksWhatItReadsAndPrintsOneLine(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	for _, typ := range []string{"payment.x", "order.a", "order.b", "order.c"} {
		r := arcmill(t, "{\n  \"a\": 1\n}\n", "publish", typ, "--stream", stream)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stdout, "\n"), "one line: %q", r.stdout)
	}
	r := arcmill(t, "", "tail", "order.*", "--stream", stream, "--group", "aud", "--from-start", "--count", "1",
		"--timeout", "10s", "--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 1, strings.Count(r.stdout, "\n"))
	assert.Contains(t, r.stdout, `"payload":{"a":1}`)
	pending := c.XPending(context.Background(), stream, "aud").Val()
	assert.Zero(t, pending.Count, "nothing read and left unacknowledged")
	r = arcmill(t, "", "tail", "order.*", "--stream", stream, "--group", "aud", "--count", "2", "--timeout", "10s",
		"--format", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "order.b")
	assert.Contains(t, r.stdout, "order.c", "the next run goes on where the first stopped")
}

// On --channel an exact type is one exact channel, as redispubsub
// subscribes, whatever glob characters it holds: "order[1]" follows the
// channel <prefix>:order[1] (Arc's raw glob would match order1 and miss
// it), and a prefix pattern is a glob on the escaped rest ("a[b.*" gets
// a[b.x, which the raw glob misses).
func TestTailChannelFollowsAnExactTypeExactly(t *testing.T) {
	t.Parallel()
	c := redisClient(t)
	ctx := context.Background()
	prefix := "arcmill-cli-test-" + uuid.NewString()[:8]
	for _, tc := range []struct {
		pattern, other, own string
		exact               bool
	}{
		{"order[1]", "order1", "order[1]", true},
		{"what?", "whatX", "what?", true},
		{"a[b.*", "ab.x", "a[b.x", false},
	} {
		tail := exec.Command(binary, "tail", tc.pattern, "--channel", "--prefix", prefix, "--count", "1",
			"--timeout", "20s", "--format", "json")
		tail.Env = append(os.Environ(), "ARCMILL_REDIS_ADDR="+testenv.RedisAddr(t))
		var out, errb bytes.Buffer
		tail.Stdout, tail.Stderr = &out, &errb
		require.NoError(t, tail.Start())
		exited := make(chan error, 1)
		go func() { exited <- tail.Wait() }()
		if tc.exact { // Redis counts a subscriber on the exact channel, not a pattern
			require.Eventually(t, func() bool {
				return c.PubSubNumSub(ctx, prefix+":"+tc.own).Val()[prefix+":"+tc.own] == 1
			}, tailStartWait, tailStartPoll, "tail %s never subscribed to the exact channel", tc.pattern)
		}
		// Pub/Sub keeps nothing: publish both until tail has printed one.
		var err error
	publishing:
		for {
			for _, typ := range []string{tc.other, tc.own} {
				ev, perr := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
				require.NoError(t, perr)
				wire, perr := arc.Marshal(ev)
				require.NoError(t, perr)
				require.NoError(t, c.Publish(ctx, prefix+":"+typ, wire).Err())
			}
			select {
			case err = <-exited:
				break publishing
			case <-time.After(tailStartPoll):
			}
		}
		require.NoError(t, err, errb.String())
		var ev arc.Event
		require.NoError(t, arc.Unmarshal(bytes.TrimSpace(out.Bytes()), &ev), "tail %s printed %q", tc.pattern, out.String())
		assert.Equal(t, tc.own, ev.Type, tc.pattern)
	}
}
