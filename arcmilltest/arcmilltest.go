package arcmilltest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// T is the part of testing.TB the helpers use.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// DefaultTimeout is how long RequirePublished waits unless WithTimeout
// says otherwise.
const DefaultTimeout = 5 * time.Second

// FixedTime is the timestamp of events built with Deterministic (and a
// convenient value for WithTimestamp): 2026-01-01T00:00:00.000Z.
var FixedTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// EventOption changes an event Event builds.
type EventOption func(*eventOptions)

type eventOptions struct {
	meta          arc.Meta
	deterministic bool
}

// WithID sets meta.id.
func WithID(id string) EventOption { return func(o *eventOptions) { o.meta.ID = id } }

// WithTimestamp sets meta.timestamp.
func WithTimestamp(ts time.Time) EventOption { return func(o *eventOptions) { o.meta.Timestamp = ts } }

// WithMeta sets the event's meta; fields it leaves empty keep what other
// options set, and id and timestamp are filled as arc.NewEvent fills them.
func WithMeta(meta arc.Meta) EventOption {
	return func(o *eventOptions) {
		id, ts := o.meta.ID, o.meta.Timestamp
		o.meta = meta
		if o.meta.ID == "" {
			o.meta.ID = id
		}
		if o.meta.Timestamp.IsZero() {
			o.meta.Timestamp = ts
		}
	}
}

// Deterministic gives the event, unless WithID or WithMeta set one, the
// id "evt-<n>", n counting the events built with Deterministic under the
// same test value from 1, and the timestamp FixedTime.
func Deterministic() EventOption { return func(o *eventOptions) { o.deterministic = true } }

// counters numbers deterministic events per test value.
var counters sync.Map // T -> *counter

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

// Event returns a valid event of eventType with payload (anything
// encoding/json takes, or json.RawMessage), as arc.NewEvent builds it,
// failing t if arc.NewEvent refuses it.
func Event(t T, eventType string, payload any, opts ...EventOption) arc.Event {
	t.Helper()
	var o eventOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.deterministic {
		if o.meta.ID == "" {
			c, loaded := counters.LoadOrStore(t, &counter{})
			if cl, ok := t.(interface{ Cleanup(func()) }); ok && !loaded {
				cl.Cleanup(func() { counters.Delete(t) }) // a test's numbering ends with it
			}
			o.meta.ID = fmt.Sprintf("evt-%d", c.(*counter).next())
		}
		if o.meta.Timestamp.IsZero() {
			o.meta.Timestamp = FixedTime
		}
	}
	ev, err := arc.NewEvent(eventType, payload, o.meta)
	if err != nil {
		t.Fatalf("arcmilltest: event %q: %v", eventType, err)
	}
	return ev
}

// Message returns ev as a Watermill message (arc.ToMessage), failing t if
// it cannot.
func Message(t T, ev arc.Event) *message.Message {
	t.Helper()
	msg, err := arc.ToMessage(ev)
	if err != nil {
		t.Fatalf("arcmilltest: event %q (%s) as a message: %v", ev.Type, ev.Meta.ID, err)
	}
	return msg
}

// Option changes how a Require* helper waits.
type Option func(*options)

type options struct {
	timeout time.Duration
	topic   string
}

func newOptions(opts []Option) options {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithTimeout sets how long to wait. Defaults to DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// OnTopic makes RecordingPublisher.RequirePublished look only at messages
// published to topic.
func OnTopic(topic string) Option { return func(o *options) { o.topic = topic } }

// RequirePublished reads msgs, a channel a subscriber's Subscribe
// returned, until an Arc event of eventType arrives, and returns it. It
// acknowledges every message it reads, of that type or not (they are the
// test's), and fails t if the channel closes or nothing matching comes
// within the timeout. Subscribe before the code under test publishes:
// subscribers such as GoChannel keep nothing for absent readers.
func RequirePublished(t T, msgs <-chan *message.Message, eventType string, opts ...Option) arc.Event {
	t.Helper()
	o := newOptions(opts)
	timer := time.NewTimer(o.timeout)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				t.Fatalf("arcmilltest: the subscription closed before an event %q arrived (saw %s)",
					eventType, describe(seen))
				return arc.Event{}
			}
			msg.Ack()
			ev, err := arc.FromMessage(msg)
			if err != nil {
				seen = append(seen, fmt.Sprintf("message %s that is no Arc event", msg.UUID))
				continue
			}
			if ev.Type == eventType {
				return ev
			}
			seen = append(seen, fmt.Sprintf("%q", ev.Type))
		case <-timer.C:
			t.Fatalf("arcmilltest: no event %q within %v (saw %s)", eventType, o.timeout, describe(seen))
			return arc.Event{}
		}
	}
}

func describe(seen []string) string {
	if len(seen) == 0 {
		return "nothing"
	}
	return strings.Join(seen, ", ")
}

// Published is one message a RecordingPublisher recorded.
type Published struct {
	Topic   string
	Message *message.Message
}

// RecordingPublisher is a message.Publisher that records every message
// published through it, in order, and publishes nothing further. Safe
// for concurrent use. FailWith makes Publish fail (a broker that is down);
// a failed Publish records nothing.
type RecordingPublisher struct {
	mu        sync.Mutex
	published []Published
	changed   chan struct{} // closed and replaced at every record
	closed    bool
	err       error
}

// NewRecordingPublisher returns an empty RecordingPublisher.
func NewRecordingPublisher() *RecordingPublisher {
	return &RecordingPublisher{changed: make(chan struct{})}
}

// Publish records a copy of each message (with its context), or returns
// the error set with FailWith.
func (p *RecordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("arcmilltest: RecordingPublisher is closed")
	}
	if p.err != nil {
		return p.err
	}
	for _, m := range msgs {
		c := m.Copy()
		c.SetContext(m.Context())
		p.published = append(p.published, Published{Topic: topic, Message: c})
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// FailWith makes every later Publish return err; nil restores success.
func (p *RecordingPublisher) FailWith(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// Close makes later publishes fail; what was recorded stays readable.
func (p *RecordingPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

// Messages returns what was published so far, in order.
func (p *RecordingPublisher) Messages() []Published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Published(nil), p.published...)
}

// Events returns the Arc events published so far to topic ("" for every
// topic), in order, skipping messages that are no Arc event.
func (p *RecordingPublisher) Events(topic string) []arc.Event {
	var out []arc.Event
	for _, m := range p.Messages() {
		if topic != "" && m.Topic != topic {
			continue
		}
		if ev, err := arc.FromMessage(m.Message); err == nil {
			out = append(out, ev)
		}
	}
	return out
}

// RequirePublished waits until an Arc event of eventType has been
// published (on the topic OnTopic names, if any) and returns the first
// such event; it fails t after the timeout.
func (p *RecordingPublisher) RequirePublished(t T, eventType string, opts ...Option) arc.Event {
	t.Helper()
	o := newOptions(opts)
	timer := time.NewTimer(o.timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		for _, ev := range p.Events(o.topic) {
			if ev.Type == eventType {
				return ev
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			var seen []string
			for _, m := range p.Messages() {
				seen = append(seen, fmt.Sprintf("%s on %q", m.Message.Metadata.Get(arc.MetadataType), m.Topic))
			}
			t.Fatalf("arcmilltest: no event %q published%s within %v (published: %s)",
				eventType, onTopic(o.topic), o.timeout, describe(seen))
			return arc.Event{}
		}
	}
}

func onTopic(topic string) string {
	if topic == "" {
		return ""
	}
	return fmt.Sprintf(" to %q", topic)
}

// Queryer is what RequireOutboxed reads through: a *sql.DB, or the test's
// *sql.Tx to see rows it has not committed.
type Queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// OutboxedEvent is a pending outbox row: its destination topic and event.
type OutboxedEvent struct {
	Topic string
	Event arc.Event
}

// RequireOutboxed returns the oldest pending row of eventType in ob's
// table, read through q, and fails t if there is none or it does not hold
// an Arc event. It leaves the row as it is.
func RequireOutboxed(t T, ctx context.Context, q Queryer, ob *outbox.Outbox, eventType string) OutboxedEvent {
	t.Helper()
	rows, err := Outboxed(ctx, q, ob, eventType)
	if err != nil {
		t.Fatalf("arcmilltest: reading the outbox %s: %v", ob.Table(), err)
		return OutboxedEvent{}
	}
	if len(rows) == 0 {
		t.Fatalf("arcmilltest: no pending event %q in the outbox %s", eventType, ob.Table())
		return OutboxedEvent{}
	}
	return rows[0]
}

// pendingStatus is the outbox's status column for a row not yet relayed.
const pendingStatus = 0

// Outboxed returns the pending rows of eventType in ob's table, oldest
// first ("" for every type).
func Outboxed(ctx context.Context, q Queryer, ob *outbox.Outbox, eventType string) ([]OutboxedEvent, error) {
	ph := "?"
	if ob.Dialect() == outbox.PostgreSQL {
		ph = "$1"
	}
	query := fmt.Sprintf("SELECT event_id, topic, payload, metadata FROM %s WHERE status = %d", ob.Table(), pendingStatus)
	var args []any
	if eventType != "" {
		query += " AND event_type = " + ph
		args = append(args, outbox.ColumnText(eventType))
	}
	rs, err := q.QueryContext(ctx, query+" ORDER BY id", args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []OutboxedEvent
	for rs.Next() {
		var id, topic, metadata string
		var payload []byte
		if err := rs.Scan(&id, &topic, &payload, &metadata); err != nil {
			return nil, err
		}
		// As the relay reads it: escaped ids and base64-held meta restored.
		msg, err := outbox.MessageOfRow(id, payload, []byte(metadata))
		if err != nil {
			return nil, err
		}
		ev, err := arc.FromMessage(msg)
		if err != nil {
			return nil, fmt.Errorf("row of event %s: %w", id, err)
		}
		out = append(out, OutboxedEvent{Topic: topic, Event: ev})
	}
	return out, rs.Err()
}
