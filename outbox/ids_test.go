package outbox

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// hostileIDs are meta.id values (as they stand in wire JSON) that a text
// column or JSON cannot hold as they are: lone surrogates (WTF-8 bytes in
// Go), invalid UTF-8, NUL, trailing spaces (MariaDB's PAD SPACE collation
// ignores them), and the strings they could be mistaken for once escaped
// or replaced (U+FFFD, the escape's own marker and text).
var hostileIDs = []string{`\ud800`, `\udc00\ud800`, `\ud83d`, "\xff", "\xfe", "\xed\xa0", "a\xffb", `a\u0000b`,
	`\u0000`, "k ", "k", "k  ", `\ufffd`, `\ufffd\ufffd\ufffd`, `\ufffd%FF`, `\ufffdk%20`, `%FF`, `x\ud800y`,
	`\ud83d\ude00`, "plain"}

// hostileEvents returns one event per hostile id, read from wire JSON whose
// ids, partition key, user id and an unknown meta key all carry it, and
// that JSON as Marshal writes it.
func hostileEvents(t *testing.T, withIdempotencyKey bool) ([]arc.Event, []string) {
	t.Helper()
	var evs []arc.Event
	var wires []string
	for i, id := range hostileIDs {
		meta := `"id":"` + id + `","timestamp":"2026-11-30T12:00:00.000Z","correlationId":"c` + id +
			`","causationId":"p` + id + `","partitionKey":"pk` + id + `","userId":"u` + id + `","x-` + id + `":"v` + id + `"`
		if withIdempotencyKey {
			meta += `,"idempotencyKey":"k` + id + `"`
		}
		in := fmt.Sprintf(`{"type":"order.created","payload":{"n":%d},"meta":{%s}}`, i, meta)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(in), &ev), "%q", in)
		b, err := arc.Marshal(ev)
		require.NoError(t, err)
		evs = append(evs, ev)
		wires = append(wires, string(b))
	}
	return evs, wires
}

// Events whose ids (and other meta strings) are no valid UTF-8 text go
// through Write, the relay and Redis Streams with their bytes: each event
// read back from the stream marshals to the bytes written, on PostgreSQL,
// MariaDB and SQLite, and no two distinct ids become one (as a replacement
// character or MariaDB's trailing-space rule would make them).
func TestHostileIDsSurviveWriteRelayAndRedis(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		for _, withKey := range []bool{false, true} {
			evs, wires := hostileEvents(t, withKey)
			stream := fmt.Sprintf("arcmill:test:ids:%s:%t", f.ob.Table(), withKey)
			rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
			t.Cleanup(func() { rdb.Del(context.Background(), stream); _ = rdb.Close() })
			entries := make([]Entry, len(evs))
			for i, ev := range evs {
				entries[i] = Entry{Topic: stream, Event: ev}
			}
			f.commit(entries...)
			require.Equal(t, len(evs), f.count(0), "every event is a row: none deduplicated into another")

			// The stored rows, listed as an operator does, give each id back.
			pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb})
			require.NoError(t, err)
			relay, err := f.ob.NewRelay(pub, RelayConfig{})
			require.NoError(t, err)
			res, err := relay.RelayBatch(ctx)
			require.NoError(t, err)
			require.Equal(t, len(evs), res.Relayed, "%+v", res)

			xs, err := rdb.XRange(ctx, stream, "-", "+").Result()
			require.NoError(t, err)
			require.Len(t, xs, len(evs))
			for i, x := range xs {
				data, _ := x.Values[redisstream.FieldData].(string)
				var ev arc.Event
				require.NoError(t, arc.Unmarshal([]byte(data), &ev))
				b, err := arc.Marshal(ev)
				require.NoError(t, err)
				assert.Equal(t, wires[i], string(b), "id %q: the event read from Redis is the one written", hostileIDs[i])
				assert.Equal(t, evs[i].Meta.ID, ev.Meta.ID)
				assert.Equal(t, arc.DedupeKey(evs[i]), arc.DedupeKey(ev))
			}
			_, err = f.db.ExecContext(ctx, "DELETE FROM "+f.ob.Table())
			require.NoError(t, err)
		}
	})
}

// Dead letters of hostile ids list and redrive by their own ids, and only
// theirs: "k", "k " and "k  " are three rows, "\xff" is not "\ufffd".
func TestHostileIDsSelectTheirOwnRows(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		evs, _ := hostileEvents(t, false)
		entries := make([]Entry, len(evs))
		for i, ev := range evs {
			entries[i] = Entry{Topic: "t", Event: ev}
		}
		f.commit(entries...)
		_, err := f.db.ExecContext(ctx, "UPDATE "+f.ob.Table()+" SET status = 2")
		require.NoError(t, err)
		for _, ev := range evs {
			dead, err := f.ob.DeadLetters(ctx, Filter{EventIDs: []string{ev.Meta.ID}}, 0)
			require.NoError(t, err)
			require.Len(t, dead, 1, "%q", ev.Meta.ID)
			assert.Equal(t, ev.Meta.ID, dead[0].EventID)
			require.NotNil(t, dead[0].Message, "%q", ev.Meta.ID)
			assert.Equal(t, ev.Meta.ID, dead[0].Message.UUID)
			back, err := arc.FromMessage(dead[0].Message)
			require.NoError(t, err)
			assert.True(t, ev.Equal(back), "%q", ev.Meta.ID)
			n, err := f.ob.CountDeadLetters(ctx, Filter{EventIDs: []string{ev.Meta.ID}})
			require.NoError(t, err)
			assert.EqualValues(t, 1, n, "%q", ev.Meta.ID)
		}
		n, err := f.ob.Redrive(ctx, RedriveOptions{Filter: Filter{EventIDs: []string{"k"}}})
		require.NoError(t, err)
		assert.Equal(t, 1, n, `only "k", not "k " nor "k  "`)
	})
}

// Keys and values that are no valid UTF-8, and keys or values that look
// like the escape, come back from the metadata column as they went in.
func TestMetadataKeepsBytes(t *testing.T) {
	t.Parallel()
	md := map[string]string{"plain": "v", "bad": "\xff\xfe", "\xffkey": "v\x00", "": "", "looks-encoded": "eA==",
		"nul": "a\x00b", "surrogate": "\xed\xa0\x80", "quote": `"\`, "both\xed\xb0\x80": "\xc3"}
	b := appendMetadata(nil, md)
	assert.True(t, strings.HasPrefix(string(b), "{"))
	got, err := decodeMetadata(b)
	require.NoError(t, err)
	assert.Equal(t, md, map[string]string(got))
}
