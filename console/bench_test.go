package console

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
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

// BenchmarkExploreOutbox10k explores a correlation id over an outbox of
// 10,000 pending rows (the explorer's bound per outbox) and an empty
// stream: the cost of the outbox's bounded read, decoded row by row.
func BenchmarkExploreOutbox10k(b *testing.B) {
	bb := setup(b)
	ctx := context.Background()
	for chunk := 0; chunk < 10; chunk++ {
		tx, err := bb.db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 1000; i++ {
			ev, err := arc.NewEvent("invoice.issued", map[string]int{"i": i}, arc.Meta{CorrelationID: fmt.Sprintf("corr-%d", chunk)})
			if err != nil {
				b.Fatal(err)
			}
			if err := bb.ob.Write(ctx, tx, outbox.Entry{Topic: bb.stream, Event: ev}); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	cfg := bb.config()
	cfg.Outboxes[0].DB = bb.db
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		x, err := c.explore(ctx, "corr-3")
		if err != nil || x.Count != 1000 || x.OutboxScanned != 10_000 || x.OutboxLimited {
			b.Fatalf("%d nodes, %d rows read, limited %v, %v", x.Count, x.OutboxScanned, x.OutboxLimited, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/explore")
}
