package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// openExampleDB opens a fresh SQLite database the way arcmill recommends
// (WAL, a busy timeout, write transactions that lock up front) and
// returns it with a function that removes it.
func openExampleDB() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "outbox-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// placeOrder writes an order row and its event in one transaction.
func placeOrder(ctx context.Context, db *sql.DB, ob *outbox.Outbox, id string) (arc.Event, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return arc.Event{}, err
	}
	defer tx.Rollback() // a no-op once committed
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES (?)`, id); err != nil {
		return arc.Event{}, err
	}
	ev, err := arc.NewEvent("order.created", map[string]string{"orderId": id}, arc.Meta{IdempotencyKey: "req-" + id})
	if err != nil {
		return arc.Event{}, err
	}
	if err := ob.Write(ctx, tx, outbox.Entry{Topic: "orders", Event: ev}); err != nil {
		return arc.Event{}, err
	}
	return ev, tx.Commit() // or Rollback: then the event never leaves
}

// A business row and its event commit in one transaction; the relay
// publishes the event afterwards. SQLite here, so it runs anywhere; the
// calls are the same on PostgreSQL and MySQL.
func ExampleOutbox_Write() {
	ctx := context.Background()
	db, cleanup := openExampleDB()
	defer cleanup()

	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil { // once, at deploy or start-up
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	ev, err := placeOrder(ctx, db, ob, "o-1")
	if err != nil {
		log.Fatal(err)
	}

	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer broker.Close()
	relay, err := ob.NewRelay(broker, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := relay.RelayBatch(ctx) // one pass; Relay.Run keeps relaying
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("relayed %d of %d\n", res.Relayed, res.Attempted)

	msgs, err := broker.Subscribe(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	got, err := arc.FromMessage(<-msgs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Type, got.Meta.ID == ev.Meta.ID)
	// Output:
	// relayed 1 of 1
	// order.created true
}

// Run relays in the background until its context ends or Close is called.
// Running says when it works; events committed before or after are
// delivered without further calls.
func ExampleRelay_Run() {
	ctx := context.Background()
	db, cleanup := openExampleDB()
	defer cleanup()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}

	broker := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer broker.Close()
	msgs, err := broker.Subscribe(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	relay, err := ob.NewRelay(broker, outbox.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	<-relay.Running()

	for _, id := range []string{"o-1", "o-2"} {
		if _, err := placeOrder(ctx, db, ob, id); err != nil {
			log.Fatal(err)
		}
		relay.Wake() // optional: claim at once rather than at the next poll
		msg := <-msgs
		msg.Ack()
		ev, err := arc.FromMessage(msg)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("delivered", ev.Type, string(ev.Payload))
	}

	stop() // or relay.Close(), and Run returns ErrRelayClosed
	// Run returns why it stopped: here the cancel. A table that is
	// missing or a database that refuses the relay would have been
	// returned at once, wrapping ErrMissingTable or ErrAccessDenied.
	if err := <-done; !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
	fmt.Println(errors.Is(relay.Run(ctx), outbox.ErrRelayClosed))
	// Output:
	// delivered order.created {"orderId":"o-1"}
	// delivered order.created {"orderId":"o-2"}
	// true
}

// Dead letters are listed oldest first and redriven after a fix.
func ExampleOutbox_Redrive() {
	ctx := context.Background()
	db, cleanup := openExampleDB()
	defer cleanup()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	if _, err := placeOrder(ctx, db, ob, "o-1"); err != nil {
		log.Fatal(err)
	}

	// A broker that refuses everything, and a policy that gives up at once.
	down := brokerFunc(func(string, ...*message.Message) error { return errors.New("broker down") })
	relay, err := ob.NewRelay(down, outbox.RelayConfig{
		FailurePolicy: outbox.ExponentialBackoff(1, outbox.Backoff{})})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := relay.RelayBatch(ctx); err != nil {
		log.Fatal(err)
	}

	dead, err := ob.DeadLetters(ctx, outbox.Filter{Types: []string{"order.created"}}, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range dead {
		fmt.Println(d.Type, d.Attempts, d.Error)
	}
	n, err := ob.Redrive(ctx, outbox.RedriveOptions{Filter: outbox.Filter{Types: []string{"order.created"}}, Rate: 100})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("redriven:", n)
	// Output:
	// order.created 1 broker down
	// redriven: 1
}

// brokerFunc is a message.Publisher made of a function.
type brokerFunc func(topic string, msgs ...*message.Message) error

func (f brokerFunc) Publish(topic string, msgs ...*message.Message) error { return f(topic, msgs...) }
func (f brokerFunc) Close() error                                         { return nil }
