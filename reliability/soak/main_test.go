package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// TestSoakShort runs the soak with 20,000 events, so that the program keeps
// working; the million-event run is `go run ./reliability/soak`.
func TestSoakShort(t *testing.T) {
	var out bytes.Buffer
	res, err := run(context.Background(), &out, testenv.PostgresDSN(t), testenv.RedisAddr(t), 20_000, 200*time.Millisecond)
	require.NoError(t, err, out.String())
	assert.Zero(t, res.lost, out.String())
	assert.Equal(t, 20_000, res.handled)
	assert.LessOrEqual(t, res.after, res.goroutinesBefore+2, "no goroutine outlives Close:\n%s", res.leakedGoroutineStackHints)
	assert.Contains(t, out.String(), "| time | handled |")
	// The verdict the million-event run prints, asserted: nothing lost,
	// memory flat after warm-up, no goroutine left.
	require.GreaterOrEqual(t, len(res.samples), 8, "enough memory samples to judge:\n%s", out.String())
	assert.Empty(t, res.verdict(), out.String())
	assert.Contains(t, out.String(), "verdict: PASS")
}
