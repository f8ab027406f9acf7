// Command outbox-postgres places an order in PostgreSQL and stores its
// Arc event in the same transaction (arcmill's outbox), then lets the relay
// deliver it to Redis Streams in Arc's layout, woken by LISTEN/NOTIFY. A
// retried request with the same idempotency key adds nothing; a rolled-back
// order sends nothing. See README.md.
//
//	go run ./examples/outbox-postgres [-dsn postgres://…] [-redis 127.0.0.1:6379]
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
	stream := flag.String("stream", "shop:events", "the stream to deliver to")
	table := flag.String("table", "shop_outbox", "the outbox table")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *dsn, *addr, *stream, *table); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-postgres:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, out io.Writer, dsn, redisAddr, stream, table string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.PostgreSQL, Table: table})
	if err != nil {
		return err
	}
	// Once, at deploy or start-up: never inside a business transaction.
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+table+`_orders (id TEXT PRIMARY KEY, total NUMERIC)`); err != nil {
		return err
	}

	// The relay: any Watermill publisher; here Redis Streams in Arc's layout.
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer client.Close()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	if err != nil {
		return err
	}
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{Workers: 2})
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	defer func() { stop(); <-relayDone }()

	orderID := fmt.Sprintf("o-%d", time.Now().UnixNano())
	placeOrder := func(commit bool) (arc.Event, error) {
		ev, err := arc.NewEvent("order.created", map[string]any{"orderId": orderID, "total": 99.5},
			arc.Meta{IdempotencyKey: "checkout-" + orderID, PartitionKey: orderID, Source: "shop"})
		if err != nil {
			return ev, err
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return ev, err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+`_orders (id, total) VALUES ($1, $2)
			ON CONFLICT (id) DO NOTHING`, orderID, 99.5); err != nil {
			return ev, err
		}
		if err := ob.Write(ctx, tx, outbox.Entry{Topic: stream, Event: ev}); err != nil {
			return ev, err
		}
		if !commit {
			return ev, tx.Rollback()
		}
		return ev, tx.Commit()
	}

	if _, err := placeOrder(false); err != nil {
		return err
	}
	fmt.Fprintln(out, "1. a transaction that rolls back: no order, no event")
	start := time.Now()
	ev, err := placeOrder(true)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. order %s and its event committed together (event %s)\n", orderID, ev.Meta.ID)
	if _, err := placeOrder(true); err != nil { // the client retries the request
		return err
	}
	fmt.Fprintln(out, "3. the same request again: same idempotency key, nothing new stored")

	// Wait for the relay (LISTEN/NOTIFY wakes it at the commit).
	var entries []redis.XMessage
	for len(entries) == 0 {
		if entries, err = client.XRange(ctx, stream, "-", "+").Result(); err != nil {
			return err
		}
		if len(entries) == 0 {
			select {
			case <-ctx.Done():
				return errors.New("the relay did not deliver in time")
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	fmt.Fprintf(out, "4. relayed to Redis %s after the commit: XADD %s * type %s data %.60s…\n",
		time.Since(start).Round(time.Millisecond), stream, entries[0].Values["type"], entries[0].Values["data"])
	time.Sleep(100 * time.Millisecond) // had a duplicate been stored, it would be here by now
	n, err := client.XLen(ctx, stream).Result()
	if err != nil {
		return err
	}
	st, err := ob.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "5. entries on %s: %d; outbox: pending %d, in flight %d, dead %d, delivered %d\n",
		stream, n, st.Pending, st.InFlight, st.Dead, st.Delivered)
	fmt.Fprintf(out, "   inspect it with: arcmill outbox status --dsn '%s' --table %s\n", dsn, table)
	return nil
}
