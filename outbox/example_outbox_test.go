package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// A business row and its event commit in one transaction; the relay
// publishes the event afterwards. SQLite here, so it runs anywhere; the
// calls are the same on PostgreSQL and MySQL.
func ExampleOutbox_Write() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer os.RemoveAll(dir)
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	defer db.Close()

	ob, _ := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	_ = ob.Migrate(ctx) // once, at deploy or start-up
	_, _ = db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`)

	tx, _ := db.BeginTx(ctx, nil)
	_, _ = tx.Exec(`INSERT INTO orders (id) VALUES (?)`, "o-1")
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"}, arc.Meta{IdempotencyKey: "req-1"})
	if err := ob.Write(ctx, tx, outbox.Entry{Topic: "orders", Event: ev}); err != nil {
		fmt.Println(err)
	}
	_ = tx.Commit() // or Rollback: then the event never leaves

	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer broker.Close()
	relay, _ := ob.NewRelay(broker, outbox.RelayConfig{})
	res, _ := relay.RelayBatch(ctx) // or relay.Run(ctx) in the background
	fmt.Printf("relayed %d of %d\n", res.Relayed, res.Attempted)

	msgs, _ := broker.Subscribe(ctx, "orders")
	got, _ := arc.FromMessage(<-msgs)
	fmt.Println(got.Type, got.Meta.ID == ev.Meta.ID)
	// Output:
	// relayed 1 of 1
	// order.created true
}

// Dead letters are listed oldest first and redriven after a fix.
func ExampleOutbox_Redrive() {
	var ob *outbox.Outbox // from outbox.New
	if ob == nil {
		return // this example only shows the calls
	}
	ctx := context.Background()
	dead, _ := ob.DeadLetters(ctx, outbox.Filter{Types: []string{"order.created"}}, 10)
	for _, d := range dead {
		fmt.Println(d.EventID, d.Attempts, d.Error)
	}
	n, _ := ob.Redrive(ctx, outbox.RedriveOptions{Filter: outbox.Filter{Types: []string{"order.created"}}, Rate: 100})
	fmt.Println("redriven:", n)
}
