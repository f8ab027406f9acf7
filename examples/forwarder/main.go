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
	if err := run(ctx, os.Stdout, *dsn, *addr, "fwd_example", "fwd:before", "fwd:after"); err != nil {
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

func run(ctx context.Context, out io.Writer, dsn, redisAddr, prefix, before, after string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	orders := prefix + "_orders"
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+orders+` (id TEXT PRIMARY KEY)`); err != nil {
		return err
	}
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer client.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	if err != nil {
		return err
	}
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1"}, arc.Meta{CorrelationID: "req-1",
		IdempotencyKey: "checkout-o-1", UserID: "u-7"})
	if err != nil {
		return err
	}

	// Before: Watermill's forwarder. Tables per forwarder topic; the event
	// travels as a Watermill message inside a JSON envelope.
	fwdTopic := prefix + "_forwarder"
	if err := outbox.MigrateForwarder(ctx, db, outbox.PostgreSQL, fwdTopic); err != nil {
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
		return err
	}
	fwd, err := outbox.NewForwarder(db, outbox.PostgreSQL, pub, outbox.ForwarderConfig{Topic: fwdTopic})
	if err != nil {
		return err
	}
	fctx, stopFwd := context.WithCancel(ctx)
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(fctx) }()
	beforeData, beforeIn, err := waitFor(ctx, client, before)
	stopFwd()
	_ = fwd.Close()
	<-fwdDone
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "before (Watermill forwarder): arrived on %s in %s\n", before, beforeIn)

	// After: arcmill's outbox. One table; the event is stored as it will be
	// published; dedupe, backoff, dead letters, LISTEN/NOTIFY.
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: prefix + "_outbox"})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
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
			return err
		}
	}
	afterData, afterIn, err := waitFor(ctx, client, after)
	time.Sleep(100 * time.Millisecond) // room for a duplicate to show up
	stopRelay()
	<-relayDone
	if err != nil {
		return err
	}
	n := client.XLen(ctx, after).Val()
	fmt.Fprintf(out, "after (arcmill outbox):       arrived on %s in %s; written twice, stored and sent %d time(s)\n",
		after, afterIn, n)
	if beforeData != afterData {
		return fmt.Errorf("the two paths delivered different bytes:\n%s\n%s", beforeData, afterData)
	}
	fmt.Fprintf(out, "same Arc bytes on both streams: %.80s…\n", afterData)
	return nil
}

// waitFor returns the first entry's data on stream and how long it took.
func waitFor(ctx context.Context, client *redis.Client, stream string) (string, time.Duration, error) {
	start := time.Now()
	for {
		entries, err := client.XRangeN(ctx, stream, "-", "+", 1).Result()
		if err != nil {
			return "", 0, err
		}
		if len(entries) > 0 {
			data, _ := entries[0].Values[redisstream.FieldData].(string)
			return data, time.Since(start).Round(time.Millisecond), nil
		}
		select {
		case <-ctx.Done():
			return "", 0, errors.New("nothing arrived on " + stream)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
