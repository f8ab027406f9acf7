package middleware

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

const (
	topic    = "arc.events"
	dlqTopic = "arc.events.dlq"
	// waitTimeout bounds every wait for something that should happen, with
	// seconds to spare on a loaded machine: a wait ends at the event.
	waitTimeout = 30 * time.Second
	// pollInterval is how often a condition is checked.
	pollInterval = 5 * time.Millisecond
)

type harness struct {
	t      *testing.T
	pubSub *gochannel.GoChannel
	router *message.Router
	events *wildcard.Router
	stack  *Stack
	dlq    <-chan *message.Message
	cancel context.CancelFunc
	closed bool
}

// newHarness builds a router whose handlers use a Stack made from cfg; the
// dead-letter publisher and topic default to the harness's GoChannel.
func newHarness(t *testing.T, cfg StackConfig) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, wildcard.Config{})
}

// newHarnessWith is newHarness with a wildcard.Config (OnMalformed is set
// to the stack's).
func newHarnessWith(t *testing.T, cfg StackConfig, wcfg wildcard.Config) *harness {
	t.Helper()
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64}, logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	require.NoError(t, err)
	if cfg.DeadLetter.Publisher == nil {
		cfg.DeadLetter.Publisher = pubSub
	}
	if cfg.DeadLetter.Topic == "" {
		cfg.DeadLetter.Topic = dlqTopic
	}
	if cfg.Retry.Backoff == 0 {
		cfg.Retry.Backoff = time.Millisecond
	}
	stack, err := NewStack(cfg)
	require.NoError(t, err)
	wcfg.OnMalformed = stack.DeadLetter.Malformed
	events, err := wildcard.NewRouter(router, wcfg)
	require.NoError(t, err)
	dlq, err := pubSub.Subscribe(context.Background(), dlqTopic)
	require.NoError(t, err)
	h := &harness{t: t, pubSub: pubSub, router: router, events: events, stack: stack, dlq: dlq}
	t.Cleanup(func() {
		h.close()
		require.NoError(t, pubSub.Close())
	})
	return h
}

func (h *harness) handle(name, pattern string, fn wildcard.Handler) {
	h.t.Helper()
	_, err := h.events.Handle(wildcard.HandlerConfig{Name: name, Subscriber: h.pubSub, Topic: topic,
		Patterns: []string{pattern}, Middleware: h.stack.Middleware}, fn)
	require.NoError(h.t, err)
}

// run starts the router and returns once every handler reads the
// GoChannel, which delivers only to running subscriptions.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { _ = h.events.Run(ctx) }()
	select {
	case <-h.events.Running():
	case <-time.After(waitTimeout):
		h.t.Fatal("the router did not start")
	}
}

func (h *harness) close() {
	if h.cancel != nil && !h.closed {
		h.closed = true
		require.NoError(h.t, h.router.Close())
		h.cancel()
	}
}

func (h *harness) publish(typ string, payload any, meta arc.Meta) arc.Event {
	h.t.Helper()
	ev, err := arc.NewEvent(typ, payload, meta)
	require.NoError(h.t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(h.t, err)
	require.NoError(h.t, h.pubSub.Publish(topic, msg))
	return ev
}

// nextDeadLetter waits for a dead letter and decodes it.
func (h *harness) nextDeadLetter() (DeadLetteredEvent, *message.Message) {
	h.t.Helper()
	select {
	case msg := <-h.dlq:
		msg.Ack()
		var dl DeadLetteredEvent
		require.NoError(h.t, json.Unmarshal(msg.Payload, &dl), string(msg.Payload))
		return dl, msg
	case <-time.After(waitTimeout):
		h.t.Fatal("no dead letter")
		return DeadLetteredEvent{}, nil
	}
}

func (h *harness) noDeadLetter(wait time.Duration) {
	h.t.Helper()
	select {
	case msg, ok := <-h.dlq:
		if ok { // a closed channel: the router closed the GoChannel
			h.t.Fatalf("unexpected dead letter: %s", msg.Payload)
		}
	case <-time.After(wait):
	}
}

// counter counts calls, safely.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) inc() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// codedError has Arc's error.code.
type codedError struct{ msg, code string }

func (e codedError) Error() string { return e.msg }
func (e codedError) Code() string  { return e.code }

func eventuallyEqual(t *testing.T, want int, get func() int) {
	t.Helper()
	require.Eventually(t, func() bool { return get() == want }, waitTimeout, pollInterval, "want %d, have %d", want, get())
}
