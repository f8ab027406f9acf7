package arcmilltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	_ "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// shortTimeout is the timeout of helpers expected to fail. Not shorter:
// a message already in the channel must be read before it runs out,
// which a loaded machine's scheduling can delay by tens of milliseconds
// (both ready, select picks at random and the failure saw nothing).
const shortTimeout = 500 * time.Millisecond

// recordingT is a T that records a failure instead of stopping the test,
// so the helpers' failures can be checked.
type recordingT struct {
	mu     sync.Mutex
	failed []string
}

func (r *recordingT) Helper() {}
func (r *recordingT) Fatalf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recordingT) failure() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.failed, "\n")
}

// Event builds valid events; Deterministic numbers them per test value
// and fixes the time; WithID, WithTimestamp and WithMeta win over it.
func TestEventIsValidAndOptionallyDeterministic(t *testing.T) {
	t.Parallel()
	ev := Event(t, "order.created", map[string]int{"n": 1})
	assert.NotEmpty(t, ev.Meta.ID)
	assert.False(t, ev.Meta.Timestamp.IsZero())
	assert.JSONEq(t, `{"n":1}`, string(ev.Payload))

	first := Event(t, "a.b", nil, Deterministic())
	second := Event(t, "a.b", nil, Deterministic())
	assert.Equal(t, "evt-1", first.Meta.ID)
	assert.Equal(t, "evt-2", second.Meta.ID)
	assert.True(t, FixedTime.Equal(first.Meta.Timestamp))
	other := &recordingT{}
	assert.Equal(t, "evt-1", Event(other, "a.b", nil, Deterministic()).Meta.ID, "numbered per test value")

	at := time.Date(2025, 5, 5, 5, 5, 5, 0, time.UTC)
	ev = Event(t, "a.b", nil, Deterministic(), WithID("mine"), WithTimestamp(at))
	assert.Equal(t, "mine", ev.Meta.ID)
	assert.True(t, at.Equal(ev.Meta.Timestamp))
	ev = Event(t, "a.b", nil, WithID("kept"), WithMeta(arc.Meta{UserID: "u-1"}))
	assert.Equal(t, "kept", ev.Meta.ID, "WithMeta keeps an id it does not set")
	assert.Equal(t, "u-1", ev.Meta.UserID)

	bad := &recordingT{}
	Event(bad, "", nil)
	assert.Contains(t, bad.failure(), "arcmilltest: event")
}

// RequirePublished returns the first event of the type, acknowledging
// every message it reads, and fails on a timeout or a closed channel,
// saying what it saw.
func TestRequirePublishedReadsUntilTheType(t *testing.T) {
	t.Parallel()
	msgs := make(chan *message.Message, 4)
	user := Message(t, Event(t, "user.created", nil))
	foreign := message.NewMessage("m-1", []byte("x"))
	order := Event(t, "order.created", nil)
	msgs <- user
	msgs <- foreign
	msgs <- Message(t, order)
	got := RequirePublished(t, msgs, "order.created")
	assert.True(t, order.Equal(got))
	for _, m := range []*message.Message{user, foreign} {
		select {
		case <-m.Acked():
		default:
			t.Errorf("message %s not acknowledged", m.UUID)
		}
	}

	rt := &recordingT{}
	msgs <- Message(t, Event(t, "user.deleted", nil))
	RequirePublished(rt, msgs, "order.created", WithTimeout(shortTimeout))
	assert.Contains(t, rt.failure(), `no event "order.created" within`)
	assert.Contains(t, rt.failure(), `"user.deleted"`)

	closed := make(chan *message.Message)
	close(closed)
	rt = &recordingT{}
	RequirePublished(rt, closed, "order.created")
	assert.Contains(t, rt.failure(), "subscription closed")
}

// RequirePublished works on a real subscription.
func TestRequirePublishedOnGoChannel(t *testing.T) {
	t.Parallel()
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { assert.NoError(t, pubSub.Close()) })
	msgs, err := pubSub.Subscribe(context.Background(), "events")
	require.NoError(t, err)
	sent := Event(t, "order.created", nil)
	go func() { assert.NoError(t, pubSub.Publish("events", Message(t, sent))) }() // GoChannel blocks until acked
	assert.Equal(t, sent.Meta.ID, RequirePublished(t, msgs, "order.created").Meta.ID)
}

// The recorder keeps copies in order, per topic; RequirePublished waits
// for a publish that comes later; FailWith and Close make Publish fail
// and record nothing.
func TestRecordingPublisherRecordsAndWaits(t *testing.T) {
	t.Parallel()
	p := NewRecordingPublisher()
	a, b := Event(t, "order.created", nil), Event(t, "order.paid", nil)
	require.NoError(t, p.Publish("orders", Message(t, a)))
	require.NoError(t, p.Publish("audit", Message(t, b), message.NewMessage("raw", nil)))
	assert.Len(t, p.Messages(), 3)
	assert.Equal(t, []string{a.Meta.ID}, ids(p.Events("orders")))
	assert.Equal(t, []string{a.Meta.ID, b.Meta.ID}, ids(p.Events("")), "non-events skipped")

	later := Event(t, "order.shipped", nil)
	go func() { assert.NoError(t, p.Publish("orders", Message(t, later))) }()
	assert.Equal(t, later.Meta.ID, p.RequirePublished(t, "order.shipped", OnTopic("orders")).Meta.ID)

	rt := &recordingT{}
	p.RequirePublished(rt, "order.paid", OnTopic("orders"), WithTimeout(shortTimeout))
	assert.Contains(t, rt.failure(), `no event "order.paid" published to "orders"`)

	down := errors.New("broker down")
	p.FailWith(down)
	assert.ErrorIs(t, p.Publish("orders", Message(t, a)), down)
	p.FailWith(nil)
	require.NoError(t, p.Close())
	assert.Error(t, p.Publish("orders", Message(t, a)))
	assert.Len(t, p.Messages(), 4, "failed publishes recorded nothing")
}

func ids(evs []arc.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Meta.ID)
	}
	return out
}

// RequireOutboxed sees a pending row inside the writing transaction, on
// every dialect (each has its own placeholder), returns the oldest of the
// type, and fails when there is none; relayed rows are not pending.
func TestRequireOutboxedOnEveryDialect(t *testing.T) {
	t.Parallel()
	for _, d := range []struct {
		name    string
		dialect outbox.Dialect
		driver  string
		dsn     func(t *testing.T) string
	}{
		{"sqlite", outbox.SQLite, "sqlite", func(t *testing.T) string {
			return "file:" + filepath.Join(t.TempDir(), "o.db") + "?_pragma=busy_timeout(5000)"
		}},
		{"postgres", outbox.PostgreSQL, "pgx", func(t *testing.T) string { return testenv.PostgresDSN(t) }},
		{"mysql", outbox.MySQL, "mysql", func(t *testing.T) string { return testenv.MySQLDSN(t) }},
	} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := sql.Open(d.driver, d.dsn(t))
			require.NoError(t, err)
			table := "arcmilltest_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			ob, err := outbox.New(db, outbox.Config{Dialect: d.dialect, Table: table})
			require.NoError(t, err)
			require.NoError(t, ob.Migrate(ctx))
			t.Cleanup(func() {
				for _, tbl := range []string{table, table + "_lock"} {
					_, err := db.Exec("DROP TABLE IF EXISTS " + tbl)
					assert.NoError(t, err)
				}
				if d.dialect == outbox.PostgreSQL {
					_, err := db.Exec("DROP FUNCTION IF EXISTS " + table + "_notify()")
					assert.NoError(t, err)
				}
				assert.NoError(t, db.Close())
			})

			tx, err := db.BeginTx(ctx, nil)
			require.NoError(t, err)
			// Run before the table is dropped (cleanups run last first): a
			// failure must end the transaction, or the DROP waits on its locks.
			t.Cleanup(func() { _ = tx.Rollback() })
			first := Event(t, "order.created", map[string]int{"n": 1})
			second := Event(t, "order.created", map[string]int{"n": 2})
			other := Event(t, "user.created", nil)
			require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "orders", Event: first},
				outbox.Entry{Topic: "orders", Event: second}, outbox.Entry{Topic: "users", Event: other}))
			got := RequireOutboxed(t, ctx, tx, ob, "order.created")
			assert.Equal(t, "orders", got.Topic)
			assert.True(t, first.Equal(got.Event), "the oldest, whole")
			all, err := Outboxed(ctx, tx, ob, "")
			require.NoError(t, err)
			assert.Len(t, all, 3)

			// Ids and a type the table stores escaped read back as written.
			odd, err := arc.NewEvent("odd.type ", map[string]int{"n": 3}, arc.Meta{ID: "o\xff1", CorrelationID: "c\x00\xfe"})
			require.NoError(t, err)
			require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "odd", Event: odd}))
			gotOdd := RequireOutboxed(t, ctx, tx, ob, "odd.type ")
			assert.True(t, odd.Equal(gotOdd.Event), "bytes the table escapes come back as written")

			rt := &recordingT{}
			RequireOutboxed(rt, ctx, tx, ob, "order.shipped")
			assert.Contains(t, rt.failure(), `no pending event "order.shipped"`)
			require.NoError(t, tx.Commit())

			relay, err := ob.NewRelay(NewRecordingPublisher(), outbox.RelayConfig{})
			require.NoError(t, err)
			_, err = relay.RelayBatch(ctx)
			require.NoError(t, err)
			rest, err := Outboxed(ctx, db, ob, "")
			require.NoError(t, err)
			assert.Empty(t, rest, "relayed rows are no longer pending")
		})
	}
}
