package redisstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// TestRedriveEntryMovesEachDeadLetterOnce races eight redrives of the same
// dead letters: every dead letter lands on the target exactly once, and the
// dead-letter stream is left empty.
func TestRedriveEntryMovesEachDeadLetterOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 50
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent("order.created", map[string]int{"i": i}, arc.Meta{})
		require.NoError(t, err)
		env, err := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: "boom"}}.MarshalArc()
		require.NoError(t, err)
		err = b.client.XAdd(ctx, deadLetterArgs(b.dlq, 0, ev.Type, b.stream, "1-1", "g", env, nil)).Err()
		require.NoError(t, err)
	}
	entries, err := RangeEntries(ctx, b.client, b.dlq, "-", "+", n)
	require.NoError(t, err)
	var moved atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range entries {
				dl, rerr := ReadDeadLetterEntry(e)
				fields, ok := RedriveFields(dl, rerr)
				if !ok {
					t.Errorf("entry %s: nothing to redrive", e.ID)
					return
				}
				did, err := RedriveEntry(ctx, b.client, b.dlq, e.ID, b.stream, 0, fields)
				if err != nil {
					t.Error(err)
					return
				}
				if did {
					moved.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, n, moved.Load())
	require.EqualValues(t, n, b.xlen(b.stream))
	require.EqualValues(t, 0, b.xlen(b.dlq))
}

// TestRedriveEntryRefusesOddFields refuses fields that are not name/value
// pairs, before touching Redis.
func TestRedriveEntryRefusesOddFields(t *testing.T) {
	t.Parallel()
	_, err := RedriveEntry(context.Background(), nil, "a", "1-1", "b", 0, []string{"type"})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// TestRedriveFieldsRefusesExcerpts never puts back a truncated entry.
func TestRedriveFieldsRefusesExcerpts(t *testing.T) {
	t.Parallel()
	_, ok := RedriveFields(DeadLetterEntry{RawFields: []string{"type", "x"}, Truncated: 10}, nil)
	require.False(t, ok)
	f, ok := RedriveFields(DeadLetterEntry{RawFields: []string{"type", "x"}}, nil)
	require.True(t, ok)
	require.Equal(t, []string{"type", "x"}, f)
}
