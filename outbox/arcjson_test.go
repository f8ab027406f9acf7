package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// arcJSONEvents returns Arc's golden events (arc/testdata: the wire JSON
// Arc's createEvent and JSON.stringify wrote) and events whose ids and
// meta strings are not text (lone surrogates, invalid UTF-8, NUL, a
// trailing space, the outbox's escape marker), each with its wire JSON,
// which for a golden is what Node wrote.
func arcJSONEvents(t *testing.T) (events []arc.Event, wires []string, golden int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "arc", "testdata", "events.golden.json"))
	require.NoError(t, err)
	var goldens []struct {
		Want string `json:"want"`
	}
	require.NoError(t, json.Unmarshal(b, &goldens))
	require.NotEmpty(t, goldens)
	for _, g := range goldens {
		wires = append(wires, g.Want)
	}
	golden = len(wires)
	for i, id := range []string{`\ud800`, `\udc00\ud800`, "\xff", "a\xffb", `a\u0000b`, "k ", `\ufffd%FF`,
		`x\ud800y`, `\ud83d\ude00`, "\u2028", `<&>`} {
		wires = append(wires, fmt.Sprintf(`{"type":"order.created","payload":{"n":%d,"s":"é\u2028"},"meta":{"id":"%s",`+
			`"timestamp":"2026-11-30T12:00:00.000Z","correlationId":"c%s","causationId":"p%s","partitionKey":"pk%s",`+
			`"userId":"u%s","x-%s":"v%s"}}`, i, id, id, id, id, id, id, id))
	}
	for _, w := range wires {
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(w), &ev), "%q", w)
		events = append(events, ev)
	}
	return events, wires, golden
}

// handOverSpy publishes through next and records, for each message,
// whether it came with usable Arc JSON (arc.AttachedJSON), before next
// sees it.
type handOverSpy struct {
	next    message.Publisher
	mu      sync.Mutex
	handed  map[string]bool
	publish func(topic string, msgs []*message.Message) error // replaces next.Publish when set
}

func (s *handOverSpy) Publish(topic string, msgs ...*message.Message) error {
	s.mu.Lock()
	for _, m := range msgs {
		_, ok := arc.AttachedJSON(m)
		s.handed[m.UUID] = ok
	}
	s.mu.Unlock()
	if s.publish != nil {
		return s.publish(topic, msgs)
	}
	return s.next.Publish(topic, msgs...)
}

func (s *handOverSpy) Close() error { return nil }

func (s *handOverSpy) handedOver(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handed[id]
}

func arcJSONRedis(t *testing.T) (*redis.Client, *redisstream.Publisher) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, SkipServerCheck: true})
	require.NoError(t, err)
	return client, pub
}

func arcJSONStream(t *testing.T, client *redis.Client) string {
	stream := "arcmill-test:arcjson:" + uuid.NewString()
	t.Cleanup(func() { client.Del(context.Background(), stream) })
	return stream
}

// streamFields returns the fields of every entry of stream, in order.
func streamFields(t *testing.T, client *redis.Client, stream string) [][]string {
	t.Helper()
	es, err := redisstream.RangeEntries(context.Background(), client, stream, "-", "+", 0)
	require.NoError(t, err)
	out := make([][]string, len(es))
	for i, e := range es {
		out[i] = e.Fields
	}
	return out
}

// encodedEntries publishes a fresh copy of each event's message (no Arc
// JSON attached: the publisher encodes it) and returns the entries.
func encodedEntries(t *testing.T, client *redis.Client, pub message.Publisher, events []arc.Event) [][]string {
	t.Helper()
	stream := arcJSONStream(t, client)
	for _, ev := range events {
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(stream, msg))
	}
	return streamFields(t, client, stream)
}

// drain relays until n rows are delivered.
func drain(t *testing.T, f *fixture, pub message.Publisher, n int) {
	t.Helper()
	relay, err := f.ob.NewRelay(pub, RelayConfig{})
	require.NoError(t, err)
	delivered := 0
	for delivered < n {
		res, err := relay.RelayBatch(context.Background())
		require.NoError(t, err)
		require.Positive(t, res.Relayed+res.Attempted, "nothing left to relay at %d of %d", delivered, n)
		delivered += res.Relayed
	}
}

// The writer stores each event's Arc JSON, and the relay hands it to the
// Redis publisher, which writes it as it is: the entries are, field for
// field and byte for byte, what the publisher writes when it encodes the
// events itself, and for Arc's goldens what Node's JSON.stringify wrote.
func TestRelay_PassesTheStoredArcJSONThrough(t *testing.T) {
	t.Parallel()
	events, wires, golden := arcJSONEvents(t)
	client, pub := arcJSONRedis(t)
	want := encodedEntries(t, client, pub, events)
	for i := range golden {
		require.Equal(t, wires[i], want[i][3], "the publisher's encode of golden %d is Node's", i)
	}
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		stream := arcJSONStream(t, client)
		var es []Entry
		for _, ev := range events {
			// Some goldens share an idempotency key: keep them all.
			es = append(es, Entry{Topic: stream, Event: ev, DedupeKey: uuid.NewString()})
		}
		f.commit(es...)
		var stored int
		require.NoError(t, f.db.QueryRow("SELECT COUNT(*) FROM "+f.ob.Table()+
			" WHERE arc_json IS NOT NULL AND arc_json_crc IS NOT NULL").Scan(&stored))
		assert.Equal(t, len(events), stored, "every event's Arc JSON is stored")

		spy := &handOverSpy{next: pub, handed: map[string]bool{}}
		drain(t, f, spy, len(events))
		for _, ev := range events {
			assert.True(t, spy.handedOver(ev.Meta.ID), "event %q is handed over with its Arc JSON", ev.Meta.ID)
		}
		assert.Equal(t, want, streamFields(t, client, stream))
	})
}

// The stored bytes are used only for the message they encode: a row whose
// metadata or payload was changed after the write, a message that the
// publisher's middleware changed before a retry, and a row without them
// are encoded afresh. A redriven row, unchanged, keeps them.
func TestRelay_NeverRelaysStaleArcJSON(t *testing.T) {
	t.Parallel()
	client, pub := arcJSONRedis(t)
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		stream := arcJSONStream(t, client)

		// 1. The metadata column changed by hand after the write.
		edited := f.event("order.created", arc.Meta{CorrelationID: "before"})
		f.commit(Entry{Topic: stream, Event: edited})
		var md []byte
		require.NoError(t, f.db.QueryRow(f.ob.q.bind("SELECT metadata FROM "+f.ob.Table()+" WHERE event_id = ?"),
			edited.Meta.ID).Scan(&md))
		m, err := decodeMetadata(md)
		require.NoError(t, err)
		require.Equal(t, "before", m[arc.MetadataCorrelationID])
		m[arc.MetadataCorrelationID] = "after"
		_, err = f.db.Exec(f.ob.q.bind("UPDATE "+f.ob.Table()+" SET metadata = ? WHERE event_id = ?"),
			string(appendMetadata(nil, m)), edited.Meta.ID)
		require.NoError(t, err)
		spy := &handOverSpy{next: pub, handed: map[string]bool{}}
		drain(t, f, spy, 1)
		assert.False(t, spy.handedOver(edited.Meta.ID), "the stale bytes are not handed over")
		edited.Meta.CorrelationID = "after"
		assert.Equal(t, encodedEntries(t, client, pub, []arc.Event{edited}), streamFields(t, client, stream))

		// 2. A publisher (middleware) that stamps metadata on the first
		// attempt of a batch and fails it: the one-by-one retry of the
		// same messages is encoded with the stamp.
		stream2 := arcJSONStream(t, client)
		a := f.event("order.created", arc.Meta{})
		b := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: stream2, Event: a}, Entry{Topic: stream2, Event: b})
		calls := 0
		stamp := &handOverSpy{handed: map[string]bool{}}
		stamp.publish = func(topic string, msgs []*message.Message) error {
			calls++
			for _, m := range msgs {
				m.Metadata.Set(arc.MetadataCorrelationID, "stamped")
			}
			if calls == 1 {
				return errors.New("first attempt refused")
			}
			return pub.Publish(topic, msgs...)
		}
		drain(t, f, stamp, 2)
		require.Greater(t, calls, 1)
		a.Meta.CorrelationID, b.Meta.CorrelationID = "stamped", "stamped"
		assert.Equal(t, encodedEntries(t, client, pub, []arc.Event{a, b}), streamFields(t, client, stream2))

		// 3. Dead-lettered, redriven, relayed: unchanged, so handed over.
		stream3 := arcJSONStream(t, client)
		dead := f.event("order.created", arc.Meta{CorrelationID: "c-dead"})
		f.commit(Entry{Topic: stream3, Event: dead})
		refuse := newRecorder()
		refuse.fail(dead.Meta.ID, errors.New("poison"))
		relay, err := f.ob.NewRelay(refuse, RelayConfig{MaxAttempts: 1})
		require.NoError(t, err)
		_, err = relay.RelayBatch(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, f.count(statusDead))
		n, err := f.ob.Redrive(ctx, RedriveOptions{Filter: Filter{EventIDs: []string{dead.Meta.ID}}})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		spy3 := &handOverSpy{next: pub, handed: map[string]bool{}}
		drain(t, f, spy3, 1)
		assert.True(t, spy3.handedOver(dead.Meta.ID), "a redriven row's metadata is unchanged: its bytes are good")
		assert.Equal(t, encodedEntries(t, client, pub, []arc.Event{dead}), streamFields(t, client, stream3))

		// 4. A Watermill message that is not an Arc event: no bytes are
		// stored, and any publisher gets it whole.
		plain := message.NewMessage(uuid.NewString(), []byte("not an event"))
		plain.Metadata.Set("k", "v")
		f.commit(Entry{Topic: "plain", Message: plain})
		var null int
		require.NoError(t, f.db.QueryRow(f.ob.q.bind("SELECT COUNT(*) FROM "+f.ob.Table()+
			" WHERE event_id = ? AND arc_json IS NULL AND arc_json_crc IS NULL"), plain.UUID).Scan(&null))
		assert.Equal(t, 1, null)
		rec := newRecorder()
		drain(t, f, rec, 1)
		require.Len(t, rec.got, 1)
		assert.Equal(t, plain.UUID, rec.got[0].msg.UUID)
		assert.Equal(t, plain.Payload, rec.got[0].msg.Payload)
		assert.Equal(t, "v", rec.got[0].msg.Metadata.Get("k"))
	})
}

// dropArcColumns makes table look like one of an arcmill before 2026-12.
func dropArcColumns(t *testing.T, f *fixture) {
	t.Helper()
	stmts := []string{"ALTER TABLE " + f.ob.Table() + " DROP COLUMN arc_json, DROP COLUMN arc_json_crc"}
	if f.d == SQLite {
		stmts = []string{"ALTER TABLE " + f.ob.Table() + " DROP COLUMN arc_json", "ALTER TABLE " + f.ob.Table() + " DROP COLUMN arc_json_crc"}
	}
	for _, s := range stmts {
		_, err := f.db.Exec(s)
		require.NoError(t, err, s)
	}
}

// On a table without the stored Arc JSON's columns (an older schema, not
// migrated yet) writer and relay work as before, the relay encoding each
// event; Migrate adds the columns (idempotently), after which new rows
// pass their bytes through and the rows written before (NULL) are encoded.
func TestRelay_WorksOnATableWithoutArcJSON(t *testing.T) {
	t.Parallel()
	client, pub := arcJSONRedis(t)
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		ctx := context.Background()
		dropArcColumns(t, f)
		// A new process on the old table: nothing known about it yet.
		ob, err := New(f.db, Config{Dialect: d, Table: f.ob.Table()})
		require.NoError(t, err)
		f.ob = ob
		stream := arcJSONStream(t, client)
		old := []arc.Event{f.event("order.created", arc.Meta{}), f.event("order.paid", arc.Meta{PartitionKey: "o-1"})}
		f.commit(Entry{Topic: stream, Event: old[0]}, Entry{Topic: stream, Event: old[1]})

		spy := &handOverSpy{next: pub, handed: map[string]bool{}}
		relay, err := ob.NewRelay(spy, RelayConfig{})
		require.NoError(t, err)
		stop := run(t, relay) // preflight accepts the old table
		require.Eventually(t, func() bool { return relay.Totals().Relayed == 2 }, waitTimeout, 5*time.Millisecond)
		stop()
		for _, ev := range old {
			assert.False(t, spy.handedOver(ev.Meta.ID))
		}
		assert.Equal(t, encodedEntries(t, client, pub, old), streamFields(t, client, stream))

		// Older rows, still pending when the table is migrated.
		stream2 := arcJSONStream(t, client)
		before := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: stream2, Event: before})
		require.NoError(t, ob.Migrate(ctx))
		cols := columns(t, f.db, d, ob.Table())
		require.NoError(t, ob.Migrate(ctx))
		assert.Equal(t, cols, columns(t, f.db, d, ob.Table()), "Migrate is idempotent")
		after := f.event("order.created", arc.Meta{})
		f.commit(Entry{Topic: stream2, Event: after})
		spy2 := &handOverSpy{next: pub, handed: map[string]bool{}}
		drain(t, f, spy2, 2)
		assert.False(t, spy2.handedOver(before.Meta.ID), "a row written before the migration has no bytes")
		assert.True(t, spy2.handedOver(after.Meta.ID), "a row written after it has")
		assert.Equal(t, encodedEntries(t, client, pub, []arc.Event{before, after}), streamFields(t, client, stream2))
	})
}

// The schema has the stored Arc JSON's columns, as bytes (arc.Marshal's
// output is not always valid UTF-8).
func TestSchema_HasTheArcJSONColumns(t *testing.T) {
	t.Parallel()
	for d, typ := range map[Dialect]string{PostgreSQL: "arc_json BYTEA", MySQL: "arc_json LONGBLOB", SQLite: "arc_json BLOB"} {
		ddl, err := Schema(Config{Dialect: d})
		require.NoError(t, err)
		assert.Contains(t, ddl, typ, d)
		assert.Contains(t, ddl, "arc_json_crc", d)
	}
}

// BenchmarkRelayRow is the relay's own CPU for one row of a typical event
// (benchEvent), from the scanned columns to the entry's fields, without
// the databases: "encode" is a row without stored Arc JSON (an older row,
// and every row before the pass-through), which the publisher's
// Marshaller encodes; "stored" checks the row's arc_json_crc, attaches the
// stored bytes and has the Marshaller take them.
func BenchmarkRelayRow(b *testing.B) {
	msg, err := arc.ToMessage(benchEvent(b, 1))
	require.NoError(b, err)
	r, err := rowFor(msg, 0, true)
	require.NoError(b, err)
	require.NotNil(b, r.arcJSON)
	stored := string(r.arcJSON)
	var m redisstream.Marshaller
	for _, withArc := range []bool{false, true} {
		name := map[bool]string{false: "encode", true: "stored"}[withArc]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				rw := &row{seq: 1, eventID: r.eventID, topic: "t", payload: msg.Payload, metadata: []byte(r.metadata)}
				if withArc && r.arcSum == arcSum(rw.eventID, rw.payload, rw.metadata) {
					rw.arcJSON = stored
				}
				rw.fromColumns()
				rw.decode()
				if _, err := m.Marshal("t", rw.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteRow is the writer's CPU for one typical event's row,
// without the database: the columns alone (a table without arc_json), and
// with the stored Arc JSON encoded and summed, which a business
// transaction now pays (its commit costs milliseconds: BenchmarkWriteCost).
func BenchmarkWriteRow(b *testing.B) {
	ev := benchEvent(b, 1)
	for _, withArc := range []bool{false, true} {
		name := map[bool]string{false: "columns", true: "columns+arc_json"}[withArc]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				msg, err := Entry{Topic: "t", Event: ev}.message()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rowFor(msg, 0, withArc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time per iteration (cpu-ns/op) from
// now to the call of the function it returns: on a machine shared with
// other work, ns/op counts the time the benchmark waited for a core too.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// With DisableArcJSON the writer stores no Arc JSON, and the relay encodes
// each event: the same entries.
func TestWrite_DisableArcJSON(t *testing.T) {
	t.Parallel()
	client, pub := arcJSONRedis(t)
	f := newFixture(t, PostgreSQL, false)
	ob, err := New(f.db, Config{Dialect: PostgreSQL, Table: f.ob.Table(), DisableArcJSON: true})
	require.NoError(t, err)
	f.ob = ob
	stream := arcJSONStream(t, client)
	ev := f.event("order.created", arc.Meta{CorrelationID: "c-1"})
	f.commit(Entry{Topic: stream, Event: ev})
	var null int
	require.NoError(t, f.db.QueryRow("SELECT COUNT(*) FROM "+ob.Table()+" WHERE arc_json IS NULL AND arc_json_crc IS NULL").Scan(&null))
	assert.Equal(t, 1, null)
	spy := &handOverSpy{next: pub, handed: map[string]bool{}}
	drain(t, f, spy, 1)
	assert.False(t, spy.handedOver(ev.Meta.ID))
	assert.Equal(t, encodedEntries(t, client, pub, []arc.Event{ev}), streamFields(t, client, stream))
}
