package console

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
)

// largeGroup is the failure group size the issue asks the console to
// redrive at the configured rate.
const largeGroup = 10_000

// largeRate is the configured rate of that redrive (dead letters a
// second): high enough to keep the test short.
const largeRate = 2500

// TestRedriveLargeGroupAtRate redrives a 10,000-letter failure group while
// a second redrive of the same group races it: progress only grows and ends
// at the total, every event is back on its stream exactly once, and none
// is left dead-lettered. It logs the rate reached against the configured
// one (timings are logged, not asserted).
func TestRedriveLargeGroupAtRate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.deadLetters("order.created", largeGroup, func(i int) string { return fmt.Sprintf("order %d not found", i) })
	cfg := b.config()
	cfg.RedriveRate = largeRate
	cl := bearer(t, b.serve(b.console(cfg)), opToken)
	var gr GroupsResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups", &gr))
	require.Len(t, gr.Groups, 1)
	require.Equal(t, largeGroup, gr.Groups[0].Count)

	sel := Selection{Filter: Filter{Cause: gr.Groups[0].Cause}}
	var first, second Task
	status, body := cl.postJSON("/api/redrive", sel, &first)
	require.Equal(t, http.StatusAccepted, status, string(body))
	status, body = cl.postJSON("/api/redrive", sel, &second)
	require.Equal(t, http.StatusAccepted, status, string(body))

	// Progress, as the page polls it, only grows and never passes the total.
	var last int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		var tk Task
		require.Equal(t, http.StatusOK, cl.getJSON("/api/tasks/"+first.ID, &tk))
		require.GreaterOrEqual(t, tk.Moved+tk.Skipped, last)
		require.LessOrEqual(t, tk.Moved+tk.Skipped, tk.Total)
		last = tk.Moved + tk.Skipped
		if tk.State != TaskRunning {
			break
		}
		require.True(t, time.Now().Before(deadline), "still running: %+v", tk)
		time.Sleep(50 * time.Millisecond) // polling a real condition, with a deadline
	}
	a, c := cl.waitTask(first.ID), cl.waitTask(second.ID)
	require.Equal(t, TaskDone, a.State, a.Error)
	require.Equal(t, TaskDone, c.State, c.Error)
	assert.EqualValues(t, largeGroup, a.Total)
	assert.EqualValues(t, largeGroup, a.Moved+a.Skipped)
	assert.EqualValues(t, largeGroup, a.Moved+c.Moved, "each letter moved by exactly one task")

	ctx := context.Background()
	require.EqualValues(t, 0, b.rdb.XLen(ctx, b.dlq).Val())
	seen := map[string]int{}
	start := "-"
	for {
		page, err := redisstream.RangeEntries(ctx, b.rdb, b.stream, start, "+", 1000)
		require.NoError(t, err)
		for _, e := range page {
			ev, err := redisstream.Marshaller{}.Unmarshal(e.Map())
			require.NoError(t, err)
			seen[ev.UUID]++
		}
		if len(page) < 1000 {
			break
		}
		start = "(" + page[len(page)-1].ID
	}
	require.Len(t, seen, largeGroup)
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "event %s", id)
	}
	took := a.Finished.Sub(a.Started)
	t.Logf("redrove %d letters (two racing tasks: %d + %d) in %v: %.0f/s against a configured %d/s per task",
		largeGroup, a.Moved, c.Moved, took.Round(time.Millisecond), float64(a.Moved+a.Skipped)/took.Seconds(), largeRate)
}
