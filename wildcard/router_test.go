package wildcard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

const (
	topic = "arc.events"
	// absenceWait is how long a test watches for something that must not
	// happen, where there is no signal to wait on.
	absenceWait = 50 * time.Millisecond
)

type harness struct {
	t      *testing.T
	router *message.Router
	wr     *Router
	pubSub *gochannel.GoChannel
	ran    bool
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64}, logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: closeTimeout}, logger)
	require.NoError(t, err)
	wr, err := NewRouter(router, cfg)
	require.NoError(t, err)
	h := &harness{t: t, router: router, wr: wr, pubSub: pubSub}
	t.Cleanup(func() {
		if h.ran { // a Watermill router that never ran times out on Close
			require.NoError(t, router.Close())
		}
		require.NoError(t, pubSub.Close())
	})
	return h
}

// run starts the router and waits until every source listens.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	h.ran = true
	go func() { _ = h.wr.Run(ctx) }()
	waitClosed(h.t, h.wr.Running(), "Running")
}

func (h *harness) waitStarted() {
	h.wr.mu.Lock()
	var srcs []*source
	for _, s := range h.wr.sources {
		srcs = append(srcs, s)
	}
	h.wr.mu.Unlock()
	for _, s := range srcs {
		<-s.wm.Started()
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

// recorder collects the event types each handler saw.
type recorder struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (r *recorder) handler(name string) Handler {
	return func(ctx context.Context, ev arc.Event) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.seen == nil {
			r.seen = map[string][]string{}
		}
		r.seen[name] = append(r.seen[name], ev.Type)
		return nil
	}
}

func (r *recorder) get(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.seen[name]...)
	sort.Strings(out)
	return out
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, waitTimeout, pollInterval, msg)
}

func TestRouterFansOutByPattern(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var rec recorder
	sub := func(name string, patterns ...string) {
		_, err := h.wr.Handle(HandlerConfig{Name: name, Subscriber: h.pubSub, Topic: topic, Patterns: patterns}, rec.handler(name))
		require.NoError(t, err)
	}
	sub("orders", "order.*")
	sub("all", "*")
	sub("created", "order.created")
	sub("twice", "order.created", "order.*") // both match: runs once
	sub("payments", "payment:*")
	h.run()
	assert.Len(t, h.wr.sources, 1, "one subscription however many patterns")

	h.publish("order.created", nil, arc.Meta{})
	h.publish("order.item.added", nil, arc.Meta{})
	h.publish("payment:captured", nil, arc.Meta{})
	h.publish("$deadLetter", nil, arc.Meta{})
	// Each event's handlers run concurrently: wait until every matched
	// handler of all four has finished, not only "*"'s.
	eventually(t, func() bool { return h.wr.Stats().Handled == 4 }, "all four handled")
	assert.Len(t, rec.get("all"), 4, "all four reach *")

	assert.Equal(t, []string{"order.created", "order.item.added"}, rec.get("orders"))
	assert.Equal(t, []string{"order.created"}, rec.get("created"))
	assert.Equal(t, []string{"order.created", "order.item.added"}, rec.get("twice"))
	assert.Equal(t, []string{"payment:captured"}, rec.get("payments"))
	assert.Equal(t, uint64(4), h.wr.Stats().Handled)
}

// One handler failing does not re-run its siblings on redelivery.
func TestRouterFailureIsolation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var okCalls, flakyCalls atomic.Int32
	_, err := h.wr.Subscribe(h.pubSub, topic, "order.*", func(context.Context, arc.Event) error {
		okCalls.Add(1)
		return nil
	})
	require.NoError(t, err)
	_, err = h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error {
		if flakyCalls.Add(1) < 3 {
			return errors.New("transient")
		}
		return nil
	})
	require.NoError(t, err)
	h.run()

	h.publish("order.created", nil, arc.Meta{})
	eventually(t, func() bool { return h.wr.Stats().Handled == 1 }, "handled after redeliveries")
	assert.Equal(t, int32(1), okCalls.Load(), "the sibling that succeeded ran once")
	assert.Equal(t, int32(3), flakyCalls.Load())
	assert.Equal(t, uint64(2), h.wr.Stats().Failed)
	h.wr.mu.Lock()
	for _, s := range h.wr.sources {
		assert.Zero(t, s.progress.len(), "nothing remembered once all succeeded")
	}
	h.wr.mu.Unlock()
}

func TestRouterAcksAndCountsUnmatched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var rec recorder
	_, err := h.wr.Subscribe(h.pubSub, topic, "order.*", rec.handler("orders"))
	require.NoError(t, err)
	h.run()
	// GoChannel sends each message from a goroutine of its own, so the two
	// may arrive in either order: wait for each.
	h.publish("user.created", nil, arc.Meta{})
	eventually(t, func() bool { return h.wr.Stats().Unmatched == 1 }, "the unmatched event is acknowledged")
	h.publish("order.created", nil, arc.Meta{})
	eventually(t, func() bool { return len(rec.get("orders")) == 1 }, "the next event flows")
	assert.Equal(t, uint64(1), h.wr.Stats().Unmatched)
}

func TestRouterSubscribeAndUnsubscribeAtRunTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var rec recorder
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", rec.handler("all"))
	require.NoError(t, err)
	h.run()

	unsub, err := h.wr.Subscribe(h.pubSub, topic, "order.*", rec.handler("orders"))
	require.NoError(t, err)
	h.publish("order.created", nil, arc.Meta{})
	eventually(t, func() bool { return len(rec.get("orders")) == 1 }, "a handler added at run time receives")

	unsub()
	unsub() // idempotent
	h.publish("order.updated", nil, arc.Meta{})
	eventually(t, func() bool { return len(rec.get("all")) == 2 }, "the other handler still receives")
	assert.Equal(t, []string{"order.created"}, rec.get("orders"), "an unsubscribed handler does not")

	// A new topic at run time starts its own subscription.
	var other recorder
	_, err = h.wr.Subscribe(h.pubSub, "other.topic", "*", other.handler("x"))
	require.NoError(t, err)
	h.waitStarted()
	require.NoError(t, h.pubSub.Publish("other.topic", mustMessage(t, mustEvent(t, "x.y", nil, arc.Meta{}))))
	eventually(t, func() bool { return len(other.get("x")) == 1 }, "new topic subscribed at run time")
}

// Arc acks what arrives after the last unsubscribe; arcmill holds it until
// a handler subscribes again, or nacks it when the subscription ends.
func TestRouterNeverAcksWhenNoHandlersAreLeft(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	unsub, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	h.run()
	unsub()

	ev := mustEvent(t, "order.created", nil, arc.Meta{})
	msg := mustMessage(t, ev)
	result := make(chan error, 1)
	go func() { result <- src.dispatch(msg) }()
	select {
	case err := <-result:
		t.Fatalf("dispatch returned %v with no handler: it must hold the message", err)
	case <-time.After(absenceWait): // nothing to wait on: checking that nothing happens
	}
	got := make(chan string, 1)
	_, err = h.wr.Subscribe(h.pubSub, topic, "order.*", func(_ context.Context, ev arc.Event) error {
		got <- ev.Meta.ID
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, <-result, "processed by the handler that came back")
	assert.Equal(t, ev.Meta.ID, <-got)
	assert.Same(t, src, h.wr.sources[sourceKey{h.pubSub, topic}], "the subscription is reused")
	assert.Zero(t, h.wr.Stats().Unmatched)

	// With no handler and a message context that ends (the router
	// closing), the message is nacked.
	h2 := newHarness(t, Config{})
	unsub2, err := h2.wr.Subscribe(h2.pubSub, topic, "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	src2 := h2.wr.sources[sourceKey{h2.pubSub, topic}]
	unsub2()
	ctx, cancel := context.WithCancel(context.Background())
	msg2 := mustMessage(t, ev)
	msg2.SetContext(ctx)
	go func() { result <- src2.dispatch(msg2) }()
	cancel()
	assert.ErrorIs(t, <-result, ErrNoHandlers)
}

func TestRouterMalformed(t *testing.T) {
	t.Parallel()
	var hooked error
	h := newHarness(t, Config{})
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	bad := message.NewMessage("1", []byte(`{}`)) // no arc_type
	err = src.dispatch(bad)
	assert.NoError(t, err, "dropped by default (logged and counted), never nacked into a loop")
	assert.Equal(t, uint64(1), h.wr.Stats().MalformedDropped)

	h.wr.cfg.OnMalformed = func(msg *message.Message, err error) error { hooked = err; return nil }
	assert.NoError(t, src.dispatch(bad))
	assert.ErrorIs(t, hooked, arc.ErrMalformedEvent)
	h.wr.cfg.OnMalformed = func(_ *message.Message, err error) error { return err }
	assert.ErrorIs(t, src.dispatch(bad), arc.ErrMalformedEvent, "OnMalformed's error nacks")
	s := h.wr.Stats()
	assert.Equal(t, uint64(3), s.Malformed)
	assert.Equal(t, uint64(1), s.MalformedDropped, "only the default drops")
}

func TestTypedHandler(t *testing.T) {
	t.Parallel()
	type order struct {
		ID    string `json:"orderId"`
		Total int    `json:"total"`
	}
	h := newHarness(t, Config{})
	got := make(chan order, 1)
	_, err := h.wr.Subscribe(h.pubSub, topic, "order.*", Typed(func(_ context.Context, _ arc.Event, o order) error {
		got <- o
		return nil
	}))
	require.NoError(t, err)
	h.run()
	h.publish("order.created", map[string]any{"orderId": "o-1", "total": 99}, arc.Meta{})
	select {
	case o := <-got:
		assert.Equal(t, order{"o-1", 99}, o)
	case <-time.After(waitTimeout):
		t.Fatal("typed handler not called")
	}

	ev := mustEvent(t, "order.created", []int{1}, arc.Meta{})
	err = Typed(func(context.Context, arc.Event, order) error { return nil })(context.Background(), ev)
	assert.ErrorIs(t, err, arc.ErrUnrecoverable)
}

// Middleware sees the handler, pattern and topic; each chain wraps its own handler.
func TestPerHandlerMiddlewareAndInfo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var mu sync.Mutex
	var seen []string
	mw := func(tag string) message.HandlerMiddleware {
		return func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				info, ok := InfoFromContext(msg.Context())
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s:%v:%s:%s:%s:%s", tag, ok, info.Handler, info.Pattern,
					msg.Metadata.Get(MetadataPattern), info.Event.Type))
				mu.Unlock()
				return next(msg)
			}
		}
	}
	done := make(chan struct{}, 2)
	for _, name := range []string{"a", "b"} {
		_, err := h.wr.Handle(HandlerConfig{Name: name, Subscriber: h.pubSub, Topic: topic,
			Patterns: []string{"nope", "order.*"}, Middleware: []message.HandlerMiddleware{mw(name)}},
			func(context.Context, arc.Event) error { done <- struct{}{}; return nil })
		require.NoError(t, err)
	}
	h.run()
	h.publish("order.created", nil, arc.Meta{})
	<-done
	<-done
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(seen)
	assert.Equal(t, []string{"a:true:a:order.*:order.*:order.created", "b:true:b:order.*:order.*:order.created"}, seen)
}

func TestHandleFuncPublishesOutput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	out, err := h.pubSub.Subscribe(context.Background(), "out")
	require.NoError(t, err)
	_, err = h.wr.HandleFunc(HandlerConfig{Name: "fwd", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"},
		Publisher: h.pubSub, PublishTopic: "out"}, message.PassthroughHandler)
	require.NoError(t, err)
	_, err = h.wr.HandleFunc(HandlerConfig{Name: "lost", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"x"}},
		message.PassthroughHandler)
	require.NoError(t, err)
	h.run()
	sent := h.publish("order.created", nil, arc.Meta{})
	select {
	case msg := <-out:
		msg.Ack()
		assert.Equal(t, sent.Meta.ID, msg.UUID)
		assert.Equal(t, "fwd", msg.Metadata.Get(MetadataHandler))
	case <-time.After(waitTimeout):
		t.Fatal("output not published")
	}

	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	assert.ErrorIs(t, src.dispatch(mustMessage(t, mustEvent(t, "x", nil, arc.Meta{}))), ErrOutputWithoutPublisher)
}

func TestHandlerPanicFailsOnlyThatHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var calls atomic.Int32
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { panic("boom") })
	require.NoError(t, err)
	_, err = h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { calls.Add(1); return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	ev := mustEvent(t, "x", nil, arc.Meta{})
	msg := mustMessage(t, ev)
	err = src.dispatch(msg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panic: boom")
	assert.NotContains(t, err.Error(), "goroutine", "no stack in what reaches logs and poison queues")
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, pe.Stack, "goroutine", "the stack stays available in process")
	assert.Equal(t, int32(1), calls.Load())
	require.Error(t, src.dispatch(msg))
	assert.Equal(t, int32(1), calls.Load(), "not run again on redelivery")
}

// A handler panic's stack reaches the error's message only when the user
// opts in with PanicStackInError.
func TestPanicStackInErrorOnlyWhenOptedIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{PanicStackInError: true})
	boom := errors.New("boom")
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { panic(boom) })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	err = src.dispatch(mustMessage(t, mustEvent(t, "x", nil, arc.Meta{})))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panic: boom\ngoroutine")
	assert.ErrorIs(t, err, boom, "panic(err) unwraps to err")
}

// A message over the router's Limits never reaches a handler: it goes to
// OnMalformed once, as malformed.
func TestMessageOverLimitsGoesToOnMalformed(t *testing.T) {
	t.Parallel()
	var malformed []error
	h := newHarness(t, Config{Limits: arc.Limits{MaxDepth: 3, MaxTypeBytes: 8},
		OnMalformed: func(_ *message.Message, err error) error { malformed = append(malformed, err); return nil }})
	var calls atomic.Int32
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { calls.Add(1); return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]

	require.NoError(t, src.dispatch(mustMessage(t, mustEvent(t, "x", json.RawMessage(`[[[]]]`), arc.Meta{}))))
	require.NoError(t, src.dispatch(mustMessage(t, mustEvent(t, "longer.than.8", nil, arc.Meta{}))))
	require.NoError(t, src.dispatch(mustMessage(t, mustEvent(t, "x", json.RawMessage(`[[]]`), arc.Meta{}))))
	assert.Equal(t, int32(1), calls.Load())
	require.Len(t, malformed, 2)
	for _, err := range malformed {
		assert.ErrorIs(t, err, arc.ErrMalformedEvent)
	}
}

// Every refused Config or HandlerConfig wraps ErrInvalidConfig and names
// its field; a pattern the mode refuses wraps ErrInvalidPattern.
func TestConfigRefusesEachBadField(t *testing.T) {
	t.Parallel()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		cfg   Config
		field string
	}{
		"negative workers":     {Config{Workers: -1}, "Workers"},
		"negative max tracked": {Config{MaxTracked: -1}, "MaxTracked"},
		"negative max depth":   {Config{Limits: arc.Limits{MaxDepth: -2}}, "MaxDepth"},
	} {
		_, err = NewRouter(router, tc.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), tc.field, name)
		assert.ErrorIs(t, tc.cfg.Validate(), ErrInvalidConfig, name)
	}
	require.NoError(t, Config{}.Validate())
	_, err = NewRouter(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	wr, err := NewRouter(router, Config{})
	require.NoError(t, err)
	assert.Equal(t, DefaultWorkers, wr.cfg.Workers)
	assert.Equal(t, DefaultMaxTracked, wr.cfg.MaxTracked)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, pubSub.Close()) })
	ok := HandlerConfig{Name: "h", Subscriber: pubSub, Topic: "t", Patterns: []string{"*"}}
	noop := func(context.Context, arc.Event) error { return nil }
	for name, tc := range map[string]struct {
		mutate func(*HandlerConfig)
		field  string
	}{
		"no name":                 {func(c *HandlerConfig) { c.Name = "" }, "Name"},
		"no subscriber":           {func(c *HandlerConfig) { c.Subscriber = nil }, "Subscriber"},
		"no topic":                {func(c *HandlerConfig) { c.Topic = "" }, "Topic"},
		"no patterns":             {func(c *HandlerConfig) { c.Patterns = nil }, "Patterns"},
		"publisher without topic": {func(c *HandlerConfig) { c.Publisher = pubSub }, "PublishTopic"},
		"unknown mode":            {func(c *HandlerConfig) { c.Mode = 9 }, "Mode"},
	} {
		c := ok
		tc.mutate(&c)
		_, err := wr.Handle(c, noop)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), tc.field, name)
	}
	bad := ok
	bad.Patterns = []string{"a.*b"}
	bad.Mode = SegmentMode
	_, err = wr.Handle(bad, noop)
	assert.ErrorIs(t, err, ErrInvalidPattern)
	_, err = wr.Handle(ok, noop)
	require.NoError(t, err)
	_, err = wr.Handle(ok, noop)
	assert.ErrorIs(t, err, ErrDuplicateHandler)
	_, err = wr.Handle(ok, nil)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// With ColonStarLiteral, "payment:*" is the literal type, as Arc 2.11–2.14
// Streams consumers read it: "payment:captured" is unmatched (acked), the
// literal type is handled, ".*" prefixes and SegmentMode handlers are
// unchanged. Without it, "payment:*" is a prefix.
func TestColonStarLiteralRoutesLikeArcStreams(t *testing.T) {
	t.Parallel()
	for _, literal := range []bool{true, false} {
		t.Run(fmt.Sprint("ColonStarLiteral=", literal), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{ColonStarLiteral: literal})
			var rec recorder
			_, err := h.wr.Subscribe(h.pubSub, topic, "payment:*", rec.handler("colon"))
			require.NoError(t, err)
			_, err = h.wr.Subscribe(h.pubSub, topic, "payment.*", rec.handler("dot"))
			require.NoError(t, err)
			_, err = h.wr.Handle(HandlerConfig{Name: "segment", Subscriber: h.pubSub, Topic: topic,
				Patterns: []string{"payment.>"}, Mode: SegmentMode}, rec.handler("segment"))
			require.NoError(t, err)
			h.run()
			h.publish("payment:captured", nil, arc.Meta{})
			h.publish("payment:*", nil, arc.Meta{})
			h.publish("payment.refunded", nil, arc.Meta{})
			eventually(t, func() bool { s := h.wr.Stats(); return s.Handled+s.Unmatched == 3 }, "all three read")
			if literal {
				assert.Equal(t, []string{"payment:*"}, rec.get("colon"))
				assert.Equal(t, uint64(1), h.wr.Stats().Unmatched, "payment:captured, as Arc Streams acks it")
			} else {
				assert.Equal(t, []string{"payment:*", "payment:captured"}, rec.get("colon"))
				assert.Zero(t, h.wr.Stats().Unmatched)
			}
			assert.Equal(t, []string{"payment.refunded"}, rec.get("dot"))
			assert.Equal(t, []string{"payment.refunded"}, rec.get("segment"))
		})
	}
}

func TestProgressIsBounded(t *testing.T) {
	t.Parallel()
	p := newProgress(3)
	a := &entry{name: "a"}
	for i := 0; i < 10; i++ {
		p.add(fmt.Sprint(i), []*entry{a})
	}
	assert.Equal(t, 3, p.len())
	assert.Nil(t, p.done("0"), "the oldest is forgotten")
	assert.Equal(t, map[*entry]struct{}{a: {}}, p.done("9"))
	p.forget("9")
	assert.Nil(t, p.done("9"))
	p.add("x", nil)
	assert.Nil(t, p.done("x"), "nothing succeeded, nothing remembered")
	assert.Equal(t, 2, p.len())
}

// A handler that replaces one of the same name is a new handler: it runs on
// a redelivery even though its namesake had succeeded.
func TestProgressTracksHandlersNotNames(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var first, second, failing atomic.Int32
	unsub, err := h.wr.Handle(HandlerConfig{Name: "a", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { first.Add(1); return nil })
	require.NoError(t, err)
	_, err = h.wr.Handle(HandlerConfig{Name: "b", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { failing.Add(1); return errors.New("x") })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	ev := mustEvent(t, "x", nil, arc.Meta{})
	msg := mustMessage(t, ev)
	require.Error(t, src.dispatch(msg))
	unsub()
	_, err = h.wr.Handle(HandlerConfig{Name: "a", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { second.Add(1); return nil })
	require.NoError(t, err)
	require.Error(t, src.dispatch(msg))
	assert.Equal(t, int32(1), first.Load())
	assert.Equal(t, int32(1), second.Load())
	assert.Equal(t, int32(2), failing.Load())
}

func TestHandleAfterCloseFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	_, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	h.run()
	require.NoError(t, h.router.Close())
	_, err = h.wr.Subscribe(h.pubSub, "other", "*", func(context.Context, arc.Event) error { return nil })
	assert.ErrorIs(t, err, ErrRouterClosed)
}

func TestTargetHandlerMetadataRunsOnlyThatHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var a, b atomic.Int32
	_, err := h.wr.Handle(HandlerConfig{Name: "a", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { a.Add(1); return nil })
	require.NoError(t, err)
	_, err = h.wr.Handle(HandlerConfig{Name: "b", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { b.Add(1); return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	ev := mustEvent(t, "x", nil, arc.Meta{})
	msg := mustMessage(t, ev)
	msg.Metadata.Set(MetadataTargetHandler, "b")
	require.NoError(t, src.dispatch(msg))
	assert.Equal(t, int32(0), a.Load())
	assert.Equal(t, int32(1), b.Load())

	msg.Metadata.Set(MetadataTargetHandler, "gone")
	require.NoError(t, src.dispatch(msg))
	assert.Equal(t, int32(1), a.Load(), "an unknown target runs every match, never loses the event")
	assert.Equal(t, int32(2), b.Load())
}

// A delayed retry (a targeted copy with the event's id) runs its handler
// even when progress says that handler succeeded for that id.
func TestTargetedCopyBypassesProgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var a atomic.Int32
	_, err := h.wr.Handle(HandlerConfig{Name: "a", Subscriber: h.pubSub, Topic: topic, Patterns: []string{"*"}},
		func(context.Context, arc.Event) error { a.Add(1); return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	ev := mustEvent(t, "x", nil, arc.Meta{})
	src.progress.add(ev.Meta.ID, []*entry{src.handlers["a"]})
	msg := mustMessage(t, ev)
	msg.Metadata.Set(MetadataTargetHandler, "a")
	require.NoError(t, src.dispatch(msg))
	assert.Equal(t, int32(1), a.Load())
}
