package console

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkGroups100k groups 100,000 stream dead letters in 50 causes, as
// the dead-letters page does on each load; the first load reads and
// indexes the stream (its time is logged), the others read only what is
// new.
func BenchmarkGroups100k(b *testing.B) {
	bb := setup(b)
	bb.deadLetters("order.created", 100_000, func(i int) string {
		return fmt.Sprintf("failure %s: order %d not found", strings.Repeat("x", i%50+1), i)
	})
	c, err := New(bb.config())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	start := time.Now()
	if _, _, err := c.groups(ctx, Filter{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("first load (reads and indexes 100,000 dead letters): %v", time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for b.Loop() {
		gs, scan, err := c.groups(ctx, Filter{})
		if err != nil || len(gs) != 50 || scan.Matched != 100_000 {
			b.Fatalf("%d groups, %+v, %v", len(gs), scan, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
}

// BenchmarkGroupsOutbox20k groups 20,000 outbox dead letters, which are
// read whole on each load (the outbox has no index).
func BenchmarkGroupsOutbox20k(b *testing.B) {
	bb := setup(b)
	for i := 0; i < 20; i++ {
		bb.outboxDead(fmt.Sprintf("invoice.t%d", i), 1000, "refused")
	}
	c, err := New(bb.config())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for b.Loop() {
		gs, scan, err := c.groups(ctx, Filter{Source: "outbox:orders"})
		if err != nil || len(gs) != 20 || scan.Matched != 20_000 {
			b.Fatalf("%d groups, %+v, %v", len(gs), scan, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
}
