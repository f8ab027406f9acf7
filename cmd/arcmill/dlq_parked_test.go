package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// parkSequence runs events of key through a sequenced handler whose first
// event fails for good, so that the rest are parked; it returns the head's
// event id.
func parkSequence(t *testing.T, prefix, dlq, handler, key string, n int) string {
	t.Helper()
	c := redisClient(t)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: c}, Topic: dlq,
			ConsumerGroup: "svc"},
		Sequence: &middleware.SequenceConfig{Handler: handler, Prefix: prefix},
	})
	require.NoError(t, err)
	first := true
	var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) {
		if first {
			first = false
			return nil, fmt.Errorf("%w: boom", arc.ErrUnrecoverable)
		}
		t.Error("a parked event ran")
		return nil, nil
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	var head string
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent("order.step", map[string]int{"i": i}, arc.Meta{PartitionKey: key})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		if i == 0 {
			head = ev.Meta.ID
		}
		msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: handler, Topic: "orders", Event: ev}))
		_, err = h(msg)
		require.NoError(t, err)
	}
	require.NoError(t, stack.Close()) // no drainer: the CLI's changes stay as it made them
	return head
}

// parkKeys parks each of keys for handler: its head fails for good, a
// second event is parked behind it.
func parkKeys(t *testing.T, prefix, dlq, handler string, keys []string) {
	t.Helper()
	c := redisClient(t)
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: c}, Topic: dlq,
			ConsumerGroup: "svc"},
		Sequence: &middleware.SequenceConfig{Handler: handler, Prefix: prefix},
	})
	require.NoError(t, err)
	heads := 0
	var h message.HandlerFunc = func(*message.Message) ([]*message.Message, error) {
		heads++ // only heads run: the rest are parked
		return nil, fmt.Errorf("%w: boom", arc.ErrUnrecoverable)
	}
	for i := len(stack.Middleware) - 1; i >= 0; i-- {
		h = stack.Middleware[i](h)
	}
	for _, key := range keys {
		for i := range 2 {
			ev, err := arc.NewEvent("order.step", map[string]int{"i": i}, arc.Meta{PartitionKey: key})
			require.NoError(t, err)
			msg, err := arc.ToMessage(ev)
			require.NoError(t, err)
			msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: handler, Topic: "orders", Event: ev}))
			_, err = h(msg)
			require.NoError(t, err)
		}
	}
	require.NoError(t, stack.Close())
	require.Equal(t, len(keys), heads)
}

// `dlq parked --offset --limit` shows a page of the keys, in order, across
// handlers, and says which; pages concatenate to the whole list.
func TestDlqParkedPaged(t *testing.T) {
	c := redisClient(t)
	prefix := "arcmill-cli-test:seq:" + uuid.NewString() + ":"
	dlq := tempStream(t, c) + ":dlq"
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	keysOf := func(handler string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s-%03d", handler, i))
		}
		return out
	}
	parkKeys(t, prefix, dlq, "ship", keysOf("ship", 9))
	parkKeys(t, prefix, dlq, "bill", keysOf("bill", 12))
	all := append(keysOf("bill", 12), keysOf("ship", 9)...)
	list := func(args ...string) ([]string, string) {
		t.Helper()
		r := arcmill(t, "", append([]string{"dlq", "parked", "--seq-prefix", prefix, "--format", "json"}, args...)...)
		require.Equal(t, exitOK, r.code, r.stderr)
		var keys []string
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if line == "" {
				continue
			}
			var seq middleware.ParkedSequence
			require.NoError(t, json.Unmarshal([]byte(line), &seq), line)
			keys = append(keys, seq.Key)
		}
		return keys, r.stderr
	}

	keys, summary := list()
	assert.Equal(t, all, keys)
	assert.Contains(t, summary, "21 parked key(s), 21 event(s) held")
	var got []string
	for off := 0; off < len(all); off += 5 {
		keys, summary = list("--offset", fmt.Sprint(off), "--limit", "5")
		got = append(got, keys...)
		assert.Contains(t, summary, fmt.Sprintf("keys %d-%d of 21 parked key(s) shown, %d event(s) held by those",
			off+1, min(off+5, 21), min(5, 21-off)))
	}
	assert.Equal(t, all, got)
	keys, summary = list("--offset", "30")
	assert.Empty(t, keys)
	assert.Contains(t, summary, "none of 21 parked key(s) shown")

	keys, summary = list("--handler", "ship", "--offset", "4", "--limit", "3")
	assert.Equal(t, keysOf("ship", 9)[4:7], keys)
	assert.Contains(t, summary, "keys 5-7 of 9 parked key(s) shown")

	r := arcmill(t, "", "dlq", "list", "--offset", "3")
	assert.Equal(t, exitUsage, r.code, "--offset is parked's")
	r = arcmill(t, "", "dlq", "parked", "--offset", "-1")
	assert.Equal(t, exitUsage, r.code)
}

func TestDlqParkedReleaseDiscard(t *testing.T) {
	c := redisClient(t)
	prefix := "arcmill-cli-test:seq:" + uuid.NewString() + ":"
	dlq := tempStream(t, c) + ":dlq"
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	head := parkSequence(t, prefix, dlq, "ship", "order-42", 4)
	parkSequence(t, prefix, dlq, "bill", "order-42", 2)
	parkSequence(t, prefix, dlq, "bill", "order-7", 2)

	r := arcmill(t, "", "dlq", "parked", "--seq-prefix", prefix, "--handler", "ship", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var seq middleware.ParkedSequence
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &seq), r.stdout)
	assert.Equal(t, "order-42", seq.Key)
	assert.Equal(t, "ship", seq.Handler)
	assert.Equal(t, "svc", seq.Group)
	assert.Equal(t, "parked", seq.Status)
	assert.EqualValues(t, 3, seq.Parked)
	assert.Equal(t, head, seq.Head.EventID)
	assert.Equal(t, middleware.ReasonUnrecoverable, seq.Head.Reason)
	assert.Contains(t, r.stderr, "1 parked key(s), 3 event(s) held")

	r = arcmill(t, "", "dlq", "parked", "--seq-prefix", prefix, "--format", "text")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 3, strings.Count(r.stdout, "\n"), r.stdout)
	assert.Contains(t, r.stdout, "handler=bill")
	assert.Contains(t, r.stdout, "event="+head)

	r = arcmill(t, "", "dlq", "release", "order-42", "--seq-prefix", prefix)
	assert.Equal(t, exitUsage, r.code, "parked for two handlers")
	assert.Contains(t, r.stderr, "--handler")

	r = arcmill(t, "", "dlq", "release", "order-42", "--seq-prefix", prefix, "--handler", "ship", "--format", "text")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `released "order-42": 3 parked event(s)`)
	r = arcmill(t, "", "dlq", "parked", "--seq-prefix", prefix, "--handler", "ship", "--format", "json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &seq), r.stdout)
	assert.Equal(t, "released", seq.Status)

	r = arcmill(t, "", "dlq", "discard", "order-7", "--seq-prefix", prefix, "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.JSONEq(t, `{"key":"order-7","discarded":1}`, r.stdout)
	r = arcmill(t, "", "dlq", "discard", "order-7", "--seq-prefix", prefix)
	assert.Equal(t, exitNotFound, r.code)
	r = arcmill(t, "", "dlq", "release", "nope", "--seq-prefix", prefix)
	assert.Equal(t, exitNotFound, r.code)
}

// `arcmill dlq redrive` of a head releases its parked sequence: the
// consumer runs the head, then the parked events, in order.
func TestDlqRedriveReleasesParkedSequence(t *testing.T) {
	c := redisClient(t)
	ctx := context.Background()
	stream := tempStream(t, c)
	prefix := stream + ":seq:"
	t.Cleanup(func() {
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: middleware.NoRetries},
		DeadLetter: middleware.DeadLetterConfig{Publisher: &redisstream.DeadLetterPublisher{Client: c}, Topic: stream + ":dlq",
			ConsumerGroup: "svc"},
		Sequence: &middleware.SequenceConfig{Handler: "ship", Prefix: prefix, PollInterval: 50 * time.Millisecond},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: c, ConsumerGroup: "svc",
		BlockTime: 100 * time.Millisecond})
	require.NoError(t, err)
	var mu sync.Mutex
	fixed, ran := false, []string{}
	_, err = events.Handle(wildcard.HandlerConfig{Name: "ship", Subscriber: sub, Topic: stream, Patterns: []string{"order.*"},
		Middleware: stack.Middleware}, func(_ context.Context, ev arc.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.Type == "order.created" && !fixed {
			return fmt.Errorf("%w: no warehouse", arc.ErrUnrecoverable)
		}
		ran = append(ran, ev.Type)
		return nil
	})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = events.Run(ctx) }()
	<-router.Running()
	defer func() { require.NoError(t, router.Close()); <-done; require.NoError(t, stack.Close()) }()

	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: c})
	require.NoError(t, err)
	types := []string{"order.created", "order.paid", "order.packed", "order.shipped"}
	for _, typ := range types {
		ev, err := arc.NewEvent(typ, nil, arc.Meta{Aggregate: &arc.Aggregate{Type: "order", ID: "o-9"}})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(stream, msg))
	}
	require.Eventually(t, func() bool {
		r := arcmill(t, "", "dlq", "parked", "--seq-prefix", prefix, "--format", "json")
		return strings.Contains(r.stdout, `"parked":3`)
	}, 60*time.Second, 50*time.Millisecond)
	mu.Lock()
	assert.Empty(t, ran)
	fixed = true
	mu.Unlock()

	r := arcmill(t, "", "dlq", "redrive", "--stream", stream+":dlq")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == 4 }, 60*time.Second, 20*time.Millisecond)
	mu.Lock()
	assert.Equal(t, types, ran)
	mu.Unlock()
	r = arcmill(t, "", "dlq", "parked", "--seq-prefix", prefix, "--format", "json")
	assert.Empty(t, r.stdout)
}
