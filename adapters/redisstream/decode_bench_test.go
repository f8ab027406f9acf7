package redisstream

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// benchEntry is one entry of BenchmarkConsumeLimit's events, as a read
// returns it.
func benchEntry(b testing.TB) Entry {
	pairs, err := Marshaller{}.fields(benchEventsT(b, 1)[0])
	require.NoError(b, err)
	f := make([]string, len(pairs))
	for i, p := range pairs {
		switch v := p.(type) {
		case string:
			f[i] = v
		case *string:
			f[i] = *v
		case []byte:
			f[i] = string(v)
		}
	}
	return Entry{ID: "1700000000000-0", Fields: f}
}

// BenchmarkDecodeArc is the read-ahead's work per entry (decodeAhead):
// the decode and the entry id's metadata key.
func BenchmarkDecodeArc(b *testing.B) {
	e := benchEntry(b)
	u := any(Marshaller{})
	b.ReportAllocs()
	for b.Loop() {
		msg, _, ok := decodeArc(u, e)
		if !ok {
			b.Fatal("not decoded")
		}
		msg.Metadata.Set(MetadataEntryID, e.ID)
	}
}
