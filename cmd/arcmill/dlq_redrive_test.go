package main

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/middleware"
)

// A dead letter of an entry that could not be read (here: an Arc entry
// whose data is not JSON, and one with bytes that are not UTF-8) is put
// back on its stream as its original fields, byte for byte.
func TestDLQRedrive_PutsUnreadableEntriesBackVerbatim(t *testing.T) {
	t.Parallel()
	c := redisClient(t)
	ctx := context.Background()
	orig, dlq := tempStream(t, c), tempStream(t, c)
	originals := [][]string{
		{"type", "order.created", "data", "{corrupt"},
		{"data", "\xff\xfe\x00 binary", "type", "order.created", "extra", "kept"},
	}
	for _, fields := range originals {
		args := []any{"XADD", orig, "*"}
		for _, f := range fields {
			args = append(args, f)
		}
		id, err := c.Do(ctx, args...).Text()
		require.NoError(t, err)
		// The dead letter the router writes for it.
		msg := message.NewMessage("m-"+id, nil)
		msg.Metadata.Set("arc_malformed", "unreadable")
		dl := middleware.DeadLetteredEvent{Reason: middleware.ReasonMalformed, Raw: middleware.NewRawMessage(msg),
			Event: middleware.PlaceholderEvent(id, time.Now())}
		data, err := dl.MarshalArc()
		require.NoError(t, err)
		env := message.NewMessage("dl-"+id, data)
		env.Metadata.Set(middleware.MetadataDLQSourceTopic, orig)
		env.Metadata.Set(middleware.MetadataDLQOriginalID, id)
		env.SetContext(ctx)
		require.NoError(t, (&redisstream.DeadLetterPublisher{Client: c}).Publish(dlq, env))
		require.NoError(t, c.XDel(ctx, orig, id).Err())
	}

	r := arcmill(t, "", "dlq", "redrive", "--stream", dlq)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "redriven 2 dead letter(s)")
	back, err := redisstream.RangeEntries(ctx, c, orig, "-", "+", 0)
	require.NoError(t, err)
	require.Len(t, back, 2)
	for i, e := range back {
		assert.Equal(t, originals[i], e.Fields, "entry %d put back exactly", i)
	}
	assert.Zero(t, c.XLen(ctx, dlq).Val())
}

// Redrive trims the target as it is trimmed: --trim N (and Arc's MAXLEN ~
// 10000 on arc:events by default) caps it; none leaves it whole.
func TestDLQRedrive_TrimsTheTarget(t *testing.T) {
	t.Parallel()
	c := redisClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		trim string
		want func(n int64) bool
	}{
		{"none", func(n int64) bool { return n == 1300 }},
		{"100", func(n int64) bool { return n < 1300 }}, // MAXLEN ~: whole nodes go, at least 100 stay
	} {
		orig, dlq := tempStream(t, c), tempStream(t, c)
		pipe := c.Pipeline()
		for i := 0; i < 1200; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: orig, Values: []any{"type", "order.old", "data", "{}"}})
		}
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
		for i := 0; i < 100; i++ {
			deadLetter(t, c, dlq, orig, "order.created")
		}
		r := arcmill(t, "", "dlq", "redrive", "--stream", dlq, "--trim", tc.trim)
		require.Equal(t, 0, r.code, r.stderr)
		n := c.XLen(ctx, orig).Val()
		assert.True(t, tc.want(n), "--trim %s: %d entries left", tc.trim, n)
		assert.GreaterOrEqual(t, n, int64(100))
	}
	r := arcmill(t, "", "dlq", "redrive", "--trim", "-3")
	assert.Equal(t, exitUsage, r.code)
}

// What Arc delivers, tail shows: payload timestamps Node reads as Invalid
// Date, nulls in meta, lone surrogates; its JSON is the entry's data.
func TestTail_ShowsWhatArcDelivers(t *testing.T) {
	t.Parallel()
	c := redisClient(t)
	ctx := context.Background()
	stream := tempStream(t, c)
	datas := []string{
		`{"type":"order.a","payload":{"timestamp":"yesterday"},"meta":{"id":"t-1","timestamp":"2026-01-01T10:00:00.000Z"}}`,
		`{"type":"order.a","payload":{"timestamp":""},"meta":{"id":"t-2","timestamp":"2026-01-01T10:00:00.000Z","userId":null}}`,
		`{"type":"order.a","payload":{},"meta":{"id":"t-3","timestamp":"2026-01-01T10:00:00.000Z","note":"\ud800"}}`,
	}
	for _, d := range datas {
		require.NoError(t, c.Do(ctx, "XADD", stream, "*", "type", "order.a", "data", d).Err())
	}
	r := arcmill(t, "", "tail", "--stream", stream, "--group", "ops", "--from-start", "--count", "3",
		"--format", "json", "--timeout", "10s")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "MALFORMED")
	for _, d := range datas {
		assert.Contains(t, r.stdout, d)
	}
}
