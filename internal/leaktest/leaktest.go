// Package leaktest checks that a package's goroutines end after Close. It
// counts, in a dump of every goroutine, those running the package's own
// code, the tests' own goroutines aside, so goroutines of other tests
// running in parallel (Redis pools, GoChannels) cannot disturb the count,
// as a bare runtime.NumGoroutine would.
package leaktest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// pollInterval paces RequireNone's look at the dump.
const pollInterval = 5 * time.Millisecond

// Count returns how many goroutines are running code of the package whose
// import path is pkg ("github.com/arcmill/arcmill/wildcard"), those under
// testing.tRunner aside.
func Count(pkg string) int { return len(stacks(pkg)) }

// stacks returns the stacks of pkg's goroutines, as runtime.Stack prints
// them.
func stacks(pkg string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, pkg+".") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// RequireNone waits up to timeout for every goroutine of pkg to end, and
// fails t with the count if some are left.
func RequireNone(t testing.TB, pkg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for Count(pkg) > 0 {
		if time.Now().After(deadline) {
			left := stacks(pkg)
			t.Fatalf("%d goroutine(s) of %s left after Close:\n\n%s", len(left), pkg, strings.Join(left, "\n\n"))
		}
		time.Sleep(pollInterval) // polling a condition, with a deadline
	}
}
