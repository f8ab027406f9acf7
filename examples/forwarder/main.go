// Command forwarder is for teams already on Watermill's forwarder: it sends
// the same Arc event through Watermill's forwarder (watermill-sql envelope,
// Forwarder) and through arcmill's outbox (Outbox.Write, Relay), both in a
// PostgreSQL business transaction, both to Redis Streams in Arc's layout,
// and shows that what arrives is the same, byte for byte. See README.md for
// what changes in the code and what you gain.
//
//	go run ./examples/forwarder [-dsn postgres://…] [-redis 127.0.0.1:6379]
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

func main() {
	dsn := flag.String("dsn", envOr("ARCMILL_POSTGRES_DSN", "postgres://postgres:postgres@127.0.0.1:5432/arcmill?sslmode=disable"), "PostgreSQL URL")
	addr := flag.String("redis", envOr("ARCMILL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *dsn, *addr, defaultPrefix, defaultBefore, defaultAfter); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// inTx runs write in one business transaction with an order row.
func inTx(ctx context.Context, db *sql.DB, table string, write func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (id) VALUES ($1)`, fmt.Sprint(time.Now().UnixNano())); err != nil {
		return err
	}
	if err := write(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// The example's own names: it never touches a stream or table a service uses.
const (
	defaultPrefix = "arcmill_example_fwd"
	defaultBefore = "arcmill-example:forwarder:before"
	defaultAfter  = "arcmill-example:forwarder:after"
	// keepEntries trims the example's streams, which grow by one entry per
	// path and run.
	keepEntries = 1000
	// closeWait bounds Forwarder.Close, which otherwise waits up to 30 s
	// for a message still in flight.
	closeWait = 10 * time.Second
)

// run sends one new event through each path and reports what this run's
// event did. Everything it waits for is tied to this run's event id, so a
// re-run on the same servers (old entries on the streams, old rows and
// offsets in the tables) does the same thing.
func run(ctx context.Context, out io.Writer, dsn, redisAddr, prefix, before, after string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	orders := prefix + "_orders"
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+orders+` (id TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("creating %s: %w", orders, err)
	}
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer client.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, DefaultMaxLen: keepEntries})
	if err != nil {
		return err
	}
	// A new order per run: a re-run's idempotency key must not match the
	// previous run's, or the outbox would (rightly) store nothing.
	orderID := fmt.Sprintf("o-%d", time.Now().UnixNano())
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": orderID}, arc.Meta{CorrelationID: "req-1",
		IdempotencyKey: "checkout-" + orderID, UserID: "u-7"})
	if err != nil {
		return err
	}

	// Before: Watermill's forwarder. Tables per forwarder topic; the event
	// travels as a Watermill message inside a JSON envelope.
	fwdTopic := prefix + "_forwarder"
	if err := outbox.MigrateForwarder(ctx, db, outbox.PostgreSQL, fwdTopic); err != nil {
		return fmt.Errorf("creating the forwarder's tables: %w", err)
	}
	beforeTip, err := tip(ctx, client, before)
	if err != nil {
		return err
	}
	if err := inTx(ctx, db, orders, func(tx *sql.Tx) error {
		txPub, err := outbox.TxPublisher(tx, outbox.PostgreSQL, fwdTopic) // forwarder.NewPublisher over watermill-sql
		if err != nil {
			return err
		}
		msg, err := arc.ToMessage(ev)
		if err != nil {
			return err
		}
		return txPub.Publish(before, msg)
	}); err != nil {
		return fmt.Errorf("writing through the forwarder: %w", err)
	}
	fwd, err := outbox.NewForwarder(db, outbox.PostgreSQL, pub, outbox.ForwarderConfig{Topic: fwdTopic})
	if err != nil {
		return err
	}
	fctx, stopFwd := context.WithCancel(ctx)
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(fctx) }()
	beforeData, beforeIn, err := waitFor(ctx, client, before, beforeTip, ev.Meta.ID)
	if err == nil {
		// Forwarder.Close waits for a message whose ack is not recorded
		// yet: let the forwarder record it first.
		err = waitForwarderAcked(ctx, db, fwdTopic)
	}
	stopFwd()
	if cerr := closeForwarder(fwd, fwdDone); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("the Watermill forwarder path: %w", err)
	}
	fmt.Fprintf(out, "before (Watermill forwarder): arrived on %s in %s\n", before, beforeIn)

	// After: arcmill's outbox. One table; the event is stored as it will be
	// published; dedupe, backoff, dead letters, LISTEN/NOTIFY.
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: prefix + "_outbox"})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating the outbox: %w", err)
	}
	afterTip, err := tip(ctx, client, after)
	if err != nil {
		return err
	}
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{})
	if err != nil {
		return err
	}
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	for i := 0; i < 2; i++ { // the second write is a retried request: deduplicated
		if err := inTx(ctx, db, orders, func(tx *sql.Tx) error {
			return ob.Write(ctx, tx, outbox.Entry{Topic: after, Event: ev})
		}); err != nil {
			stopRelay()
			<-relayDone
			return fmt.Errorf("writing to the outbox: %w", err)
		}
	}
	afterData, afterIn, err := waitFor(ctx, client, after, afterTip, ev.Meta.ID)
	stopRelay()
	if rerr := <-relayDone; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("the arcmill outbox path: %w", err)
	}
	// The relay has stopped: a duplicate would be on the stream by now.
	n, err := countEvent(ctx, client, after, afterTip, ev.Meta.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "after (arcmill outbox):       arrived on %s in %s; written twice, stored and sent %d time(s)\n",
		after, afterIn, n)
	if beforeData != afterData {
		return fmt.Errorf("the two paths delivered different bytes:\n%s\n%s", beforeData, afterData)
	}
	fmt.Fprintf(out, "same Arc bytes on both streams: %.80s…\n", afterData)
	return nil
}

// tip is the id of a stream's last entry ("0-0" when there is none): what
// this run adds comes after it.
func tip(ctx context.Context, client *redis.Client, stream string) (string, error) {
	last, err := client.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", stream, err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// eventID is the Arc event id in an entry's data ("" when there is none).
func eventID(m redis.XMessage) (string, string) {
	data, _ := m.Values[redisstream.FieldData].(string)
	var ev arc.Event
	if arc.Unmarshal([]byte(data), &ev) != nil {
		return "", data
	}
	return ev.Meta.ID, data
}

// waitFor returns the data of the entry after `after` on stream that
// carries event id, and how long it took to arrive.
func waitFor(ctx context.Context, client *redis.Client, stream, after, id string) (string, time.Duration, error) {
	start := time.Now()
	for {
		res, err := client.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, after}, Block: 100 * time.Millisecond}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return "", 0, fmt.Errorf("event %s did not arrive on %s: %w", id, stream, ctx.Err())
			}
			return "", 0, fmt.Errorf("reading %s: %w", stream, err)
		}
		for _, s := range res {
			for _, m := range s.Messages {
				after = m.ID
				if got, data := eventID(m); got == id {
					return data, time.Since(start).Round(time.Millisecond), nil
				}
			}
		}
	}
}

// countEvent counts the entries after `after` on stream that carry event id.
func countEvent(ctx context.Context, client *redis.Client, stream, after, id string) (int, error) {
	entries, err := client.XRange(ctx, stream, "("+after, "+").Result()
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", stream, err)
	}
	n := 0
	for _, m := range entries {
		if got, _ := eventID(m); got == id {
			n++
		}
	}
	return n, nil
}

// waitForwarderAcked waits until the forwarder's consumer group has
// recorded the ack of the newest message in its table (watermill-sql's
// offsets table for the topic).
func waitForwarderAcked(ctx context.Context, db *sql.DB, topic string) error {
	q := `SELECT COALESCE((SELECT offset_acked FROM "watermill_offsets_` + topic + `" WHERE consumer_group = $1), 0) >=
		(SELECT COALESCE(MAX("offset"), 0) FROM "watermill_` + topic + `")`
	for {
		var acked bool
		if err := db.QueryRowContext(ctx, q, outbox.DefaultForwarderConsumerGroup).Scan(&acked); err != nil {
			return fmt.Errorf("reading the forwarder's offsets: %w", err)
		}
		if acked {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the forwarder did not record its ack: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// closeForwarder closes Watermill's forwarder and waits for Run to return,
// for at most closeWait.
func closeForwarder(fwd interface{ Close() error }, done <-chan error) error {
	closed := make(chan error, 1)
	go func() { closed <- fwd.Close() }()
	timeout := time.After(closeWait)
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("closing the forwarder: %w", err)
		}
	case <-timeout:
		return fmt.Errorf("Watermill's Forwarder.Close did not return within %s", closeWait)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("the forwarder stopped with: %w", err)
		}
		return nil
	case <-timeout:
		return fmt.Errorf("Watermill's Forwarder.Run did not return within %s", closeWait)
	}
}
