package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// outage is a go-redis Limiter that cuts the client off Redis on demand:
// Redis stays up, but each command fails as a refused connection does
// (the *net.OpError a dial returns), before it reaches the server.
type outage struct{ down atomic.Bool }

func (o *outage) Allow() error {
	if o.down.Load() {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return nil
}

func (o *outage) ReportResult(error) {}

// redisRelay is a relay of f's outbox to a real Redis stream, through a
// client that cut can disconnect.
type redisRelay struct {
	relay  *Relay
	stream string
	rdb    *redis.Client // uncut, to inspect the stream
	passes chan RelayResult
	errs   chan RelayError
}

func newRedisRelay(t *testing.T, f *fixture, cut *outage, pcfg redisstream.PublisherConfig, cfg RelayConfig) *redisRelay {
	t.Helper()
	addr := testenv.RedisAddr(t)
	client := redis.NewClient(&redis.Options{Addr: addr, Limiter: cut, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	pcfg.Client = client
	pub, err := redisstream.NewPublisher(pcfg)
	require.NoError(t, err)
	rr := &redisRelay{stream: "arcmill:test:outage:" + f.ob.Table(), rdb: rdb,
		passes: make(chan RelayResult, 10000), errs: make(chan RelayError, 10000)}
	t.Cleanup(func() { rdb.Del(context.Background(), rr.stream) })
	cfg.OnPass = func(res RelayResult) {
		select {
		case rr.passes <- res:
		default:
		}
	}
	cfg.OnError = func(e RelayError) {
		select {
		case rr.errs <- e:
		default:
		}
	}
	rr.relay, err = f.ob.NewRelay(pub, cfg)
	require.NoError(t, err)
	return rr
}

// waitPasses reads pass results until ok holds for the sum of them.
func (rr *redisRelay) waitPasses(t *testing.T, what string, ok func(sum RelayResult) bool) RelayResult {
	t.Helper()
	var sum RelayResult
	deadline := time.After(waitTimeout)
	for {
		select {
		case res := <-rr.passes:
			sum.add(res)
			if ok(sum) {
				return sum
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s (so far %+v)", what, sum)
		}
	}
}

// attempts sums the attempt counters of f's rows.
func (f *fixture) attempts() int {
	var n int
	require.NoError(f.t, f.db.QueryRow("SELECT COALESCE(SUM(attempts), 0) FROM "+f.ob.Table()).Scan(&n))
	return n
}

// A broker outage is not the events' fault: with the default failure
// policy (dead letter after 5 attempts), a relay that fails on the
// transport for many more passes than that charges no attempt and
// dead-letters nothing; it reports itself paused, and once Redis is
// reachable again it delivers every row and reports itself healthy.
func TestRelay_BrokerOutageChargesNoAttemptAndLosesNothing(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		cut := &outage{}
		cut.down.Store(true)
		// The default RelayConfig but for the pause, kept short so that
		// many passes fail within the test.
		rr := newRedisRelay(t, f, cut, redisstream.PublisherConfig{},
			RelayConfig{OutageBackoff: Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
		const total = 20
		var entries []Entry
		for i := 0; i < total; i++ {
			entries = append(entries, Entry{Topic: rr.stream, Event: f.event("order.created", arc.Meta{})})
		}
		f.commit(entries...)
		assert.Equal(t, RelayHealthy, rr.relay.Status().State)
		run(t, rr.relay)

		// Many more failed passes than the policy's attempts.
		sum := rr.waitPasses(t, "failed passes", func(s RelayResult) bool { return s.TransportFailed >= 4*DefaultMaxAttempts })
		st := rr.relay.Status()
		assert.Equal(t, RelayPaused, st.State, "paused during the outage")
		assert.Equal(t, "paused", st.State.String())
		assert.False(t, st.Since.IsZero())
		assert.GreaterOrEqual(t, st.Pauses, 1)
		var opErr *net.OpError
		assert.ErrorAs(t, st.LastError, &opErr, "the transport's error is reported")
		assert.Zero(t, sum.PublishFailed, "no publish charged to a row")
		assert.Zero(t, sum.DeadLettered)
		assert.Zero(t, sum.Relayed)
		assert.Zero(t, f.attempts(), "no attempt counted")
		assert.Zero(t, f.count(statusDead), "nothing dead-lettered")
		assert.Equal(t, total, f.count(statusPending))
		e := wait(t, rr.errs, "OnError")
		assert.Equal(t, TransportFailed, e.Kind, "OnError hears of the outage")
		require.True(t, IsTransportError(e.Err))

		cut.down.Store(false)
		rr.waitPasses(t, "every row relayed", func(s RelayResult) bool { return s.Relayed >= total })
		assert.Equal(t, total, f.count(statusDelivered), "every row delivered after the outage")
		assert.Zero(t, f.count(statusDead))
		assert.Zero(t, f.attempts())
		st = rr.relay.Status()
		assert.Equal(t, RelayHealthy, st.State, "healthy again")
		assert.NoError(t, st.LastError)
		assert.Zero(t, st.FailedPasses)
		assert.GreaterOrEqual(t, st.Pauses, 1)
		n, err := rr.rdb.XLen(context.Background(), rr.stream).Result()
		require.NoError(t, err)
		assert.EqualValues(t, total, n, "each row on the stream once")
	})
}

// A closed Redis client is the transport's failure too: rows stay
// pending, uncharged, and RelayBatch reports the pass's transport failure.
func TestRelay_ClosedClientChargesNoAttempt(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
		require.NoError(t, client.Close())
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
		require.NoError(t, err)
		relay, err := f.ob.NewRelay(pub, RelayConfig{})
		require.NoError(t, err)
		f.commit(Entry{Topic: "arcmill:test:closed", Event: f.event("order.created", arc.Meta{})},
			Entry{Topic: "arcmill:test:closed", Event: f.event("order.created", arc.Meta{})})
		for i := 0; i < DefaultMaxAttempts+1; i++ {
			res, err := relay.RelayBatch(context.Background())
			require.NoError(t, err)
			assert.Equal(t, 1, res.TransportFailed)
			assert.Zero(t, res.PublishFailed)
		}
		assert.Zero(t, f.attempts())
		assert.Equal(t, 2, f.count(statusPending))
		st := relay.Status()
		assert.Equal(t, RelayPaused, st.State)
		assert.ErrorIs(t, st.LastError, redis.ErrClosed)
		assert.Equal(t, DefaultMaxAttempts+1, st.FailedPasses)
	})
}

// Only the event's own failures count: an event over the publisher's size
// limit (redisstream.ErrPayloadTooLarge, unrecoverable) is dead-lettered
// at once while its neighbours are delivered, and the relay stays healthy.
func TestRelay_OversizedEventIsTheEventsFailure(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, d Dialect) {
		f := newFixture(t, d, false)
		rr := newRedisRelay(t, f, &outage{}, redisstream.PublisherConfig{MaxPayloadBytes: 2000}, RelayConfig{})
		big, err := arc.NewEvent("order.created", map[string]string{"blob": strings.Repeat("x", 5000)}, arc.Meta{})
		require.NoError(t, err)
		f.commit(Entry{Topic: rr.stream, Event: f.event("order.created", arc.Meta{})}, Entry{Topic: rr.stream, Event: big},
			Entry{Topic: rr.stream, Event: f.event("order.created", arc.Meta{})})
		res, err := rr.relay.RelayBatch(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 2, res.Relayed)
		assert.Equal(t, 1, res.DeadLettered)
		assert.Zero(t, res.TransportFailed)
		assert.Equal(t, RelayHealthy, rr.relay.Status().State)
		assert.Equal(t, 1, f.count(statusDead))
	})
}

// fakeRedis answers every command with one error reply, as a Redis that
// is loading its data set or has become a replica does.
func fakeRedis(t *testing.T, reply string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					// One RESP array per command: *n, then $len and the
					// argument for each of the n.
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					var n int
					if _, err := fmt.Sscanf(line, "*%d", &n); err != nil {
						return
					}
					for i := 0; i < 2*n; i++ {
						if _, err := r.ReadString('\n'); err != nil {
							return
						}
					}
					if _, err := c.Write([]byte("-" + reply + "\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// IsTransportError knows the errors a real go-redis client returns when
// Redis cannot be reached or cannot take writes, and leaves the event's
// own failures to the failure policy.
func TestIsTransportError_RealClientErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	xadd := func(opt *redis.Options) error {
		opt.MaxRetries = -1
		c := redis.NewClient(opt)
		defer func() { _ = c.Close() }()
		return c.XAdd(ctx, &redis.XAddArgs{Stream: "arcmill:test:transport", Values: []any{"k", "v"}}).Err()
	}
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := l.Addr().String()
	require.NoError(t, l.Close())

	closed := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	require.NoError(t, closed.Close())
	timeoutCtx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-timeoutCtx.Done()

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", xadd(&redis.Options{Addr: refused}), true},
		{"closed client", closed.Ping(ctx).Err(), true},
		{"publish timeout", redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)}).Ping(timeoutCtx).Err(), true},
		{"LOADING", xadd(&redis.Options{Addr: fakeRedis(t, "LOADING Redis is loading the dataset in memory"), Protocol: 2}), true},
		{"READONLY", xadd(&redis.Options{Addr: fakeRedis(t, "READONLY You can't write against a read only replica."), Protocol: 2}), true},
		{"OOM", xadd(&redis.Options{Addr: fakeRedis(t, "OOM command not allowed when used memory > 'maxmemory'."), Protocol: 2}), true},
		{"CLUSTERDOWN", xadd(&redis.Options{Addr: fakeRedis(t, "CLUSTERDOWN The cluster is down"), Protocol: 2}), true},
		{"TRYAGAIN", xadd(&redis.Options{Addr: fakeRedis(t, "TRYAGAIN Multiple keys request during rehashing of slot"), Protocol: 2}), true},
		{"MASTERDOWN", xadd(&redis.Options{Addr: fakeRedis(t, "MASTERDOWN Link with MASTER is down"), Protocol: 2}), true},
		{"closed publisher", redisstream.ErrClosed, true},
		{"wrong type", xadd(&redis.Options{Addr: fakeRedis(t, "WRONGTYPE Operation against a key holding the wrong kind of value"), Protocol: 2}), false},
		{"payload too large", fmt.Errorf("outbox test: %w", redisstream.ErrPayloadTooLarge), false},
		{"unrecoverable timeout", fmt.Errorf("%w: %w", arc.ErrUnrecoverable, context.DeadlineExceeded), false},
		{"a publisher's refusal", errors.New("broker: message rejected"), false},
		{"relay stopping", fmt.Errorf("publish: %w", context.Canceled), true},
		{"unrecoverable cancel", fmt.Errorf("%w: %w", arc.ErrUnrecoverable, context.Canceled), false},
		{"NATS timeout", fmt.Errorf("publish: %w", nats.ErrTimeout), true},
		{"marked transient", middleware.Transient(errors.New("payments: 503")), true},
		{"nil", nil, false},
	} {
		if tc.err == nil && tc.want {
			t.Fatalf("%s: no error", tc.name)
		}
		assert.Equal(t, tc.want, IsTransportError(tc.err), "%s: %v", tc.name, tc.err)
	}
}

// RelayConfig.TransportError extends the rule: an error the hook calls the
// transport's charges no attempt.
func TestRelay_TransportErrorHookExtendsTheRule(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	errBrokerBusy := errors.New("broker: busy")
	rec := newRecorder()
	ev := f.event("order.created", arc.Meta{})
	rec.fail(ev.Meta.ID, errBrokerBusy)
	relay, err := f.ob.NewRelay(rec, RelayConfig{TransportError: func(err error) bool {
		return IsTransportError(err) || errors.Is(err, errBrokerBusy)
	}})
	require.NoError(t, err)
	f.commit(Entry{Topic: "t-" + uuid.NewString()[:8], Event: ev})
	res, err := relay.RelayBatch(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, res.TransportFailed)
	assert.Zero(t, res.PublishFailed)
	assert.Zero(t, f.attempts())
	assert.Equal(t, RelayPaused, relay.Status().State)
}

// A write Redis did not confirm durable (WAIT or WAITAOF timed out) is the
// broker's fault: the row stays pending, no attempt is counted.
func TestIsTransportErrorCountsUnconfirmedDurability(t *testing.T) {
	t.Parallel()
	assert.True(t, IsTransportError(fmt.Errorf("publish: %w", redisstream.ErrNotDurable)))
}

// The outbox's rule is the middleware's, plus the relay's own publish
// deadline and stop: a bare context error is the transport's for the relay
// and the attempt's own for a handler. Everything else they judge alike.
func TestIsTransportErrorIsTheMiddlewareRulePlusContextErrors(t *testing.T) {
	t.Parallel()
	for _, err := range []error{context.DeadlineExceeded, context.Canceled, fmt.Errorf("publish: %w", context.DeadlineExceeded),
		io.EOF, io.ErrUnexpectedEOF, fmt.Errorf("xadd: %w", io.EOF)} { // a cut broker connection, as go-redis reports it
		assert.True(t, IsTransportError(err), "%v", err)
		assert.False(t, middleware.IsTransportError(err), "%v", err)
	}
	for _, err := range []error{
		nil, redis.ErrClosed, redisstream.ErrClosed, redisstream.ErrNotDurable, nats.ErrNoResponders,
		syscall.ECONNREFUSED, errors.New("rejected"), redisstream.ErrPayloadTooLarge,
		fmt.Errorf("%w: %w", arc.ErrUnrecoverable, io.EOF),
		fmt.Errorf("%w: %w", arc.ErrUnrecoverable, context.DeadlineExceeded),
	} {
		assert.Equal(t, middleware.IsTransportError(err), IsTransportError(err), "%v", err)
	}
}
