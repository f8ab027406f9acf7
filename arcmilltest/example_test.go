package arcmilltest_test

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arcmilltest"
	"github.com/arcmill/arcmill/outbox"
)

// exampleT stands in for the *testing.T a test would pass.
type exampleT struct{}

func (exampleT) Helper()                        {}
func (exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

var t exampleT

// A deterministic event: its id and timestamp are fixed, so assertions
// and golden files can name them.
func ExampleEvent() {
	ev := arcmilltest.Event(t, "order.created", map[string]string{"orderId": "o-1"}, arcmilltest.Deterministic())
	next := arcmilltest.Event(t, "order.paid", nil, arcmilltest.Deterministic())
	fmt.Println(ev.Meta.ID, ev.Meta.Timestamp.Format("2006-01-02"), string(ev.Payload))
	fmt.Println(next.Meta.ID)
	// Output:
	// evt-1 2026-01-01 {"orderId":"o-1"}
	// evt-2
}

// Code under test publishes through a RecordingPublisher; the test asserts
// on what it published.
func ExampleRecordingPublisher() {
	pub := arcmilltest.NewRecordingPublisher()

	// The code under test.
	placeOrder := func(pub message.Publisher) error {
		ev := arcmilltest.Event(t, "order.created", map[string]int{"total": 99})
		return pub.Publish("arc:events", arcmilltest.Message(t, ev))
	}
	if err := placeOrder(pub); err != nil {
		panic(err)
	}

	ev := pub.RequirePublished(t, "order.created", arcmilltest.OnTopic("arc:events"))
	fmt.Println(ev.Type, string(ev.Payload), len(pub.Messages()))
	// Output: order.created {"total":99} 1
}

// RequirePublished reads a real subscription (here a GoChannel) until the
// event comes, acknowledging what it reads.
func ExampleRequirePublished() {
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 8}, watermill.NopLogger{})
	defer pubSub.Close()
	msgs, err := pubSub.Subscribe(context.Background(), "arc:events") // before the code under test publishes
	if err != nil {
		panic(err)
	}
	for _, typ := range []string{"user.created", "order.created"} {
		if err := pubSub.Publish("arc:events", arcmilltest.Message(t, arcmilltest.Event(t, typ, nil))); err != nil {
			panic(err)
		}
	}
	ev := arcmilltest.RequirePublished(t, msgs, "order.created")
	fmt.Println(ev.Type)
	// Output: order.created
}

// RequireOutboxed asserts that the code under test wrote its event into
// the outbox in its own transaction, before anything is committed.
func ExampleRequireOutboxed() {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file::memory:")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one in-memory database
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	if err != nil {
		panic(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		panic(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback()

	// The code under test: its state and its event in one transaction.
	ev := arcmilltest.Event(t, "order.created", map[string]string{"orderId": "o-1"}, arcmilltest.WithID("evt-42"))
	if err := ob.Write(ctx, tx, outbox.Entry{Topic: "arc:events", Event: ev}); err != nil {
		panic(err)
	}

	got := arcmilltest.RequireOutboxed(t, ctx, tx, ob, "order.created")
	fmt.Println(got.Topic, got.Event.Type, got.Event.Meta.ID, string(got.Event.Payload))
	// Output: arc:events order.created evt-42 {"orderId":"o-1"}
}
