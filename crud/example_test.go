package crud_test

import (
	"fmt"
	"time"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/crud"
)

// The event Arc's arcCorePlugin publishes when a product is created, built
// in Go (a fixed id and time stand in for the fresh ones Created gives).
func ExampleChange_Event() {
	type product struct {
		ID    string `json:"_id"`
		Name  string `json:"name"`
		Price int    `json:"price"`
	}
	ev, err := crud.Change{
		Op:       crud.Create,
		Resource: "product",
		Doc:      product{ID: "p-1", Name: "Mug", Price: 12},
		Scope:    crud.NewScope("req-1", "u-7", "org-1"),
		ID:       "00000000-0000-4000-8000-000000000000",
		Time:     time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC),
	}.Event()
	if err != nil {
		panic(err)
	}
	b, _ := arc.Marshal(ev)
	fmt.Println(string(b))
	// Output:
	// {"type":"product.created","payload":{"resource":"product","operation":"create","data":{"_id":"p-1","name":"Mug","price":12},"userId":"u-7","organizationId":"org-1","timestamp":"2026-04-28T10:00:00.000Z"},"meta":{"id":"00000000-0000-4000-8000-000000000000","timestamp":"2026-04-28T10:00:00.000Z","correlationId":"req-1","resource":"product","resourceId":"p-1","userId":"u-7","organizationId":"org-1"}}
}
