package redisstream

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The entries of one flat reply share one array of fields: an append to
// one entry's Fields must not write over the next entry's, and dropping an
// entry's fields clears them (so the shared array keeps no data alive)
// without touching its neighbours'.
func TestParseArcEntriesKeepsEntriesApart(t *testing.T) {
	t.Parallel()
	entries, err := parseArcEntries([]any{"1-0", "a.b", `{"n":1}`, "2-0", "c.d", `{"n":2}`, "3-0", "e.f", `{"n":3}`})
	require.NoError(t, err)
	require.Len(t, entries, 3)
	for i, want := range [][]string{{"type", "a.b", "data", `{"n":1}`}, {"type", "c.d", "data", `{"n":2}`},
		{"type", "e.f", "data", `{"n":3}`}} {
		assert.Equal(t, want, entries[i].Fields)
	}
	first := entries[0].Fields
	entries[0].Fields = append(entries[0].Fields, "extra", "x")
	assert.Equal(t, []string{"type", "c.d", "data", `{"n":2}`}, entries[1].Fields, "an append to the first entry")
	entries[0].Fields = first

	entries[1].dropFields()
	assert.Nil(t, entries[1].Fields)
	assert.Equal(t, []string{"type", "a.b", "data", `{"n":1}`}, entries[0].Fields)
	assert.Equal(t, []string{"type", "e.f", "data", `{"n":3}`}, entries[2].Fields)

	_, err = parseArcEntries([]any{"1-0", "a.b", int64(3)})
	assert.ErrorIs(t, err, errBoundedReply)
}
