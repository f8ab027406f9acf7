package middleware

import (
	"context"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// Positions sort parked events in source order: stream ids by time then
// sequence (not as strings: "10-0" after "9-0"), bare sequence numbers
// likewise; no id sorts by arrival, after them.
func TestParkedPositionSortsInSourceOrder(t *testing.T) {
	pos := func(id string) string {
		m := message.NewMessage("u", nil)
		if id != "" {
			m.Metadata.Set(MetadataOriginalID, id)
		}
		return parkedPosition(m)
	}
	ids := []string{"9-0", "9-1", "10-0", "1700000000000-2", "1700000000000-10"}
	var got []string
	for _, id := range ids {
		got = append(got, pos(id))
	}
	assert.True(t, slices.IsSorted(got), "%q", got)
	assert.Less(t, pos("7"), pos("12"))
	assert.Equal(t, "", pos(""))
	assert.Equal(t, "", pos("not-an-id"))
}

// Group and handler names that hold the hash tag's characters keep every
// key of a handler in one tag, and read back as they were.
func TestSequenceKeysOfOddNames(t *testing.T) {
	client, prefix := seqRedis(t, "seqnames")
	group, handler := "g}{|%7D", "h|x}"
	st := newSequenceStore(client, prefix, group, handler)
	for _, k := range st.keys("key}:index") {
		assert.Equal(t, st.base, k[:len(st.base)])
	}
	ctx := context.Background()
	ok, err := st.park(ctx, "key}:index", "e1", []byte(`{"eventId":"e1"}`), parseMillis("1700000000000"))
	require.NoError(t, err)
	require.True(t, ok)
	seqs, err := SequenceAdmin{Client: client, Prefix: prefix}.List(ctx, ParkedFilter{})
	require.NoError(t, err)
	require.Len(t, seqs, 1)
	assert.Equal(t, group, seqs[0].Group)
	assert.Equal(t, handler, seqs[0].Handler)
	assert.Equal(t, "key}:index", seqs[0].Key)
	assert.Equal(t, "e1", seqs[0].Head.EventID)
}

// seqRedis is a client of the test Redis and a key prefix of t's own; the
// prefix's keys are deleted, and the client closed, when t ends.
func seqRedis(t *testing.T, name string) (*redis.Client, string) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	prefix := "arcmill-test:" + name + ":" + uuid.NewString() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, _ := client.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			client.Del(ctx, keys...)
		}
		_ = client.Close()
	})
	return client, prefix
}
