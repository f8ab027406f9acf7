package inbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// BenchmarkEndToEnd is the throughput of a handler that writes a row and
// emits an event, from a Redis stream through the wildcard router (8
// workers) and the database to the emitted event published by the relay
// (4 workers) on another Redis stream: "plain" commits the row and the
// outbox write in its own transaction, "inbox" runs the same through
// Inbox.Handle. Each op is one event, all of it; events/s is reported.
func BenchmarkEndToEnd(b *testing.B) {
	for _, d := range []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite} {
		for _, mode := range []string{"plain", "inbox"} {
			b.Run(d.String()+"/"+mode, func(b *testing.B) {
				endToEnd(b, d, mode == "inbox")
			})
		}
	}
}

func endToEnd(b *testing.B, d outbox.Dialect, withInbox bool) {
	f := newFixture(b, d, nil)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b), PoolSize: 64})
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	in, out := "arcmill:bench:inbox:in:"+f.ib.Table(), "arcmill:bench:inbox:out:"+f.ib.Table()
	f.cfg.EmitTopic = out
	ib, err := New(f.db, f.cfg)
	require.NoError(b, err)
	b.Cleanup(func() { rdb.Del(context.Background(), in, out) })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb})
	require.NoError(b, err)
	for i := 0; i < b.N; i++ {
		ev, err := arc.NewEvent("order.created", map[string]int{"n": i}, arc.Meta{PartitionKey: strconv.Itoa(i % 64)})
		require.NoError(b, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(b, err)
		require.NoError(b, pub.Publish(in, msg))
	}
	insert := f.bind("INSERT INTO " + f.ledger + " (consumer, event_id) VALUES (?, ?)")
	work := func(ctx context.Context, tx *stdsql.Tx, ev arc.Event) error {
		if _, err := tx.ExecContext(ctx, insert, "bench", ev.Meta.ID); err != nil {
			return err
		}
		child, err := arc.NewChild(ev, "invoice.created", map[string]int{"n": 1}, arc.Meta{})
		if err != nil {
			return err
		}
		return f.ob.Write(ctx, tx, outbox.Entry{Topic: out, Event: child})
	}
	handler := ib.Handle("bench", work)
	if !withInbox {
		handler = func(ctx context.Context, ev arc.Event) error {
			tx, err := f.db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if err := work(ctx, tx, ev); err != nil {
				return err
			}
			return tx.Commit()
		}
	}

	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: rdb, ConsumerGroup: "bench",
		OldestID: "0", MaxInFlight: 64})
	require.NoError(b, err)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(b, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{Workers: 8})
	require.NoError(b, err)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "bench", Subscriber: sub, Topic: in, Patterns: []string{"*"}}, handler)
	require.NoError(b, err)
	relay, err := f.ob.NewRelay(pub, outbox.RelayConfig{ConsumerID: "bench", Workers: 4, PollInterval: 5 * time.Millisecond})
	require.NoError(b, err)

	runCtx, cancel := context.WithCancel(ctx)
	routerDone, relayDone := make(chan error, 1), make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { routerDone <- events.Run(runCtx) }()
	go func() { relayDone <- relay.Run(runCtx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for rdb.XLen(ctx, out).Val() < int64(b.N) {
		require.True(b, time.Now().Before(deadline), "every emitted event is published")
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	require.NoError(b, <-routerDone)
	if err := <-relayDone; !errors.Is(err, context.Canceled) { // Run says why it stopped
		require.NoError(b, err)
	}
	require.NoError(b, sub.Close())
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
