package middleware

import "time"

// window counts outcomes over a sliding window cut into buckets: a bucket
// is the outcomes of one slice of time (Window/Buckets), and the window is
// the last Buckets slices, the current one included. Not safe for
// concurrent use: the Breaker's lock guards it.
type window struct {
	width   time.Duration
	buckets []bucket
}

type bucket struct {
	slice   int64 // which slice of time it counts: unix nanos / width
	ok, bad int
}

func newWindow(span time.Duration, n int) *window {
	return &window{width: span / time.Duration(n), buckets: make([]bucket, n)}
}

// slice returns the number of the slice of time now falls in.
func (w *window) slice(now time.Time) int64 { return now.UnixNano() / int64(w.width) }

// add counts one outcome at now.
func (w *window) add(now time.Time, failed bool) {
	s := w.slice(now)
	b := &w.buckets[int(s%int64(len(w.buckets)))]
	if b.slice != s { // a bucket of an old slice: start it again
		*b = bucket{slice: s}
	}
	if failed {
		b.bad++
	} else {
		b.ok++
	}
}

// sum returns the outcomes of the window ending at now.
func (w *window) sum(now time.Time) (ok, bad int) {
	s := w.slice(now)
	oldest := s - int64(len(w.buckets)) + 1
	for _, b := range w.buckets {
		if b.slice >= oldest && b.slice <= s {
			ok += b.ok
			bad += b.bad
		}
	}
	return ok, bad
}

// reset forgets every outcome: a breaker that closes starts a fresh window.
func (w *window) reset() { clear(w.buckets) }

// trips reports whether bad failures out of ok+bad outcomes trip a breaker
// with these thresholds.
func trips(ok, bad, minRequests int, threshold float64) bool {
	total := ok + bad
	return total > 0 && total >= minRequests && float64(bad) >= threshold*float64(total)
}
