package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// redisReply stands for a reply error of go-redis (its type is internal):
// a redis.Error with the server's text.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

var _ redis.Error = redisReply("")

// An outage of the transport or of a dependency is recognised, across
// Redis, NATS and the network, through wrapping; the event's own failures,
// context deadlines and anything unrecoverable are not.
func TestIsTransportError(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialDeadline := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	for err, want := range map[error]bool{
		refused:                           true,
		fmt.Errorf("charge: %w", refused): true,
		dialDeadline:                      true,
		syscall.ECONNRESET:                true,
		fmt.Errorf("read: %w", io.EOF):    false,
		&net.OpError{Op: "read", Net: "tcp", Err: io.EOF}:          true,
		redisReply("BUSY Redis is busy running a script"):          true,
		redisReply("BUSYGROUP Consumer Group name already exists"): false,
		redisReply("BUSYKEY Target key name already exists"):       false,
		redisReply("ERR max number of clients reached"):            true,
		redis.ErrClosed:                                           true,
		redis.ErrPoolTimeout:                                      true,
		redisReply("LOADING Redis is loading"):                    true,
		redisReply("READONLY You can't write"):                    true,
		redisReply("OOM command not allowed"):                     true,
		redisReply("CLUSTERDOWN Hash slot"):                       true,
		redisReply("TRYAGAIN Multiple keys"):                      true,
		redisReply("MASTERDOWN Link is down"):                     true,
		redisReply("MOVED 3999 127.0.0.1:6381"):                   true,
		redisReply("ASK 3999 127.0.0.1:6381"):                     true,
		redisReply("ERR wrong number of args"):                    false,
		redisReply("WRONGTYPE Operation against"):                 false,
		nats.ErrConnectionClosed:                                  true,
		nats.ErrNoServers:                                         true,
		nats.ErrTimeout:                                           true,
		fmt.Errorf("publish: %w", nats.ErrConnectionReconnecting): true,
		nats.ErrNoResponders:                                      true,
		nats.ErrNoStreamResponse:                                  true,
		&nats.APIError{Code: 503, Description: "unavailable"}:     true,
		&nats.APIError{Code: 400, Description: "bad request"}:     false,
		nats.ErrMaxPayload:                                        false,
		nats.ErrBadSubject:                                        false,
		Transient(errors.New("payments API: 503")):                true,
		fmt.Errorf("x: %w", Transient(errors.New("down"))):        true,
		ErrShutdown:                                         true,
		errors.New("card declined"):                         false,
		context.DeadlineExceeded:                            false,
		fmt.Errorf("q: %w", context.Canceled):               false,
		fmt.Errorf("%w: %w", arc.ErrUnrecoverable, refused): false,
		ErrValidation:                                       false,
	} {
		assert.Equal(t, want, IsTransportError(err), "%v", err)
	}
	assert.False(t, IsTransportError(nil))
	assert.Nil(t, Transient(nil))
	inner := errors.New("down")
	marked := Transient(inner)
	assert.ErrorIs(t, marked, ErrTransient)
	assert.ErrorIs(t, marked, inner)
	assert.Equal(t, "down", marked.Error(), "the message is the error's own")
}

// outageHandler fails with a transport error while down says so, with
// the event's own error at the calls listed in fail, and succeeds
// otherwise.
type outageHandler struct {
	calls counter
	down  func(call int) bool
	fail  map[int]bool
}

func (o *outageHandler) handle(*message.Message) ([]*message.Message, error) {
	n := o.calls.inc()
	switch {
	case o.down != nil && o.down(n):
		return nil, fmt.Errorf("SET: %w", &net.OpError{Op: "dial", Net: "tcp",
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	case o.fail[n]:
		return nil, errors.New("card declined")
	}
	return nil, nil
}

// A transport failure is no attempt: Retry waits and calls again, its
// retries and the attempts counted across deliveries unchanged, and the
// event's own failures still exhaust the retries and dead-letter it with
// the attempts that really failed.
func TestRetryDoesNotCountTransportFailures(t *testing.T) {
	t.Parallel()
	dlq := &failingPublisher{}
	var outages []RetryInfo
	stack, err := NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: 2, Backoff: NoBackoff, OutageBackoff: time.Millisecond,
			OutageMaxBackoff: 2 * time.Millisecond, OnOutage: func(i RetryInfo) { outages = append(outages, i) }},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq"}})
	require.NoError(t, err)

	// Down for 10 calls, then up: handled, no retry spent.
	h := &outageHandler{down: func(n int) bool { return n <= 10 }}
	_, err = chainOf(stack.Middleware, h.handle)(eventMessage(t, "x"))
	require.NoError(t, err)
	assert.Equal(t, 11, h.calls.get())
	assert.Zero(t, stack.Retry.Retried(), "no counted retry")
	assert.Equal(t, uint64(10), stack.Retry.OutageWaits())
	require.Len(t, outages, 10)
	assert.Equal(t, 1, outages[0].Attempt, "the failure did not count: the next call is still attempt 1")
	assert.Equal(t, 10, outages[9].Outage)
	assert.Empty(t, dlq.got)

	// The event's own failure at calls 1 and 4; down at 2, 3, 5–7; its own
	// again at 8: three counted attempts, dead-lettered with 3, after 8 calls.
	h = &outageHandler{down: func(n int) bool { return n == 2 || n == 3 || n >= 5 && n <= 7 },
		fail: map[int]bool{1: true, 4: true, 8: true}}
	_, err = chainOf(stack.Middleware, h.handle)(eventMessage(t, "y"))
	require.NoError(t, err, "dead-lettered and acked")
	assert.Equal(t, 8, h.calls.get())
	require.Len(t, dlq.got, 1)
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, 3, dl.Attempts)
	assert.Equal(t, "card declined", dl.Error.Message)
	assert.Equal(t, uint64(2), stack.Retry.Retried())
}

// A delivery that ends while its transport is down is nacked with
// ErrShutdown: neither dead-lettered nor charged an attempt.
func TestOutageWaitEndsWithTheDelivery(t *testing.T) {
	t.Parallel()
	dlq := &failingPublisher{}
	stack, err := NewStack(StackConfig{Retry: RetryConfig{MaxRetries: 1, Backoff: NoBackoff, OutageBackoff: time.Hour},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq"}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h := &outageHandler{down: func(int) bool { return true }}
	var waits counter
	msg := eventMessage(t, "x")
	msg.SetContext(ctx)
	chain := chainOf(stack.Middleware, func(m *message.Message) ([]*message.Message, error) {
		waits.inc()
		cancel() // the delivery ends during the hour-long wait that follows
		return h.handle(m)
	})
	_, err = chain(msg)
	require.ErrorIs(t, err, ErrShutdown)
	assert.Contains(t, err.Error(), "attempt not counted")
	assert.Empty(t, dlq.got)
	assert.Equal(t, 1, waits.get())
	assert.Empty(t, msg.Metadata.Get(MetadataAttempts))
}

// DeadLetter alone (no Retry inside, or a Retry with another rule) never
// dead-letters a transport failure: it nacks after a wait that grows with
// each nack of the same message, so the redelivery is no hot loop; the
// event's own failure is still dead-lettered.
func TestDeadLetterNacksTransportFailuresWithBackoff(t *testing.T) {
	t.Parallel()
	dlq := &failingPublisher{}
	const base = 20 * time.Millisecond
	d, err := NewDeadLetter(DeadLetterConfig{Publisher: dlq, Topic: "dlq", OutageBackoff: base,
		OutageMaxBackoff: time.Second})
	require.NoError(t, err)
	down := true
	handler := d.Middleware(func(*message.Message) ([]*message.Message, error) {
		if down {
			return nil, &RetryError{Err: Transient(errors.New("ledger service: 503")), Attempts: 1}
		}
		return nil, errors.New("card declined")
	})
	msg := eventMessage(t, "x")
	for i, least := range []time.Duration{base, 2 * base, 4 * base} {
		start := time.Now()
		_, err := handler(msg.Copy())
		require.Error(t, err, "nacked")
		// A lower bound only: a timer never fires early.
		assert.GreaterOrEqual(t, time.Since(start), least, "nack %d waits longer each time", i+1)
	}
	assert.Empty(t, dlq.got)
	assert.Equal(t, uint64(3), d.Stats().TransportFailures)

	down = false
	_, err = handler(msg.Copy())
	require.NoError(t, err)
	assert.Len(t, dlq.got, 1, "the event's own failure is dead-lettered")
}

// The delayed tier counts only the event's own failures: a message that
// comes back from a delayed retry and meets an outage keeps its attempts
// and its delayed retries, and is never sent back again for it.
func TestDelayedTierDoesNotCountTransportFailures(t *testing.T) {
	t.Parallel()
	delayed, dlq := &failingPublisher{}, &failingPublisher{}
	stack, err := NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: NoRetries, Backoff: NoBackoff, OutageBackoff: time.Millisecond},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq",
			Delayed: &DelayedRetry{Publisher: delayed, Topic: "events", Delays: []time.Duration{time.Minute}}},
	})
	require.NoError(t, err)
	// Delivery 1: its own failure, sent to the delayed tier with 1 attempt.
	h := &outageHandler{fail: map[int]bool{1: true}}
	msg := eventMessage(t, "order.created")
	_, err = chainOf(stack.Middleware, h.handle)(msg)
	require.NoError(t, err)
	require.Len(t, delayed.got, 1)
	back := delayed.got[0]
	assert.Equal(t, "1", back.Metadata.Get(MetadataAttempts))

	// Delivery 2, from the delayed tier: down 5 times, then its own
	// failure: attempt 2, delays spent, dead-lettered with 2 attempts.
	h = &outageHandler{down: func(n int) bool { return n <= 5 }, fail: map[int]bool{6: true}}
	_, err = chainOf(stack.Middleware, h.handle)(back.Copy())
	require.NoError(t, err)
	assert.Len(t, delayed.got, 1, "no delayed retry for the outage")
	require.Len(t, dlq.got, 1)
	var dl DeadLetteredEvent
	require.NoError(t, json.Unmarshal(dlq.got[0].Payload, &dl))
	assert.Equal(t, 2, dl.Attempts)

	// Without Retry's waiting (a Retry whose rule does not see it), the
	// outage reaches DeadLetter: nacked, not sent to the delayed tier.
	stack, err = NewStack(StackConfig{
		Retry: RetryConfig{MaxRetries: NoRetries, TransportError: func(error) bool { return false }},
		DeadLetter: DeadLetterConfig{Publisher: dlq, Topic: "dlq", TransportError: IsTransportError,
			OutageBackoff: time.Millisecond,
			Delayed:       &DelayedRetry{Publisher: delayed, Topic: "events", Delays: []time.Duration{time.Minute}}},
	})
	require.NoError(t, err)
	h = &outageHandler{down: func(int) bool { return true }}
	_, err = chainOf(stack.Middleware, h.handle)(back.Copy())
	require.Error(t, err, "nacked")
	assert.Len(t, delayed.got, 1)
	assert.Len(t, dlq.got, 1)
}

// Config checks of the outage waits, and the Stack sharing Retry's rule
// and pace with DeadLetter.
func TestOutageConfig(t *testing.T) {
	t.Parallel()
	var c RetryConfig
	c.setDefaults()
	assert.Equal(t, DefaultOutageBackoff, c.OutageBackoff)
	assert.Equal(t, DefaultOutageMaxBackoff, c.OutageMaxBackoff)
	assert.NotNil(t, c.TransportError)
	for _, bad := range []RetryConfig{{OutageBackoff: -1}, {OutageBackoff: time.Minute, OutageMaxBackoff: time.Second}} {
		err := bad.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "Outage")
	}
	for _, bad := range []DeadLetterConfig{{OutageBackoff: -1}, {OutageBackoff: time.Minute, OutageMaxBackoff: time.Second}} {
		bad.Publisher, bad.Topic = &failingPublisher{}, "dlq"
		err := bad.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "Outage")
	}
	r, err := NewRetry(RetryConfig{OutageBackoff: 10 * time.Millisecond, OutageMaxBackoff: 40 * time.Millisecond, Jitter: NoJitter})
	require.NoError(t, err)
	for n, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 40 * time.Millisecond, 9: 40 * time.Millisecond} {
		assert.Equal(t, want, r.OutageDelay(n), "n=%d", n)
	}

	never := func(error) bool { return false }
	stack, err := NewStack(StackConfig{Retry: RetryConfig{TransportError: never, OutageBackoff: time.Second},
		DeadLetter: DeadLetterConfig{Publisher: &failingPublisher{}, Topic: "dlq"}})
	require.NoError(t, err)
	assert.False(t, stack.DeadLetter.cfg.TransportError(Transient(errors.New("x"))), "Retry's rule serves DeadLetter")
	assert.Equal(t, time.Second, stack.DeadLetter.cfg.OutageBackoff)
}
