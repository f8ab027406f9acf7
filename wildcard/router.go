package wildcard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

var (
	// ErrNoHandlers is returned (so the message is nacked, not acked) for
	// an event that reaches a source whose handlers have all unsubscribed:
	// an event nobody processed is never acknowledged.
	ErrNoHandlers = errors.New("wildcard: no handlers left on this source")
	// ErrOutputWithoutPublisher is a handler's error when it returns
	// messages but its HandlerConfig names no Publisher.
	ErrOutputWithoutPublisher = errors.New("wildcard: handler returned messages but has no publisher")
	// ErrDuplicateHandler is returned for a handler name already used on the
	// same subscriber and topic.
	ErrDuplicateHandler = errors.New("wildcard: duplicate handler name")
	// ErrRouterClosed is returned by Handle after the message.Router closed.
	ErrRouterClosed = errors.New("wildcard: the router is closed")
)

// PanicError is a handler's error when it panicked. Its message is
// "panic: <value>", without the stack, so that logs and poison queues,
// which leave the process, do not carry the program's internals; the stack
// is in Stack, for code that chooses to show it (middleware.DeadLetter with
// IncludeStack, or Config.PanicStackInError).
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the panicking goroutine's stack (runtime/debug.Stack).
	Stack string

	withStack bool
}

func (e *PanicError) Error() string {
	if e.withStack {
		return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
	}
	return fmt.Sprintf("panic: %v", e.Value)
}

// Unwrap returns the value when it is an error (panic(err)), so errors.Is
// sees through the panic.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ErrInvalidConfig is wrapped by every error that refuses a Config or a
// HandlerConfig.
var ErrInvalidConfig = errors.New("wildcard: invalid config")

// Defaults of Config.
const (
	// DefaultWorkers is how many events of one subscription are handled at
	// once, in order per partition key: 64. 1 is Watermill's one message at
	// a time.
	DefaultWorkers = 64
	// DefaultMaxTracked bounds the partly handled events remembered.
	DefaultMaxTracked = 10000
)

// Config configures a Router. The zero value is valid: zero means the
// default, and negative values are invalid.
type Config struct {
	// Workers is how many events of one subscription are handled at once.
	// Events with the same partition key are handled in order, one at a
	// time; 1 handles one event at a time, Watermill's rule. Parallelism
	// needs a subscriber that delivers the next message before the previous
	// one is acknowledged; Watermill's Redis and SQL subscribers and
	// GoChannel do not. A KeyOrderedSubscriber (arcmill's Redis Streams
	// Subscriber) orders by key itself and is read directly, its own bound
	// (MaxInFlight) standing in for Workers, unless PartitionKey is set.
	// Defaults to DefaultWorkers.
	Workers int
	// PartitionKey returns the ordering key of a message. Defaults to
	// DefaultPartitionKey: the event's meta.partitionKey, else its aggregate
	// id, else the message UUID (no ordering).
	PartitionKey func(*message.Message) string
	// MaxTracked bounds how many partly handled events are remembered, so
	// that their redelivery runs only the handlers that failed. Past it the
	// oldest is forgotten, and its handlers all run again (still at least
	// once). Defaults to DefaultMaxTracked.
	MaxTracked int
	// ColonStarLiteral reads every ArcMode pattern of this router as
	// ArcStreamsMode: "order:*" is then the literal type "order:*", as Arc
	// 2.11–2.14's Redis Streams consumers read it, not a prefix. Set it when
	// Arc Streams consumers of those versions share this router's consumer
	// group, so that every member of the group routes alike. Defaults to
	// false: the prefix rule of Arc's Pub/Sub and of Arc ≥ 2.12's shared
	// matcher.
	ColonStarLiteral bool
	// OnMalformed handles a message that does not hold an Arc event (its
	// error wraps arc.ErrMalformedEvent and says why). A nil error
	// acknowledges the message; an error nacks it, and the transport
	// delivers it again, so return one only when something outside (a
	// router-level poison queue) takes the message then. Give it
	// middleware.DeadLetter.Malformed to dead-letter such messages with
	// their raw bytes. Defaults to nil: the message is dropped (acknowledged),
	// with an Error line naming it and why, and counted in
	// Stats.MalformedDropped; never nacked, since a nacked malformed message
	// comes back at once, for ever.
	OnMalformed func(msg *message.Message, err error) error
	// OnUnrouted receives an event that no handler of its subscription
	// matched, as Arc 2.41's onUnroutedEvent: to log it, count it by type,
	// or keep it (publish it to a parking topic). ctx is the message's
	// context, and ev the decoded event. A nil error acknowledges the
	// message; an error nacks it and the transport delivers it again, and
	// OnUnrouted with it, so return one only for a failure that passes (the
	// parking publish failed), never to refuse the event: nothing else ever
	// takes it. A panic is recovered into a PanicError, and nacks. It is not
	// called while a subscription has no handler at all: such a subscription
	// holds its message until one subscribes (see Router), it does not route
	// it. Runs under no handler's middleware. Defaults to nil: the event is
	// acknowledged (Arc's behaviour) and counted in Stats.Unmatched.
	OnUnrouted func(ctx context.Context, msg *message.Message, ev arc.Event) error
	// Limits bound what the router reads from each message (the payload's
	// nesting, the type's length): a message over them is malformed, and
	// goes to OnMalformed once instead of reaching a handler. Defaults to
	// arc's defaults (arc.DefaultMaxDepth, arc.DefaultMaxTypeBytes).
	Limits arc.Limits
	// PanicStackInError puts the stack of a handler's panic into the
	// error's message (PanicError), which reaches logs and poison queues.
	// Defaults to false: the message is "panic: <value>" and the stack is
	// only in PanicError.Stack.
	PanicStackInError bool
	// Logger receives one Info line per handler subscribed or unsubscribed,
	// and Debug lines about single messages. Defaults to the
	// message.Router's logger.
	Logger watermill.LoggerAdapter
}

func (c *Config) setDefaults(r *message.Router) {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.PartitionKey == nil {
		c.PartitionKey = DefaultPartitionKey
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = DefaultMaxTracked
	}
	if c.Logger == nil && r != nil {
		c.Logger = r.Logger()
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c.setDefaults(nil)
	return c.validate()
}

func (c *Config) validate() error {
	switch {
	case c.Workers < 0:
		return fmt.Errorf("%w: Config.Workers must not be negative, got %d", ErrInvalidConfig, c.Workers)
	case c.MaxTracked < 0:
		return fmt.Errorf("%w: Config.MaxTracked must not be negative, got %d", ErrInvalidConfig, c.MaxTracked)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: Config.Limits: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Router adds pattern subscriptions to a Watermill message.Router. For
// each (subscriber, topic) it registers one Watermill handler, however many
// patterns are subscribed there, and fans each event out in process to
// every handler with a matching pattern:
//
//   - A handler runs once per event even when several of its patterns match.
//   - Each handler has its own middleware chain and fails alone: the message
//     is acknowledged when every matched handler has succeeded; when one
//     fails it is nacked, and its redelivery runs only the handlers that have
//     not yet succeeded for that event.
//   - An event no handler matches is counted and goes to Config.OnUnrouted,
//     then is acknowledged (with no OnUnrouted, or when it returns nil). The
//     consumer group is the service: every instance of one group must
//     subscribe the same patterns.
//   - Handlers come and go at run time. Unsubscribing never acknowledges an
//     event that was not processed: a subscription left without handlers
//     pauses, holding the message it received unacknowledged until a handler
//     subscribes again (it is reused) or the router closes (the message is
//     nacked).
type Router struct {
	router *message.Router
	cfg    Config
	// defaultKey is set when Config.PartitionKey was left to its default,
	// so a KeyOrderedSubscriber's order is the router's.
	defaultKey bool

	mu      sync.Mutex
	runCtx  context.Context
	sources map[sourceKey]*source
	nextID  int
	// running is closed by Run's starter goroutine once the message.Router
	// runs and every source subscribed so far has started.
	running     chan struct{}
	runningOnce sync.Once
	// closed is closed once Run has returned, or by Close when Run never
	// started.
	closed     chan struct{}
	closedOnce sync.Once
	ran        bool // Run was called; guarded by mu
	// closing is set by Close, under mu, before it closes the
	// message.Router: a Handle that holds mu first finishes registering
	// and subscribing before the router starts closing (Watermill's
	// AddHandler must not race the close's wait for its handlers), and one
	// that comes after returns ErrRouterClosed.
	closing bool

	handled, unmatched, unroutedFailed, failed, malformed, dropped atomic.Uint64
}

type sourceKey struct {
	sub   message.Subscriber
	topic string
}

// NewRouter returns a Router that registers its subscriptions on r.
func NewRouter(r *message.Router, cfg Config) (*Router, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil message.Router", ErrInvalidConfig)
	}
	defaultKey := cfg.PartitionKey == nil
	cfg.setDefaults(r)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Router{router: r, cfg: cfg, defaultKey: defaultKey, sources: map[sourceKey]*source{},
		running: make(chan struct{}), closed: make(chan struct{})}, nil
}

// Run runs the underlying message.Router; handlers added later start under
// ctx. Prefer it to running the message.Router directly: a subscription
// added while message.Router.Run is starting up is missed by Run, and this
// Run starts it once the router runs. (Running the message.Router directly
// works otherwise; later subscriptions then run under context.Background,
// and the router's Close still stops them.)
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	r.runCtx = ctx
	r.ran = true
	r.mu.Unlock()
	defer r.markClosed()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-r.router.Running():
			r.mu.Lock()
			defer r.mu.Unlock()
			if err := r.router.RunHandlers(ctx); err != nil {
				r.cfg.Logger.Error("Starting pattern subscriptions", err, nil)
			}
			r.runningOnce.Do(func() { close(r.running) }) // a second Run must not close it again
		case <-done:
		}
	}()
	return r.router.Run(ctx)
}

// Running returns a channel closed once Run runs the message.Router and
// every subscription made so far reads its subscriber, as Watermill's
// Router.Running does: events published after it closes reach the handlers,
// even on subscribers that keep nothing for absent readers (GoChannel,
// Redis Pub/Sub). It never closes if Run is not called or fails to start.
func (r *Router) Running() <-chan struct{} { return r.running }

// Close closes the message.Router: subscriptions stop, and in-flight
// handlers get the router's CloseTimeout to finish; it returns the
// message.Router's error ("router close timeout" when they did not). It is
// idempotent and safe to call at the same time as Run and Handle; a Handle
// after it returns ErrRouterClosed. Close a router that never ran only
// with a short CloseTimeout: Watermill's Close then waits it out.
func (r *Router) Close() error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	err := r.router.Close()
	r.mu.Lock()
	ran := r.ran
	r.mu.Unlock()
	if !ran {
		r.markClosed() // no Run to return
	}
	return err
}

// Closed returns a channel closed once the router has stopped: Run has
// returned (every handler has finished or CloseTimeout has passed), or
// Close was called on a router that never ran.
func (r *Router) Closed() <-chan struct{} { return r.closed }

func (r *Router) markClosed() { r.closedOnce.Do(func() { close(r.closed) }) }

// HandlerConfig names a handler and where and what it subscribes to.
type HandlerConfig struct {
	// Name identifies the handler; unique per (Subscriber, Topic). Required.
	Name string
	// Subscriber and Topic are where events are read. Required.
	Subscriber message.Subscriber
	Topic      string
	// Patterns are the event types the handler wants (see Mode). At least one.
	Patterns []string
	// Mode says how Patterns are read. Defaults to ArcMode (ArcStreamsMode
	// under Config.ColonStarLiteral).
	Mode Mode
	// Middleware wraps this handler only; the first is the outermost, as
	// with message.Router.
	Middleware []message.HandlerMiddleware
	// Publisher and PublishTopic receive the messages a HandlerFunc returns.
	Publisher    message.Publisher
	PublishTopic string
}

// Validate reports a configuration that cannot work.
func (c HandlerConfig) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: HandlerConfig.Name is required", ErrInvalidConfig)
	case c.Subscriber == nil:
		return fmt.Errorf("%w: HandlerConfig.Subscriber is required", ErrInvalidConfig)
	case c.Topic == "":
		return fmt.Errorf("%w: HandlerConfig.Topic is required", ErrInvalidConfig)
	case len(c.Patterns) == 0:
		return fmt.Errorf("%w: HandlerConfig.Patterns needs at least one pattern", ErrInvalidConfig)
	case c.Publisher != nil && c.PublishTopic == "":
		return fmt.Errorf("%w: HandlerConfig.PublishTopic is required with a Publisher", ErrInvalidConfig)
	case c.Mode != ArcMode && c.Mode != SegmentMode && c.Mode != ArcStreamsMode:
		return fmt.Errorf("%w: HandlerConfig.Mode %v is unknown", ErrInvalidConfig, c.Mode)
	}
	return nil
}

// Unsubscribe removes a handler's subscription. It is safe to call more
// than once.
type Unsubscribe func()

// Handle subscribes an Arc-shaped handler.
func (r *Router) Handle(cfg HandlerConfig, h Handler) (Unsubscribe, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalidConfig)
	}
	return r.HandleFunc(cfg, func(msg *message.Message) ([]*message.Message, error) {
		info, _ := msg.Context().Value(infoKey{}).(*Info)
		return nil, h(msg.Context(), info.Event)
	})
}

// Subscribe is Arc's subscribe(pattern, handler): an ArcMode pattern on
// one subscriber and topic, under a generated handler name.
func (r *Router) Subscribe(sub message.Subscriber, topic, pattern string, h Handler) (Unsubscribe, error) {
	r.mu.Lock()
	r.nextID++
	name := fmt.Sprintf("%s#%d", pattern, r.nextID)
	r.mu.Unlock()
	return r.Handle(HandlerConfig{Name: name, Subscriber: sub, Topic: topic, Patterns: []string{pattern}}, h)
}

// HandleFunc subscribes a plain Watermill handler. It receives its own copy
// of the message, whose context carries Info (InfoFromContext) and whose
// metadata names the handler, pattern and topic. Messages it returns go to
// cfg.Publisher.
func (r *Router) HandleFunc(cfg HandlerConfig, h message.HandlerFunc) (Unsubscribe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalidConfig)
	}
	mode := cfg.Mode
	if mode == ArcMode && r.cfg.ColonStarLiteral {
		mode = ArcStreamsMode
	}
	e := &entry{name: cfg.Name, publisher: cfg.Publisher, publishTopic: cfg.PublishTopic}
	for _, s := range cfg.Patterns {
		p, err := ParseMode(s, mode)
		if err != nil {
			return nil, fmt.Errorf("handler %q: %w", cfg.Name, err)
		}
		e.patterns = append(e.patterns, p)
	}
	e.fn = h
	for i := len(cfg.Middleware) - 1; i >= 0; i-- {
		e.fn = cfg.Middleware[i](e.fn)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || r.router.IsClosed() {
		return nil, ErrRouterClosed
	}
	key := sourceKey{cfg.Subscriber, cfg.Topic}
	src := r.sources[key]
	if src != nil {
		if _, dup := src.handlers[cfg.Name]; dup {
			return nil, fmt.Errorf("%w: %q on topic %q", ErrDuplicateHandler, cfg.Name, cfg.Topic)
		}
	}
	fresh := src == nil
	if fresh {
		src = r.newSource(key)
	}
	// The handler is in place before a new source can receive anything,
	// and before a paused one wakes up.
	src.handlers[e.name] = e
	for _, p := range e.patterns {
		src.index.Add(p, e)
	}
	src.setCount(len(src.handlers))
	if fresh {
		if err := r.startSource(src); err != nil {
			return nil, err
		}
	}
	r.cfg.Logger.Info("Pattern handler subscribed", watermill.LogFields{
		"handler_name": e.name, "patterns": cfg.Patterns, "topic": cfg.Topic, "mode": mode.String(),
	})
	var once sync.Once
	return func() { once.Do(func() { r.unsubscribe(src, e) }) }, nil
}

// newSource makes the source of key, not yet registered.
func (r *Router) newSource(key sourceKey) *source {
	r.nextID++
	src := &source{
		r:        r,
		key:      key,
		name:     fmt.Sprintf("wildcard(%s)#%d", key.topic, r.nextID),
		index:    NewIndex[*entry](),
		handlers: map[string]*entry{},
		progress: newProgress(r.cfg.MaxTracked),
		wake:     make(chan struct{}),
		workers:  r.cfg.Workers,
		keyFunc:  r.cfg.PartitionKey,
		logger:   r.cfg.Logger,
	}
	src.buffers.New = func() any { s := make([]*entry, 0, 8); return &s }
	return src
}

// startSource registers the source's Watermill handler, and starts it if
// the router runs. Called with r.mu held.
func (r *Router) startSource(src *source) error {
	key := src.key
	src.wm = r.router.AddConsumerHandler(src.name, key.topic, src, src.dispatch)
	r.sources[key] = src
	if !r.router.IsRunning() {
		return nil // Run starts it
	}
	ctx := r.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	src.startedLate = true
	err := r.router.RunHandlers(ctx)
	if err == nil {
		err = src.startErr
	}
	if err != nil {
		// Watermill cannot unregister a handler; this one has already ended
		// (its subscription failed), and the next Handle starts a new source.
		delete(r.sources, key)
		return fmt.Errorf("wildcard: starting the subscription to %q: %w", key.topic, err)
	}
	return nil
}

func (r *Router) unsubscribe(src *source, e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(src.handlers, e.name)
	// The count first: a dispatch that finds no match must already see the
	// source empty, and pause rather than ack.
	src.setCount(len(src.handlers))
	for _, p := range e.patterns {
		src.index.Remove(p, e)
	}
	r.cfg.Logger.Info("Pattern handler unsubscribed", watermill.LogFields{"handler_name": e.name, "topic": src.key.topic})
}

// Stats counts what the router's sources did with events.
type Stats struct {
	// Handled events: every matched handler succeeded.
	Handled uint64
	// Unmatched deliveries: no handler matched; given to Config.OnUnrouted
	// and acknowledged unless it failed. A delivery again after such a
	// failure counts again.
	Unmatched uint64
	// UnroutedFailed counts the unmatched deliveries Config.OnUnrouted
	// failed (error or panic): nacked, to be delivered again.
	UnroutedFailed uint64
	// Failed deliveries: at least one handler failed; nacked.
	Failed uint64
	// Malformed messages: not an Arc event.
	Malformed uint64
	// MalformedDropped counts the malformed messages acknowledged without
	// being kept anywhere, because Config.OnMalformed is nil.
	MalformedDropped uint64
}

// Stats returns the counters so far.
func (r *Router) Stats() Stats {
	return Stats{Handled: r.handled.Load(), Unmatched: r.unmatched.Load(), UnroutedFailed: r.unroutedFailed.Load(),
		Failed: r.failed.Load(), Malformed: r.malformed.Load(), MalformedDropped: r.dropped.Load()}
}
