package wildcard

import (
	"fmt"
	"testing"
	"time"
)

// patternSet returns n patterns like a large installation's: per service
// and entity an exact type, a ".*" prefix and a ":*" prefix, plus one "*".
func patternSet(n int) []string {
	ps := []string{"*"}
	for i := 0; len(ps) < n; i++ {
		svc, ent := i/20, i%20
		ps = append(ps, fmt.Sprintf("svc%d.entity%d.created", svc, ent))
		if len(ps) < n {
			ps = append(ps, fmt.Sprintf("svc%d.entity%d.*", svc, ent))
		}
		if len(ps) < n {
			ps = append(ps, fmt.Sprintf("svc%d:entity%d:*", svc, ent))
		}
	}
	return ps
}

// scan is Arc's algorithm: every pattern tested in turn (its matchesPattern).
func scan(patterns []string, handlers []int, eventType string, dst []int) []int {
	for i, p := range patterns {
		if Match(p, eventType) {
			dst = append(dst, handlers[i])
		}
	}
	return dst
}

const benchType = "svc3.entity7.created"

func benchIndex(b *testing.B, n int) {
	idx := NewIndex[int]()
	for i, p := range patternSet(n) {
		idx.Add(MustParse(p), i)
	}
	buf := make([]int, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = idx.AppendMatches(buf[:0], benchType)
	}
}

func benchScan(b *testing.B, n int) {
	ps := patternSet(n)
	hs := make([]int, len(ps))
	for i := range hs {
		hs[i] = i
	}
	buf := make([]int, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = scan(ps, hs, benchType, buf[:0])
	}
}

// BenchmarkMatch: the index against Arc's linear scan over the same
// patterns (targets, BENCHMARKS.md: ≤ 100 ns and 0 allocs at 1,000; ≥ 50× the scan at 10,000).
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("index/%d", n), func(b *testing.B) { benchIndex(b, n) })
		b.Run(fmt.Sprintf("scan/%d", n), func(b *testing.B) { benchScan(b, n) })
	}
}

// BenchmarkMatchLongType: one lookup of a hostile 256 KB type (a '.' every
// other byte) among 1,000 patterns; linear, where hashing every cut of the
// type took 1.7 s.
func BenchmarkMatchLongType(b *testing.B) {
	idx := NewIndex[int]()
	for i, p := range patternSet(1000) {
		idx.Add(MustParse(p), i)
	}
	typ := hostileType(256 << 10)
	buf := make([]int, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = idx.AppendMatches(buf[:0], typ)
	}
}

// BenchmarkMatchRatio times index and scan in interleaved batches of one
// run and reports how many times faster the index is, per pattern count.
func BenchmarkMatchRatio(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			idx := NewIndex[int]()
			ps := patternSet(n)
			hs := make([]int, len(ps))
			for i, p := range ps {
				idx.Add(MustParse(p), i)
				hs[i] = i
			}
			buf := make([]int, 0, 16)
			const batch = 100
			var idxNs, scanNs time.Duration
			runs := 0
			for b.Loop() {
				start := time.Now()
				for range batch {
					buf = idx.AppendMatches(buf[:0], benchType)
				}
				idxNs += time.Since(start)
				start = time.Now()
				for range batch {
					buf = scan(ps, hs, benchType, buf[:0])
				}
				scanNs += time.Since(start)
				runs += batch
			}
			b.ReportMetric(float64(idxNs.Nanoseconds())/float64(runs), "index_ns/op")
			b.ReportMetric(float64(scanNs.Nanoseconds())/float64(runs), "scan_ns/op")
			b.ReportMetric(float64(scanNs)/float64(idxNs), "x_faster")
		})
	}
}
