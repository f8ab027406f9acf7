package registry_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/registry"
)

type OrderCreated struct {
	OrderID string  `json:"orderId"`
	Total   float64 `json:"total" jsonschema:"minimum=0"`
}

func ExampleDefine() {
	events := registry.New(registry.Config{})
	orderCreated := registry.MustDefine[OrderCreated](registry.Definition{Name: "order.created", Description: "An order was placed"})
	events.MustRegister(orderCreated.Definition())

	ev, _ := orderCreated.Create(OrderCreated{OrderID: "o-1", Total: 99}, arc.Meta{})
	fmt.Println(ev.Type, ev.Meta.SchemaVersion, events.Validate(ev.Type, ev.Payload, ev.Meta.SchemaVersion))

	got, _ := orderCreated.Decode(ev)
	fmt.Println(got.OrderID, got.Total)

	err := events.Validate("order.created", json.RawMessage(`{"orderId":"o-2","total":-1}`), 1)
	var ve *registry.ValidationError
	if errors.As(err, &ve) {
		for _, v := range ve.Violations {
			fmt.Println(v.Path, v.Message)
		}
	}
	// Output:
	// order.created 1 <nil>
	// o-1 99
	// /total minimum: got -1, want 0
}

func ExampleRegistry_ArcCatalog() {
	events := registry.New(registry.Config{})
	events.MustRegister(registry.Definition{Name: "order.shipped", Version: 2, Description: "Left the warehouse",
		Schema: json.RawMessage(`{"type":"object","properties":{"orderId":{"type":"string"},"carrier":{"type":"string"}},"required":["orderId"]}`)})
	out, _ := json.Marshal(events.ArcCatalog())
	fmt.Println(string(out))
	// Output:
	// [{"name":"order.shipped","version":2,"description":"Left the warehouse","hasSchema":true,"schemaFields":["orderId","carrier"],"requiredFields":["orderId"]}]
}
