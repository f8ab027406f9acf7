package outbox_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// A business write and its event in one transaction; the Forwarder,
// running elsewhere, delivers the event once the transaction commits.
// It needs PostgreSQL or MySQL, so it is compiled but not run.
func ExampleTxPublisher() {
	var (
		ctx    = context.Background()
		db     *sql.DB           // opened with a PostgreSQL driver
		broker message.Publisher // e.g. redisstream.NewPublisher(...)
	)
	// Once, at deploy or start-up.
	if err := outbox.MigrateForwarder(ctx, db, outbox.PostgreSQL, ""); err != nil {
		log.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() // a no-op once committed
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, "o-1"); err != nil {
		log.Fatal(err)
	}
	pub, err := outbox.TxPublisher(tx, outbox.PostgreSQL, "")
	if err != nil {
		log.Fatal(err)
	}
	ev, err := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{})
	if err != nil {
		log.Fatal(err)
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.Publish("arc:events", msg); err != nil { // the destination topic
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil { // or Rollback: then nothing is ever published
		log.Fatal(err)
	}

	fwd, err := outbox.NewForwarder(db, outbox.PostgreSQL, broker, outbox.ForwarderConfig{})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := fwd.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
}
