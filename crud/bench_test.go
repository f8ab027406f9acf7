package crud

import (
	"testing"
)

// BenchmarkCreated is the CPU cost of building one CRUD event from a Go
// struct (encode the document, find its id, build and check the event).
//
//	go test -run '^$' -bench BenchmarkCreated -benchmem ./crud
func BenchmarkCreated(b *testing.B) {
	type product struct {
		ID    uint   `json:"id"`
		Name  string `json:"name"`
		Price int    `json:"price"`
	}
	doc := &product{ID: 42, Name: "Mug", Price: 12}
	scope := NewScope("7b0f2a8e-5a1e-4c1b-9d7e-2f4b7c9d1e00", "u-7", "org-1")
	for b.Loop() {
		if _, err := Created("product", doc, scope); err != nil {
			b.Fatal(err)
		}
	}
}
