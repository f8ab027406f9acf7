package metrics

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
	"github.com/arcmill/arcmill/wildcard"
)

// scrape fetches the registry's /metrics page over HTTP, as Prometheus
// does, in the text exposition format.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// The counters of outages show on a real scrape: a handler's waits after a
// dependency's failure (OnOutage), a dead-letter middleware's nacks of
// transport failures (WatchDeadLetter), a wildcard router's dropped
// malformed messages, and the relay's publishes that failed on the broker's
// transport (OnRelayPass).
func TestOutageCountersOnAScrape(t *testing.T) {
	t.Parallel()
	reg, m, bus := newBench(t)
	logger := watermill.NopLogger{}

	// A handler whose payment API is down for its first two calls: two
	// waits, no retry counted, then success.
	stack, err := middleware.NewStack(middleware.StackConfig{
		Retry: middleware.RetryConfig{MaxRetries: 2, Backoff: time.Millisecond, OnRetry: m.OnRetry,
			OutageBackoff: time.Millisecond, OnOutage: m.OnOutage},
		DeadLetter: middleware.DeadLetterConfig{Publisher: bus, Topic: "dlq", OnDeadLetter: m.OnDeadLetter},
	})
	require.NoError(t, err)
	require.NoError(t, m.WatchDeadLetter("main", stack.DeadLetter))
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, logger)
	require.NoError(t, err)
	events, err := wildcard.NewRouter(router, wildcard.Config{}) // no OnMalformed: dropped
	require.NoError(t, err)
	require.NoError(t, m.WatchRouter("main", events))
	var calls atomic.Int32
	done := make(chan struct{}, 1)
	_, err = events.Handle(wildcard.HandlerConfig{Name: "billing", Subscriber: bus, Topic: "arc:events",
		Patterns: []string{"order.*"}, Middleware: stack.Middleware},
		func(context.Context, arc.Event) error {
			if calls.Add(1) <= 2 {
				return middleware.Transient(errors.New("payments: 503"))
			}
			done <- struct{}{}
			return nil
		})
	require.NoError(t, err)
	run(t, events, router)
	require.NoError(t, bus.Publish("arc:events", message.NewMessage(uuid.NewString(), []byte("not an event"))))
	msg := publish(t, bus, "order.created")
	ev, err := arc.FromMessage(msg)
	require.NoError(t, err)
	ctx := context.Background()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("the handler never succeeded")
	}
	require.Eventually(t, func() bool { return events.Stats().MalformedDropped == 1 }, waitTimeout, pollInterval)

	// The dead-letter middleware alone sees a transport failure as final
	// (no Retry inside): it nacks and counts it, and writes no dead letter.
	dl, err := middleware.NewDeadLetter(middleware.DeadLetterConfig{Publisher: bus, Topic: "dlq",
		OutageBackoff: time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, m.WatchDeadLetter("bare", dl))
	_, err = dl.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, middleware.Transient(errors.New("payments: 503"))
	})(msg.Copy())
	require.Error(t, err)

	// The relay's publisher is closed: a transport failure, no attempt.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "o.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, db.Close()) })
	ob, err := outbox.New(db, outbox.Config{Dialect: outbox.SQLite})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Write(ctx, tx, outbox.Entry{Topic: "t", Event: ev}))
	require.NoError(t, tx.Commit())
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { assert.NoError(t, client.Close()) })
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
	require.NoError(t, err)
	require.NoError(t, pub.Close())
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{OnPass: m.OnRelayPass})
	require.NoError(t, err)
	res, err := relay.RelayBatch(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.TransportFailed)

	out := scrape(t, reg)
	for _, line := range []string{
		`arcmill_outage_waits_total{handler="billing",pattern="order.*"} 2`,
		`arcmill_dead_letter_messages_total{dead_letter="bare",outcome="transport_failed"} 1`,
		`arcmill_dead_letter_messages_total{dead_letter="bare",outcome="dead_lettered"} 0`,
		`arcmill_dead_letter_messages_total{dead_letter="main",outcome="transport_failed"} 0`,
		`arcmill_router_events_total{outcome="malformed_dropped",router="main"} 1`,
		`arcmill_router_events_total{outcome="handled",router="main"} 1`,
		`arcmill_outbox_relay_rows_total{outcome="transport_failed"} 1`,
		"# TYPE arcmill_outage_waits_total counter",
		"# TYPE arcmill_dead_letter_messages_total counter",
	} {
		assert.Contains(t, out, line+"\n")
	}
	assert.NotContains(t, out, "arcmill_events_retried_total{", "an outage is no retry")
	assert.NotContains(t, out, `outcome="publish_failed"} 1`, "nor a failed publish")
}
