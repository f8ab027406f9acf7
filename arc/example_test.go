package arc_test

import (
	"fmt"
	"time"

	"github.com/arcmill/arcmill/arc"
)

// Fixed ids and times keep the output stable; leave them zero and NewEvent
// fills a UUID v4 and the current time.
var at = time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC)

func ExampleNewEvent() {
	ev, err := arc.NewEvent("order.created", map[string]any{"orderId": "o-1", "total": 99},
		arc.Meta{ID: "evt-1", Timestamp: at, CorrelationID: "req-abc", UserID: "u-7"})
	if err != nil {
		panic(err)
	}
	wire, _ := arc.Marshal(ev)
	fmt.Println(string(wire))
	// Output:
	// {"type":"order.created","payload":{"orderId":"o-1","total":99},"meta":{"id":"evt-1","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-abc","userId":"u-7"}}
}

func ExampleNewChild() {
	order, _ := arc.NewEvent("order.created", nil, arc.Meta{ID: "evt-1", Timestamp: at, UserID: "u-7"})
	payment, _ := arc.NewChild(order, "payment.requested", map[string]int{"amount": 99},
		arc.Meta{ID: "evt-2", Timestamp: at})
	receipt, _ := arc.NewChild(payment, "receipt.sent", nil, arc.Meta{ID: "evt-3", Timestamp: at})
	for _, ev := range []arc.Event{order, payment, receipt} {
		fmt.Printf("%-17s id=%s causation=%q correlation=%q user=%s\n",
			ev.Type, ev.Meta.ID, ev.Meta.CausationID, ev.Meta.CorrelationID, ev.Meta.UserID)
	}
	// Output:
	// order.created     id=evt-1 causation="" correlation="" user=u-7
	// payment.requested id=evt-2 causation="evt-1" correlation="evt-1" user=u-7
	// receipt.sent      id=evt-3 causation="evt-2" correlation="evt-1" user=u-7
}

func ExampleUnmarshal() {
	var ev arc.Event
	err := arc.Unmarshal([]byte(`{"type":"order.created","payload":{"orderId":"o-1"},
		"meta":{"id":"evt-1","timestamp":"2026-04-28T12:00:00.5+02:00","tenantTier":"gold"}}`), &ev)
	fmt.Println(err, ev.Type, ev.Meta.Timestamp, string(ev.Meta.Extra["tenantTier"]))

	err = arc.Unmarshal([]byte(`{"type":"order.created","meta":{}}`), &ev)
	fmt.Println(err)
	// Output:
	// <nil> order.created 2026-04-28 10:00:00.5 +0000 UTC "gold"
	// arc: malformed event: meta.id: must be a non-empty string
}

func ExampleToMessage() {
	ev, _ := arc.NewEvent("order.created", map[string]string{"orderId": "o-1"},
		arc.Meta{ID: "evt-1", Timestamp: at, CorrelationID: "req-abc"})
	msg, _ := arc.ToMessage(ev)
	fmt.Println(msg.UUID, string(msg.Payload), msg.Metadata.Get(arc.MetadataType), msg.Metadata.Get("correlation_id"))

	back, _ := arc.FromMessage(msg)
	fmt.Println(back.Equal(ev))
	// Output:
	// evt-1 {"orderId":"o-1"} order.created req-abc
	// true
}
