package redispubsub

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

func TestSubscriptionEscapesGlobCharactersOfExactTopics(t *testing.T) {
	t.Parallel()
	for topic, want := range map[string]struct {
		pattern bool
		channel string
	}{
		"p:order.created": {false, "p:order.created"},
		"p:order[1]":      {false, "p:order[1]"},
		"p:what?":         {false, "p:what?"},
		"p:*.created":     {false, "p:*.created"},
		"p:a*b":           {false, "p:a*b"},
		"p:*":             {true, "p:*"},
		"*":               {true, "*"},
		"p:order.*":       {true, "p:order.*"},
		"p:order:*":       {true, "p:order:*"},
		`p:o[1]?\*.*`:     {true, `p:o\[1\]\?\\\*.*`},
	} {
		pattern, channel := Subscription(topic, false)
		assert.Equal(t, want.pattern, pattern, topic)
		assert.Equal(t, want.channel, channel, topic)
	}
	pattern, channel := Subscription("p:*.created", true)
	assert.True(t, pattern, "RedisGlob: Arc's rule")
	assert.Equal(t, "p:*.created", channel)
}

// On real Redis an exact subscription to a type holding '[', '?' or '*'
// gets its own events and no others, and a prefix holding them matches
// only that literal prefix. Each check that nothing else arrived waits on
// a marker published after the event that must not arrive.
func TestExactTopicWithGlobCharactersGetsItsOwnEvents(t *testing.T) {
	t.Parallel()
	ps := newPubSub(t, Config{})
	t.Cleanup(func() { assert.NoError(t, ps.Close()) })
	prefix := "arcmill-test-" + uuid.NewString()[:8]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(typ string) string {
		ev, err := arc.NewEvent(typ, nil, arc.Meta{})
		require.NoError(t, err)
		require.NoError(t, ps.Publish(prefix, mustMessage(t, ev)))
		return ev.Meta.ID
	}
	for _, typ := range []string{"order[1]", "what?", "a*b"} {
		sub, err := ps.Subscribe(ctx, prefix+":"+typ)
		require.NoError(t, err)
		// Types the glob would match, then the type itself.
		lookalikes := map[string][]string{"order[1]": {"order1"}, "what?": {"whatx"}, "a*b": {"axxb", "ab"}}[typ]
		for _, other := range lookalikes {
			publish(other)
		}
		own := publish(typ)
		m := receive(t, sub, typ)
		m.Ack()
		assert.Equal(t, own, m.UUID, "%s: its own event first, nothing else", typ)
	}

	sub, err := ps.Subscribe(ctx, prefix+":o[1].*")
	require.NoError(t, err)
	publish("o1.created")
	own := publish("o[1].created")
	m := receive(t, sub, "prefix")
	m.Ack()
	assert.Equal(t, own, m.UUID, "the prefix is literal")
}

// A message over MaxMessageBytes reaches the handler flagged malformed with
// a bounded excerpt, and nothing holds its whole body: 20 messages of
// 10 MB, all kept by the test, grow the heap by far less than one of them.
func TestLargeMessagesHandedOnAsBoundedExcerpts(t *testing.T) {
	t.Parallel()
	raw := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, raw.Close()) })
	ps := newPubSub(t, Config{})
	t.Cleanup(func() { assert.NoError(t, ps.Close()) })
	channel := "arcmill-test-" + uuid.NewString()[:8] + ":big"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := ps.Subscribe(ctx, channel)
	require.NoError(t, err)

	const size, count = 10 << 20, 20
	body := `{"type":"big","payload":"` + strings.Repeat("é", (size-64)/2) + `","meta":{"id":"1"}}`
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := make([]*message.Message, 0, count)
	for i := range count {
		// One at a time: Redis drops a subscriber whose output buffer
		// passes client-output-buffer-limit (32 MB by default).
		require.NoError(t, raw.Publish(ctx, channel, body).Err())
		m := receive(t, sub, "big message")
		m.Ack()
		kept = append(kept, m)
		_, err := arc.FromMessage(m)
		require.ErrorIs(t, err, arc.ErrMalformedEvent, "message %d", i)
		assert.Contains(t, err.Error(), "over MaxMessageBytes")
		assert.LessOrEqual(t, len(m.Payload), ExcerptBytes)
		assert.True(t, strings.HasPrefix(body, string(m.Payload)), "an excerpt of the original bytes")
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %d KB holding %d messages of %d MB; allocated %d MB a message; HeapSys %d MB",
		grown>>10, count, size>>20, (after.TotalAlloc-before.TotalAlloc)/count>>20, after.HeapSys>>20)
	assert.Less(t, grown, int64(size), "held messages are excerpts, not bodies")
	runtime.KeepAlive(kept)

	// Under the limit, and within it as JavaScript counts (UTF-16 units),
	// though over it in bytes: decoded as usual.
	small := `{"type":"t","payload":"` + strings.Repeat("é", 600_000) + `","meta":{"id":"2"}}`
	require.Greater(t, len(small), DefaultMaxMessageBytes)
	require.NoError(t, raw.Publish(ctx, channel, small).Err())
	m := receive(t, sub, "message within Arc's limit")
	m.Ack()
	_, err = arc.FromMessage(m)
	require.NoError(t, err)
}

func TestOverLimitCountsUTF16Units(t *testing.T) {
	t.Parallel()
	assert.False(t, overLimit("abc", 3))
	assert.True(t, overLimit("abcd", 3))
	assert.False(t, overLimit("ééé", 3), "6 bytes, 3 units")
	assert.True(t, overLimit("éééé", 3))
	assert.True(t, overLimit("😀😀", 3), "a surrogate pair counts 2")
	assert.False(t, overLimit("😀a", 3))
	assert.Equal(t, "a", excerpt("aé", 2), "cut back to a character boundary")
}

// Over Redis, events whose ids differ only in invalid UTF-8 bytes keep
// distinct ids, and a deep or long-typed body is handed on malformed.
func TestHostileArcBodiesOnRealRedis(t *testing.T) {
	t.Parallel()
	raw := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, raw.Close()) })
	ps := newPubSub(t, Config{})
	t.Cleanup(func() { assert.NoError(t, ps.Close()) })
	channel := "arcmill-test-" + uuid.NewString()[:8] + ":t"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := ps.Subscribe(ctx, channel)
	require.NoError(t, err)

	for _, id := range []string{"x\xff", "x\xfe"} {
		body := `{"type":"t","payload":null,"meta":{"id":"` + id + `"}}`
		require.NoError(t, raw.Publish(ctx, channel, body).Err())
		m := receive(t, sub, "event")
		m.Ack()
		assert.Equal(t, id, m.UUID, "the id's bytes, not U+FFFD")
		ev, err := arc.FromMessage(m)
		require.NoError(t, err)
		assert.Equal(t, body, string(mustMarshal(t, ev)), "written back as it came")
	}
	for what, body := range map[string]string{
		"nested too deeply": `{"type":"t","payload":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `,"meta":{"id":"1"}}`,
		"longer than":       `{"type":"` + strings.Repeat("a.", 40000) + `","meta":{"id":"1"}}`,
	} {
		require.NoError(t, raw.Publish(ctx, channel, body).Err())
		m := receive(t, sub, what)
		m.Ack()
		_, err := arc.FromMessage(m)
		require.ErrorIs(t, err, arc.ErrMalformedEvent, what)
		assert.Contains(t, err.Error(), what)
		assert.Equal(t, body, string(m.Payload), "the original bytes, for the dead letter")
	}
}
