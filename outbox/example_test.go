package outbox_test

import (
	"context"
	"database/sql"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// A business write and its event in one transaction; the Forwarder,
// running elsewhere, delivers the event once the transaction commits.
func ExampleTxPublisher() {
	var (
		ctx    = context.Background()
		db     *sql.DB           // opened with a PostgreSQL driver
		broker message.Publisher // e.g. redisstream.NewPublisher(...)
	)
	if db == nil {
		return // this example only shows the calls
	}
	_ = outbox.MigrateForwarder(ctx, db, outbox.PostgreSQL, "") // once, at deploy or start-up

	tx, _ := db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, "o-1")
	pub, _ := outbox.TxPublisher(tx, outbox.PostgreSQL, "")
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{})
	msg, _ := arc.ToMessage(ev)
	_ = pub.Publish("arc:events", msg) // the destination topic
	_ = tx.Commit()                    // or Rollback: then nothing is ever published

	fwd, _ := outbox.NewForwarder(db, outbox.PostgreSQL, broker, outbox.ForwarderConfig{})
	go func() { _ = fwd.Run(ctx) }()
}
