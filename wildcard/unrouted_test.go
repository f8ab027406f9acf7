package wildcard

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// unroutedCall is what one OnUnrouted call received.
type unroutedCall struct {
	typ, id, uuid string
	ctxIsMsgs     bool
}

// unroutedRecorder is an OnUnrouted that records its calls and answers
// each with the next of results (nil once they run out); a result that is
// a string panics with it.
type unroutedRecorder struct {
	mu      sync.Mutex
	calls   []unroutedCall
	results []any
}

func (u *unroutedRecorder) hook(ctx context.Context, msg *message.Message, ev arc.Event) error {
	u.mu.Lock()
	u.calls = append(u.calls, unroutedCall{typ: ev.Type, id: ev.Meta.ID, uuid: msg.UUID, ctxIsMsgs: ctx == msg.Context()})
	var res any
	if len(u.results) > 0 {
		res, u.results = u.results[0], u.results[1:]
	}
	u.mu.Unlock()
	switch r := res.(type) {
	case string:
		panic(r)
	case error:
		return r
	}
	return nil
}

func (u *unroutedRecorder) get() []unroutedCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]unroutedCall(nil), u.calls...)
}

// OnUnrouted gets each event no handler matched, with its message and the
// message's context, and never an event a handler matched; its nil error
// acknowledges the event.
func TestOnUnroutedGetsWhatNoHandlerMatched(t *testing.T) {
	t.Parallel()
	var hook unroutedRecorder
	h := newHarness(t, Config{OnUnrouted: hook.hook})
	var rec recorder
	_, err := h.wr.Subscribe(h.pubSub, topic, "order.*", rec.handler("orders"))
	require.NoError(t, err)
	h.run()

	user := h.publish("user.created", nil, arc.Meta{})
	eventually(t, func() bool { return len(hook.get()) == 1 }, "the unrouted event reaches OnUnrouted")
	h.publish("order.created", nil, arc.Meta{})
	eventually(t, func() bool { return h.wr.Stats().Handled == 1 }, "the routed event is handled")

	assert.Equal(t, []unroutedCall{{typ: "user.created", id: user.Meta.ID, uuid: user.Meta.ID, ctxIsMsgs: true}},
		hook.get(), "OnUnrouted saw the unrouted event once (acknowledged: GoChannel would send a nacked one again)")
	assert.Equal(t, []string{"order.created"}, rec.get("orders"))
	st := h.wr.Stats()
	assert.Equal(t, uint64(1), st.Unmatched)
	assert.Zero(t, st.UnroutedFailed)
}

// An OnUnrouted error or panic nacks the event: the transport delivers it
// again and OnUnrouted runs again, until it returns nil.
func TestOnUnroutedErrorNacks(t *testing.T) {
	t.Parallel()
	errParking := errors.New("parking topic unreachable")
	hook := unroutedRecorder{results: []any{errParking, "parking client nil"}}
	h := newHarness(t, Config{OnUnrouted: hook.hook})
	_, err := h.wr.Subscribe(h.pubSub, topic, "order.*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]

	// The error dispatch returns is what Watermill nacks on and logs.
	ev := mustEvent(t, "user.created", nil, arc.Meta{})
	err = src.dispatch(mustMessage(t, ev))
	require.ErrorIs(t, err, errParking)
	assert.Contains(t, err.Error(), `OnUnrouted for "user.created"`)
	err = src.dispatch(mustMessage(t, ev))
	var panicErr *PanicError
	require.ErrorAs(t, err, &panicErr, "a panicking OnUnrouted fails the delivery, not the process")
	assert.Equal(t, "parking client nil", panicErr.Value)
	require.NoError(t, src.dispatch(mustMessage(t, ev)))

	// Through the transport: GoChannel sends a nacked message again.
	hook.mu.Lock()
	hook.calls, hook.results = nil, []any{errParking}
	hook.mu.Unlock()
	h.run()
	again := h.publish("user.deleted", nil, arc.Meta{})
	eventually(t, func() bool { return len(hook.get()) == 2 }, "delivered again after the nack")
	for _, c := range hook.get() {
		assert.Equal(t, again.Meta.ID, c.id)
	}
	st := h.wr.Stats()
	assert.Equal(t, uint64(3), st.UnroutedFailed, "two failures by hand, one through the transport")
	assert.Equal(t, uint64(5), st.Unmatched, "every unmatched delivery counts")
	assert.Zero(t, st.Failed, "OnUnrouted failures are not handler failures")
}

// A subscription with no handler at all is not routing: it holds its
// message, and OnUnrouted does not see it. Once a handler subscribes, the
// held event is matched again, and if that handler does not match it
// either, it is unrouted then.
func TestOnUnroutedNotCalledWhileNoHandlerIsLeft(t *testing.T) {
	t.Parallel()
	var hook unroutedRecorder
	h := newHarness(t, Config{OnUnrouted: hook.hook})
	unsub, err := h.wr.Subscribe(h.pubSub, topic, "*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	src := h.wr.sources[sourceKey{h.pubSub, topic}]
	h.run()
	unsub()

	ev := mustEvent(t, "user.created", nil, arc.Meta{})
	result := make(chan error, 1)
	go func() { result <- src.dispatch(mustMessage(t, ev)) }()
	select {
	case err := <-result:
		t.Fatalf("dispatch returned %v with no handler: it must hold the message", err)
	case <-time.After(absenceWait): // nothing to wait on: checking that nothing happens
	}
	assert.Empty(t, hook.get(), "a held event is not unrouted")

	_, err = h.wr.Subscribe(h.pubSub, topic, "order.*", func(context.Context, arc.Event) error { return nil })
	require.NoError(t, err)
	select {
	case err := <-result:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("the held event was not matched again")
	}
	calls := hook.get()
	require.Len(t, calls, 1)
	assert.Equal(t, ev.Meta.ID, calls[0].id)
}
