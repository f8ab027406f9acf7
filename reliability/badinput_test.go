package reliability

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/adapters/redispubsub"
	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/registry"
	"github.com/arcmill/arcmill/wildcard"
)

// TestBadInputAtEveryEntryPoint: bad configuration and bad input get a
// clear error (wrapping the package's sentinel where it has one) at every
// public entry point, never a panic and never a silent success.
func TestBadInputAtEveryEntryPoint(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-badinput:" + uuid.NewString()
	defer client.Del(ctx, stream)
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "o.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	bigEvent, err := arc.NewEvent("order.created", map[string]string{"blob": strings.Repeat("a", 2_000_000)}, arc.Meta{})
	require.NoError(t, err)
	bigMsg, err := arc.ToMessage(bigEvent)
	require.NoError(t, err)

	cases := []struct {
		name string
		call func() error
		is   error // the sentinel the error must wrap; nil: any error
	}{
		{"arc: empty type", func() error { _, err := arc.NewEvent("", nil, arc.Meta{}); return err }, arc.ErrInvalidEvent},
		{"arc: oversized type", func() error {
			_, err := arc.NewEvent(strings.Repeat("t", arc.MaxTypeLength+1), nil, arc.Meta{})
			return err
		}, arc.ErrInvalidEvent},
		{"arc: reserved type", func() error { _, err := arc.NewEvent("$x", nil, arc.Meta{}); return err }, arc.ErrInvalidEvent},
		{"arc: payload that is not JSON", func() error {
			_, err := arc.NewEvent("a.b", json.RawMessage(`{bad`), arc.Meta{})
			return err
		}, nil},
		{"arc: foreign bytes", func() error { var e arc.Event; return arc.Unmarshal([]byte("\x00\x01"), &e) }, arc.ErrMalformedEvent},
		{"arc: message without a type", func() error { _, err := arc.FromMessage(message.NewMessage("x", nil)); return err }, arc.ErrMalformedEvent},
		{"wildcard: empty pattern", func() error { _, err := wildcard.Parse(""); return err }, wildcard.ErrInvalidPattern},
		{"wildcard: '>' not last", func() error { _, err := wildcard.ParseMode("a.>.b", wildcard.SegmentMode); return err }, wildcard.ErrInvalidPattern},
		{"wildcard: '*' inside a token", func() error { _, err := wildcard.ParseMode("a.b*", wildcard.SegmentMode); return err }, wildcard.ErrInvalidPattern},
		{"wildcard: nil router", func() error { _, err := wildcard.NewRouter(nil, wildcard.Config{}); return err }, wildcard.ErrInvalidConfig},
		{"wildcard: negative workers", func() error { return wildcard.Config{Workers: -1}.Validate() }, wildcard.ErrInvalidConfig},
		{"middleware: stack without a dead-letter publisher", func() error {
			_, err := middleware.NewStack(middleware.StackConfig{})
			return err
		}, middleware.ErrInvalidConfig},
		{"middleware: dead letter without a topic", func() error {
			_, err := middleware.NewDeadLetter(middleware.DeadLetterConfig{Publisher: gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})})
			return err
		}, middleware.ErrInvalidConfig},
		{"middleware: retries below NoRetries", func() error {
			_, err := middleware.NewRetry(middleware.RetryConfig{MaxRetries: -2})
			return err
		}, middleware.ErrInvalidConfig},
		{"registry: invalid schema", func() error {
			return registry.New(registry.Config{}).Register(registry.Definition{Name: "a.b", Schema: json.RawMessage(`{"type":12}`)})
		}, registry.ErrInvalidSchema},
		{"registry: duplicate definition", func() error {
			r := registry.New(registry.Config{})
			r.MustRegister(registry.Definition{Name: "a.b"})
			return r.Register(registry.Definition{Name: "a.b"})
		}, registry.ErrDuplicate},
		{"registry: payload against its schema", func() error {
			r := registry.New(registry.Config{})
			r.MustRegister(registry.Definition{Name: "a.b", Schema: json.RawMessage(`{"type":"object","required":["id"]}`)})
			return r.Validate("a.b", json.RawMessage(`{}`), 0)
		}, registry.ErrValidation},
		{"registry: unknown schema version (RejectUnknownVersions)", func() error {
			r := registry.New(registry.Config{RejectUnknownVersions: true})
			r.MustRegister(registry.Definition{Name: "a.b", Schema: json.RawMessage(`{"type":"object"}`)})
			return r.Validate("a.b", json.RawMessage(`{}`), 7)
		}, registry.ErrUnknownVersion},
		{"redisstream: publisher without a client", func() error { _, err := redisstream.NewPublisher(redisstream.PublisherConfig{}); return err }, redisstream.ErrInvalidConfig},
		{"redisstream: payload over the size limit", func() error {
			p, _ := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
			return p.Publish(stream, msg, bigMsg)
		}, redisstream.ErrPayloadTooLarge},
		{"redisstream: closed publisher", func() error {
			p, _ := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
			_ = p.Close()
			return p.Publish(stream, msg)
		}, redisstream.ErrClosed},
		{"redisstream: subscriber without a group", func() error {
			_, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client})
			return err
		}, redisstream.ErrInvalidConfig},
		{"redisstream: claim interval longer than claim idle", func() error {
			_, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: client, ConsumerGroup: "g",
				ClaimIdle: time.Second, ClaimInterval: time.Minute})
			return err
		}, redisstream.ErrInvalidConfig},
		{"redispubsub: closed", func() error {
			ps, err := redispubsub.New(redispubsub.Config{Client: client})
			if err != nil {
				return fmt.Errorf("unexpected: %w", err) // fails the row: not ErrClosed
			}
			if err := ps.Close(); err != nil {
				return fmt.Errorf("unexpected: %w", err)
			}
			return ps.Publish("arc-events", msg)
		}, redispubsub.ErrClosed},
		{"redispubsub: no client", func() error { _, err := redispubsub.New(redispubsub.Config{}); return err }, redispubsub.ErrInvalidConfig},
		{"natsjs: publisher without a connection", func() error {
			_, err := natsjs.NewPublisher(natsjs.PublisherConfig{})
			return err
		}, natsjs.ErrInvalidConfig},
		{"natsjs: subscriber without a group", func() error {
			_, err := natsjs.NewSubscriber(natsjs.SubscriberConfig{})
			return err
		}, natsjs.ErrInvalidConfig},
		{"outbox: bad table name", func() error { _, err := outbox.New(db, outbox.Config{Table: "x; drop"}); return err }, outbox.ErrInvalidConfig},
		{"outbox: entry without a topic", func() error {
			tx, _ := db.BeginTx(ctx, nil)
			defer tx.Rollback()
			return ob.Write(ctx, tx, outbox.Entry{Event: ev})
		}, outbox.ErrInvalidEntry},
		{"outbox: write under a cancelled context", func() error {
			tx, _ := db.BeginTx(ctx, nil)
			defer tx.Rollback()
			return ob.Write(cancelled, tx, outbox.Entry{Topic: "t", Event: ev})
		}, context.Canceled},
		{"outbox: relay pass under a cancelled context", func() error {
			r, _ := ob.NewRelay(gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), outbox.RelayConfig{})
			_, err := r.RelayBatch(cancelled)
			return err
		}, context.Canceled},
		{"outbox: redrive under a cancelled context", func() error {
			_, err := ob.Redrive(cancelled, outbox.RedriveOptions{})
			return err
		}, context.Canceled},
		{"outbox: lock mode on SQLite", func() error {
			_, err := ob.NewRelay(gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), outbox.RelayConfig{Claim: outbox.ClaimLock})
			return err
		}, outbox.ErrInvalidConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = c.call() })
			require.Error(t, err)
			assert.NotEmpty(t, err.Error())
			if c.is != nil {
				assert.True(t, errors.Is(err, c.is), "%v does not wrap %v", err, c.is)
			}
		})
	}
	assert.Zero(t, client.XLen(ctx, stream).Val(), "an oversized event refuses its whole Publish call")
	st, err := ob.Status(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Pending+st.Delivered, "nothing stored by the refused writes")
}

// An event over the broker's size limit is dead-lettered by the relay at
// once (arc.ErrUnrecoverable), not retried five times; the rest go out.
func TestOversizedEventDeadLetteredByRelay(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-oversize:" + uuid.NewString()
	defer client.Del(ctx, stream)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "o.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	big, err := arc.NewEvent("order.created", map[string]string{"blob": strings.Repeat("a", 1_100_000)}, arc.Meta{})
	require.NoError(t, err)
	small, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: stream, Event: big}, outbox.Entry{Topic: stream, Event: small}))
	require.NoError(t, tx.Commit())
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(t, err)
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Relayed)
	assert.Equal(t, 1, res.DeadLettered, "dead at the first attempt")
	dead, err := ob.DeadLetters(ctx, outbox.Filter{}, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, big.Meta.ID, dead[0].EventID)
	assert.Contains(t, dead[0].Error, "MaxPayloadBytes")
	assert.EqualValues(t, 1, client.XLen(ctx, stream).Val())
}
