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
	"net/url"
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
	stream := flag.String("stream", defaultStream, "the stream to deliver to")
	table := flag.String("table", defaultTable, "the outbox table")
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

// The example's own names: a run touches no real service's stream or table.
const (
	defaultStream = "arcmill-example:outbox:events"
	defaultTable  = "arcmill_example_outbox"
)

// run places one new order and reports what became of its event. What it
// waits for and counts is this run's event (by id, after the stream's last
// entry before the run), so a re-run on the same servers does the same.
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
	tip, err := lastID(ctx, client, stream)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(rctx) }()
	relayRunning := true
	stopRelay := func() {
		if relayRunning {
			stop()
			<-relayDone
			relayRunning = false
		}
	}
	defer stopRelay()

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
	entry, err := waitFor(ctx, client, stream, tip, ev.Meta.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "4. relayed to Redis %s after the commit: entry %s on %s, type %s, event %s\n",
		time.Since(start).Round(time.Millisecond), entry.ID, stream, entry.Values["type"], eventID(entry))
	// A stopped relay has settled what it published: had a duplicate been
	// stored, it would be on the stream now, and the row is delivered.
	stopRelay()
	n, err := countEvent(ctx, client, stream, tip, ev.Meta.ID)
	if err != nil {
		return err
	}
	st, err := ob.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "5. this event on %s: %d entry; outbox: pending %d, in flight %d, dead %d "+
		"(and %d delivered row(s) of this and earlier runs, kept for dedupe until purged)\n",
		stream, n, st.Pending, st.InFlight, st.Dead, st.Delivered)
	fmt.Fprintf(out, "   inspect it with: arcmill outbox status --table %s --dsn '%s' (password hidden)\n", table, redactDSN(dsn))
	return nil
}

// redactDSN hides a URL's password, for printing.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "<your DSN>"
	}
	return u.Redacted()
}

// lastID is the id of a stream's last entry ("0-0" when there is none).
func lastID(ctx context.Context, client *redis.Client, stream string) (string, error) {
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
func eventID(m redis.XMessage) string {
	data, _ := m.Values[redisstream.FieldData].(string)
	var ev arc.Event
	if arc.Unmarshal([]byte(data), &ev) != nil {
		return ""
	}
	return ev.Meta.ID
}

// waitFor returns the entry after `after` on stream that carries event id.
func waitFor(ctx context.Context, client *redis.Client, stream, after, id string) (redis.XMessage, error) {
	for {
		res, err := client.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, after}, Block: 100 * time.Millisecond}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return redis.XMessage{}, errors.New("the relay did not deliver in time")
			}
			return redis.XMessage{}, fmt.Errorf("reading %s: %w", stream, err)
		}
		for _, s := range res {
			for _, m := range s.Messages {
				after = m.ID
				if eventID(m) == id {
					return m, nil
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
		if eventID(m) == id {
			n++
		}
	}
	return n, nil
}
