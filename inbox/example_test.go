package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill/message"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/inbox"
	"github.com/arcmill/arcmill/outbox"
)

// printer is a broker that prints what the relay publishes.
type printer struct{}

func (printer) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		ev, err := arc.FromMessage(m)
		if err != nil {
			return err
		}
		fmt.Printf("published to %s: %s %s\n", topic, ev.Type, ev.Payload)
	}
	return nil
}

func (printer) Close() error { return nil }

// A payment handler behind the inbox: the order.placed event is delivered
// twice (at least once, as every broker does), the payment row is written
// once and payment.captured is published once. SQLite here, so it runs
// anywhere; the calls are the same on PostgreSQL and MySQL.
func ExampleInbox_Handle() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "inbox-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// The consumer outbox and the inbox share the service's database.
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	ib, err := inbox.New(db, inbox.Config{Outbox: ob, EmitTopic: "arc:events"})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []func(context.Context) error{ob.Migrate, ib.Migrate} { // once, at deploy or start-up
		if err := m(ctx); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := db.Exec(`CREATE TABLE payments (order_id TEXT NOT NULL)`); err != nil {
		log.Fatal(err)
	}

	// The handler: its writes and what it emits commit with the inbox record.
	charge := ib.Handle("payments", func(ctx context.Context, tx *sql.Tx, ev arc.Event) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments (order_id) VALUES (?)`, ev.Meta.ID); err != nil {
			return err
		}
		_, err := inbox.Emit(ctx, "payment.captured", map[string]int{"cents": 1999}, arc.Meta{})
		return err
	})

	placed, err := arc.NewEvent("order.placed", map[string]string{"orderId": "o-1"}, arc.Meta{})
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 2; i++ { // a delivery and its redelivery
		if err := charge(ctx, placed); err != nil { // nil both times: the duplicate is acked
			log.Fatal(err)
		}
	}

	var payments int
	if err := db.QueryRow(`SELECT COUNT(*) FROM payments`).Scan(&payments); err != nil {
		log.Fatal(err)
	}
	fmt.Println("payments written:", payments)

	relay, err := ob.NewRelay(printer{}, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := relay.RelayBatch(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// payments written: 1
	// published to arc:events: payment.captured {"cents":1999}
}
