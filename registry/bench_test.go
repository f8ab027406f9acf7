package registry

import (
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A typical payload of about 200 bytes and its schema.
var (
	benchPayload = json.RawMessage(`{"orderId":"o-12345","customerId":"c-678","total":99.5,"currency":"EUR","status":"new",` +
		`"items":[{"sku":"a-1","qty":2,"price":25},{"sku":"b-7","qty":1,"price":49.5}],"note":"leave at the door"}`)
	benchSchema = json.RawMessage(`{"type":"object","required":["orderId","customerId","total","currency","items"],
	"properties":{"orderId":{"type":"string"},"customerId":{"type":"string"},"total":{"type":"number","minimum":0},
	"currency":{"type":"string","pattern":"^[A-Z]{3}$"},"status":{"enum":["new","paid","shipped"]},"note":{"type":"string","maxLength":500},
	"items":{"type":"array","minItems":1,"items":{"type":"object","required":["sku","qty"],
	"properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"price":{"type":"number"}}}}}}`)
)

// BenchmarkValidate: the registry's whole validation path (lookup, decode,
// validate) for a ~200-byte payload, against compiling the schema on every
// call, in one run (target, BENCHMARKS.md: ≤ 15 µs with schemas compiled once).
func BenchmarkValidate(b *testing.B) {
	r := New(Config{})
	if err := r.Register(Definition{Name: "order.created", Schema: benchSchema}); err != nil {
		b.Fatal(err)
	}
	b.Run("registry", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchPayload)))
		for b.Loop() {
			if err := r.Validate("order.created", benchPayload, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compile_each_time", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sch, err := compile("order.created", 1, benchSchema, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := check(sch, "order.created", 1, benchPayload); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var _ = jsonschema.Draft2020

// BenchmarkCheck measures one FULL_TRANSITIVE check of a new version of
// an order event against two earlier ones, the cost Register adds under
// a compatibility mode.
func BenchmarkCheck(b *testing.B) {
	v1 := Definition{Name: "order.created", Version: 1, Schema: json.RawMessage(orderSchemaV1)}
	v2 := Definition{Name: "order.created", Version: 2, Schema: json.RawMessage(orderSchemaV2)}
	v3 := Definition{Name: "order.created", Version: 3, Schema: json.RawMessage(orderSchemaV2)}
	earlier := []Definition{v1, v2}
	b.ReportAllocs()
	for b.Loop() {
		_ = Check(CompatFullTransitive, v3, earlier)
	}
}
