package natsjs_test

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Arc handlers on NATS JetStream: one subject per event type, and a
// pattern's subscription filtered by the server.
func ExampleSubject() {
	var events *wildcard.Router // wildcard.NewRouter(router, wildcard.Config{})
	if events == nil {
		return // this example only shows the calls
	}
	nc, _ := nats.Connect(nats.DefaultURL)
	js, _ := nc.JetStream()
	_ = natsjs.EnsureStream(js, "ARC_EVENTS", "arc") // holds arc.>

	pub, _ := natsjs.NewPublisher(nats.DefaultURL, "arc", nil) // order.created goes to arc.order.created
	sub, _ := natsjs.NewSubscriber(nats.DefaultURL, "billing", nil)

	subject, _ := natsjs.Subject("arc", "order.*") // arc.order.>
	_, _ = events.Subscribe(sub, subject, "order.*", func(ctx context.Context, ev arc.Event) error { return nil })
	_ = pub
}
