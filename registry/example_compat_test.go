package registry_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/arcmill/arcmill/registry"
)

// A registry in BACKWARD mode refuses a version whose consumers could not
// read the events already written, and names each breaking change.
func ExampleCompatibility() {
	events := registry.New(registry.Config{Compatibility: registry.CompatBackward})
	events.MustRegister(registry.Definition{Name: "order.created", Version: 1, Schema: json.RawMessage(
		`{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]}}}`)})

	err := events.Register(registry.Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(
		`{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid"]},"total":{"type":"number"}},
		  "required":["total"],"additionalProperties":false}`)})
	var incompatible *registry.IncompatibleError
	if errors.As(err, &incompatible) {
		for _, c := range incompatible.Changes {
			fmt.Println(c.Pointer, c.Rule)
		}
	}

	// Adding an optional property is compatible.
	err = events.Register(registry.Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(
		`{"type":"object","properties":{"orderId":{"type":"string"},"status":{"enum":["new","paid","shipped"]},"total":{"type":"number"}}}`)})
	fmt.Println(err)
	// Output:
	// /properties/total REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
	// /properties/status/enum ENUM_ARRAY_NARROWED
	// /additionalProperties ADDITIONAL_PROPERTIES_REMOVED
	// <nil>
}
