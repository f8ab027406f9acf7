package metrics

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

func TestHandlerRetryDeadLetterAndRouterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{})
	require.NoError(t, err)
	logger := watermill.NopLogger{}
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, logger)
	defer bus.Close()
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond, OnRetry: m.OnRetry},
		DeadLetter: middleware.DeadLetterConfig{Publisher: bus, Topic: "dlq", OnDeadLetter: m.OnDeadLetter},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, logger)
	require.NoError(t, err)
	m.AddWatermillRouterMetrics(router)
	events, err := wildcard.NewRouter(router, wildcard.Config{})
	require.NoError(t, err)
	require.NoError(t, m.WatchRouter("main", events))
	done := make(chan struct{}, 8)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: bus, Topic: "arc:events",
		Patterns: []string{"order.*"}, Middleware: append(stack.Middleware, m.Middleware)},
		func(_ context.Context, ev arc.Event) error {
			defer func() { done <- struct{}{} }()
			if ev.Type == "order.failed" {
				return errors.New("card declined")
			}
			return nil
		})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
	for _, typ := range []string{"order.created", "order.failed", "user.signed_up"} {
		ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, bus.Publish("arc:events", msg))
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.dead.WithLabelValues("billing", "order.*", middleware.ReasonRetryExhausted)) == 1 &&
			events.Stats().Unmatched == 1
	}, 5*time.Second, 5*time.Millisecond)

	assert.Equal(t, 1.0, testutil.ToFloat64(m.handled.WithLabelValues("billing", "order.*", "ok")))
	assert.Equal(t, 3.0, testutil.ToFloat64(m.handled.WithLabelValues("billing", "order.*", "error")), "three attempts")
	assert.Equal(t, 2.0, testutil.ToFloat64(m.retried.WithLabelValues("billing", "order.*")))
	names := gathered(t, reg)
	assert.Contains(t, names, `arcmill_router_events_total{outcome="unmatched",router="main"} 1`)
	assert.Contains(t, names, "arcmill_watermill_", "Watermill's own router metrics, same registry")
}

func TestOutboxAndStreamMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{Namespace: "shop"})
	require.NoError(t, err)
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "o.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	require.NoError(t, m.WatchOutbox(ob))
	for i := 0; i < 3; i++ {
		ev, err := arc.NewEvent("order.created", map[string]int{"n": i}, arc.Meta{})
		require.NoError(t, err)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "t", Event: ev}))
		require.NoError(t, tx.Commit())
	}
	// The oldest pending row's age grows from 0 as the clock moves on.
	var out string
	require.Eventually(t, func() bool {
		out = gathered(t, reg)
		return !strings.Contains(out, `shop_outbox_oldest_pending_seconds{table="arcmill_outbox"} 0`+"\n")
	}, waitTimeout, pollInterval, "the lag grows")
	assert.Contains(t, out, `shop_outbox_rows{state="pending",table="arcmill_outbox"} 3`)
	assert.Contains(t, out, `shop_outbox_status_up{table="arcmill_outbox"} 1`)

	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer bus.Close()
	relay, err := ob.NewRelay(bus, outbox.RelayConfig{OnPass: m.OnRelayPass})
	require.NoError(t, err)
	_, err = relay.RelayBatch(ctx)
	require.NoError(t, err)
	out = gathered(t, reg)
	assert.Contains(t, out, `shop_outbox_relay_rows_total{outcome="relayed"} 3`)
	assert.Contains(t, out, `shop_outbox_rows{state="delivered",table="arcmill_outbox"} 3`)
	assert.Contains(t, out, `shop_outbox_oldest_pending_seconds{table="arcmill_outbox"} 0`)

	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	stream := "arcmill-metrics:" + uuid.NewString()
	defer client.Del(ctx, stream)
	require.NoError(t, client.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
	for i := 0; i < 5; i++ {
		client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"type", "x", "data", "{}"}})
	}
	client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 2})
	require.NoError(t, m.WatchStream(client, stream, "g"))
	out = gathered(t, reg)
	assert.Contains(t, out, `shop_consumer_pending{group="g",stream="`+stream+`"} 2`)
	assert.Contains(t, out, `shop_consumer_lag{group="g",stream="`+stream+`"} 3`)
}

// gathered renders the registry as Prometheus' text format.
func gathered(t *testing.T, reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			b.WriteString(mf.GetName() + "{" + strings.Join(labels, ",") + "} " + strconv.FormatFloat(v, 'f', -1, 64) + "\n")
		}
	}
	return b.String()
}

const (
	// waitTimeout bounds every wait for something that should happen, with
	// seconds to spare on a loaded machine: a wait ends at the event.
	waitTimeout = 30 * time.Second
	// pollInterval is how often a condition is checked.
	pollInterval = 5 * time.Millisecond
)

// Every refused argument wraps ErrInvalidConfig; zero values take the
// Default* constants.
func TestConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	_, err := New(nil, Config{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(prometheus.NewRegistry(), Config{ScrapeTimeout: -time.Second})
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "ScrapeTimeout")
	require.NoError(t, Config{}.Validate())
	m, err := New(prometheus.NewRegistry(), Config{})
	require.NoError(t, err)
	assert.Equal(t, DefaultNamespace, m.cfg.Namespace)
	assert.Equal(t, DefaultScrapeTimeout, m.cfg.ScrapeTimeout)
}

// Where Middleware sits decides what events_handled_total counts: outside
// the recovery stack, deliveries (a retried then dead-lettered event is one
// settled delivery); inside, attempts. Handler measures a handler added with
// Subscribe. A malformed message is counted under its source topic, never
// the router's internal handler name.
func TestHandledCountsAndMalformedLabels(t *testing.T) {
	t.Parallel()
	reg, m, bus := newBench(t)
	logger := watermill.NopLogger{}
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry:      middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond, OnRetry: m.OnRetry},
		DeadLetter: middleware.DeadLetterConfig{Publisher: bus, Topic: "dlq", OnDeadLetter: m.OnDeadLetter},
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{OnMalformed: stack.DeadLetter.Malformed})
	require.NoError(t, err)
	failing := func(context.Context, arc.Event) error { return errors.New("card declined") }
	for name, mws := range map[string][]message.HandlerMiddleware{
		"outer": append([]message.HandlerMiddleware{m.Middleware}, stack.Middleware...),
		"inner": append(append([]message.HandlerMiddleware{}, stack.Middleware...), m.Middleware),
	} {
		_, err = events.Handle(wildcard.HandlerConfig{Name: name, Subscriber: bus, Topic: "arc:events",
			Patterns: []string{"order.*"}, Middleware: mws}, failing)
		require.NoError(t, err)
	}
	subscribed := make(chan struct{}, 1)
	_, err = events.Subscribe(bus, "arc:events", "user.*", m.Handler(func(context.Context, arc.Event) error {
		subscribed <- struct{}{}
		return nil
	}))
	require.NoError(t, err)
	run(t, events, router)
	for _, typ := range []string{"order.failed", "user.signed_up"} {
		publish(t, bus, typ)
	}
	require.NoError(t, bus.Publish("arc:events", message.NewMessage(uuid.NewString(), []byte("not an event"))))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.dead.WithLabelValues("inner", "order.*", middleware.ReasonRetryExhausted)) == 1 &&
			testutil.ToFloat64(m.dead.WithLabelValues("outer", "order.*", middleware.ReasonRetryExhausted)) == 1 &&
			testutil.ToFloat64(m.bad.WithLabelValues("arc:events")) == 1 && len(subscribed) == 1
	}, waitTimeout, pollInterval)

	assert.Equal(t, 1.0, testutil.ToFloat64(m.handled.WithLabelValues("outer", "order.*", "ok")),
		"outside the stack: one settled delivery")
	assert.Equal(t, 0.0, testutil.ToFloat64(m.handled.WithLabelValues("outer", "order.*", "error")))
	assert.Equal(t, 3.0, testutil.ToFloat64(m.handled.WithLabelValues("inner", "order.*", "error")),
		"inside the stack: three attempts")
	out := gathered(t, reg)
	assert.Regexp(t, `arcmill_events_handled_total\{handler="user\.\*#\d+",pattern="user\.\*",result="ok"\} 1`, out,
		"a handler added with Subscribe is measured")
	assert.Contains(t, out, `arcmill_events_dead_lettered_total{handler="",pattern="",reason="malformed"} 1`)
	assert.Contains(t, out, `arcmill_messages_malformed_total{topic="arc:events"} 1`)
	assert.NotContains(t, out, "wildcard(", "no internal handler name in any label")
}

// newBench returns a registry with arcmill's metrics on it, and a
// GoChannel to publish on, closed when t ends.
func newBench(t *testing.T) (*prometheus.Registry, *Metrics, *gochannel.GoChannel) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{})
	require.NoError(t, err)
	bus := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { assert.NoError(t, bus.Close()) })
	return reg, m, bus
}

// run runs events until t ends, and waits until its router runs.
func run(t *testing.T, events *wildcard.Router, router *message.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = events.Run(ctx) }()
	<-router.Running()
}

// publish publishes a new event of typ on bus's "arc:events" and returns
// its message.
func publish(t *testing.T, bus message.Publisher, typ string) *message.Message {
	t.Helper()
	ev, err := arc.NewEvent(typ, map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	require.NoError(t, bus.Publish("arc:events", msg.Copy()))
	return msg
}
