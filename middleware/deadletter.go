package middleware

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Metadata keys of a dead letter, for Watermill-native readers. The payload
// holds the same facts as a DeadLetteredEvent.
const (
	MetadataDLQReason        = "dlq_reason"
	MetadataDLQError         = "dlq_error"
	MetadataDLQErrorType     = "dlq_error_type"
	MetadataDLQAttempts      = "dlq_attempts"
	MetadataDLQFirstFailedAt = "dlq_first_failed_at"
	MetadataDLQLastFailedAt  = "dlq_last_failed_at"
	MetadataDLQHandler       = "dlq_handler"
	MetadataDLQSourceTopic   = "dlq_source_topic"
	MetadataDLQPattern       = "dlq_pattern"
	MetadataDLQConsumerGroup = "dlq_consumer_group"
	MetadataDLQOriginalID    = "dlq_original_id"
	MetadataDLQHost          = "dlq_host"
	// MetadataOriginalID is where a subscriber may put the transport's id of
	// a message (stream entry id, offset) for dead letters to name it.
	MetadataOriginalID = "arcmill_original_id"
)

// DefaultPublishTimeout is DeadLetterConfig.PublishTimeout's default.
const DefaultPublishTimeout = 30 * time.Second

// DefaultMaxRawBytes is DeadLetterConfig.MaxRawBytes' default: Arc's
// maxPayloadBytes (1,000,000), so a raw message a reader accepted whole is
// kept whole.
const DefaultMaxRawBytes = 1_000_000

// NoMaxRawBytes, as DeadLetterConfig.MaxRawBytes, keeps raw payloads whole
// however large.
const NoMaxRawBytes = -1

// DefaultDelays returns DelayedRetry.Delays' default: 10 s, 20 s, 30 s
// (NServiceBus's defaults). A function, so that no caller can change it.
func DefaultDelays() []time.Duration {
	return []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}
}

// DeadLetterConfig configures DeadLetter.
type DeadLetterConfig struct {
	// Publisher receives dead letters. Required.
	Publisher message.Publisher
	// Topic receives dead letters. Required.
	Topic string
	// Delayed, when set, adds NServiceBus's second tier: once the immediate
	// retries are spent, the message goes back to the transport and returns
	// after a delay, without holding up the messages behind it. Defaults to
	// nil: no delayed tier.
	Delayed *DelayedRetry
	// ConsumerGroup is named in dead letters. Defaults to "".
	ConsumerGroup string
	// IncludeStack puts stack traces (of panics, and of errors that format
	// one with %+v) in dead letters; stacks leak internals. Defaults to
	// false.
	IncludeStack bool
	// MaxRawBytes bounds the payload bytes a dead letter carries in Raw (a
	// malformed message, or a fallback envelope); past it Raw holds the
	// first MaxRawBytes bytes, Truncated and the full Size, so a hostile
	// entry cannot make a dead letter larger than the limit.
	// NoMaxRawBytes keeps every byte. Defaults to DefaultMaxRawBytes.
	MaxRawBytes int
	// OnDeadLetter is called after a dead letter is stored. Defaults to nil.
	OnDeadLetter func(DeadLetteredEvent)
	// PublishTimeout bounds each dead-letter and delayed-retry publish, which
	// does not end with the message's context. Under a Guard it bounds the
	// claim, the look-up of a taken-over claim (DeadLetterFinder) and the
	// publish together, so that all three end within GuardLease (longer
	// than PublishTimeout) and no second delivery publishes while the
	// first may still do so. Defaults to DefaultPublishTimeout.
	PublishTimeout time.Duration
	// TransportError reports a final failure that is a transport's or a
	// dependency's outage, not the event's fault: such a message is never
	// dead-lettered nor sent to the delayed tier, but nacked after a wait
	// (OutageBackoff), so that it comes back once the outage is over,
	// without a hot loop meanwhile. Defaults to IsTransportError.
	TransportError func(error) bool
	// OutageBackoff is the wait before nacking a message after a transport
	// failure, or after its dead letter could not be published; it doubles
	// per consecutive such nack of the same message up to
	// OutageMaxBackoff, with up to 10 % jitter. Defaults to
	// DefaultOutageBackoff.
	OutageBackoff time.Duration
	// OutageMaxBackoff caps the doubled wait; at least OutageBackoff.
	// Defaults to max(DefaultOutageMaxBackoff, OutageBackoff).
	OutageMaxBackoff time.Duration
	// Logger receives an Error line per dead letter (with its reason), per
	// transport failure nacked and per failed publish, and a Debug line per
	// delayed retry. Defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter

	// Guard makes dead letters once-only across crashes and processes (see
	// DeadLetterGuard): without it, a consumer that dies between writing a
	// dead letter and acknowledging its message writes it again on
	// redelivery (at-least-once dead letters). It is used only with
	// ConsumerGroup set and for messages that carry a transport id
	// (MetadataOriginalID: arcmill's Redis Streams and JetStream
	// subscribers set it); other messages are dead-lettered at least once.
	// Defaults to a RedisGuard on GuardClient, else on the Publisher's
	// client when the Publisher is a RedisClienter (arcmill's redisstream
	// Publisher and DeadLetterPublisher are), else none.
	Guard DeadLetterGuard
	// GuardClient is the Redis the default Guard keeps its keys in, for a
	// Publisher that is not a RedisClienter. Defaults to nil.
	GuardClient redis.UniversalClient
	// NoGuard turns the Guard off, the default one or one set:
	// at-least-once dead letters. Defaults to false.
	NoGuard bool
	// GuardTTL is how long a written dead letter is remembered: a
	// redelivery later than that writes it again. Longer than GuardLease.
	// Defaults to DefaultGuardTTL.
	GuardTTL time.Duration
	// GuardLease is how long a claim holds off other deliveries of the
	// message: after a crash between claim and publish, the dead letter is
	// written by the first delivery after the lease. Longer than
	// PublishTimeout, which bounds the claim, look-up and publish it covers
	// (the margin is for a publish the store completes after its deadline,
	// and for the clocks of the process and the guard's store). Defaults
	// to PublishTimeout + DefaultGuardLeaseMargin.
	GuardLease time.Duration
}

// DelayedRetry is the delayed tier. The message goes back to Topic, so every
// consumer group of that topic receives it again: on a topic several groups
// (or Arc services) read, give the delayed retries a topic of their own that
// the same router also reads.
type DelayedRetry struct {
	// Publisher publishes the message back; it must honour Watermill's delay
	// metadata (components/delay), as watermill-sql's delayed Pub/Subs do.
	// Required.
	Publisher message.Publisher
	// Topic to publish back to. Defaults to the topic the message came from.
	Topic string
	// Delays holds one wait per delayed retry, each positive. Defaults to
	// DefaultDelays().
	Delays []time.Duration
}

func (c *DeadLetterConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxRawBytes == 0 {
		c.MaxRawBytes = DefaultMaxRawBytes
	}
	if c.TransportError == nil {
		c.TransportError = IsTransportError
	}
	if c.OutageBackoff == 0 {
		c.OutageBackoff = DefaultOutageBackoff
	}
	if c.OutageMaxBackoff == 0 {
		c.OutageMaxBackoff = max(DefaultOutageMaxBackoff, c.OutageBackoff)
	}
	if c.Delayed != nil {
		d := *c.Delayed // the caller's value may be shared
		if d.Delays == nil {
			d.Delays = DefaultDelays()
		}
		c.Delayed = &d
	}
	c.setGuardDefaults()
}

// Validate applies the defaults to a copy of c and reports, field by field,
// a value that cannot work. Every error wraps ErrInvalidConfig.
func (c DeadLetterConfig) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *DeadLetterConfig) validate() error {
	switch {
	case c.Publisher == nil:
		return fmt.Errorf("%w: DeadLetterConfig.Publisher is required", ErrInvalidConfig)
	case c.Topic == "":
		return fmt.Errorf("%w: DeadLetterConfig.Topic is required", ErrInvalidConfig)
	case c.PublishTimeout < 0:
		return fmt.Errorf("%w: DeadLetterConfig.PublishTimeout must not be negative, got %v",
			ErrInvalidConfig, c.PublishTimeout)
	case c.MaxRawBytes < 0 && c.MaxRawBytes != NoMaxRawBytes:
		return fmt.Errorf("%w: DeadLetterConfig.MaxRawBytes must be positive, 0 (default) or NoMaxRawBytes, got %d",
			ErrInvalidConfig, c.MaxRawBytes)
	case c.OutageBackoff < 0:
		return fmt.Errorf("%w: DeadLetterConfig.OutageBackoff must be positive or 0 (default), got %v",
			ErrInvalidConfig, c.OutageBackoff)
	case c.OutageMaxBackoff < c.OutageBackoff:
		return fmt.Errorf("%w: DeadLetterConfig.OutageMaxBackoff (%v) must be at least OutageBackoff (%v)",
			ErrInvalidConfig, c.OutageMaxBackoff, c.OutageBackoff)
	}
	if err := c.validateGuard(); err != nil {
		return err
	}
	if d := c.Delayed; d != nil {
		if d.Publisher == nil {
			return fmt.Errorf("%w: DelayedRetry.Publisher is required", ErrInvalidConfig)
		}
		for i, delay := range d.Delays {
			if delay <= 0 {
				return fmt.Errorf("%w: DelayedRetry.Delays[%d] must be positive, got %v", ErrInvalidConfig, i, delay)
			}
		}
	}
	return nil
}

// DeadLetter is the outermost recovery middleware: a handler error that
// reaches it is final (Retry, inside it, has given up), so it publishes a
// DeadLetteredEvent to the dead-letter topic and acknowledges the message.
// If that publish fails the message is nacked: nothing is lost. An error
// caused by shutdown (wrapping ErrShutdown, a context IsShutdown, or the
// message's context ending) is nacked, never dead-lettered. With Delayed set, an exhausted (not
// unrecoverable) failure first goes back to the transport for each delay.
//
// A message that is itself a dead letter is never dead-lettered again: its
// failure is returned (nacked), so no amplification loop can start.
//
// A final error that is a transport's outage (DeadLetterConfig.
// TransportError) is never dead-lettered, and never counts toward the
// delayed tier: the message is nacked after a growing wait, and comes back
// when the outage is over. A dead letter that cannot be published is
// nacked after the same wait.
type DeadLetter struct {
	cfg                    DeadLetterConfig
	host                   string
	deadLettered, requeued atomic.Uint64
	publishFailures        atomic.Uint64
	ignoredDeadLetters     atomic.Uint64
	transportFailures      atomic.Uint64
	repeatsSkipped         atomic.Uint64
	guardBusy              atomic.Uint64
	guardFailures          atomic.Uint64
	// outages counts, per message and handler, the consecutive nacks after
	// a transport failure or a failed publish, so that the wait grows
	// across deliveries (a nack returns the message at once).
	outages *memory[int]
	// testHook, when set by a test, is called at each stage of
	// publishOnce (to crash the process there).
	testHook func(guardStage)
}

// NewDeadLetter returns a DeadLetter.
func NewDeadLetter(cfg DeadLetterConfig) (*DeadLetter, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	host, _ := os.Hostname() // best effort: an empty host is left out of dead letters
	d := &DeadLetter{cfg: cfg, host: host, outages: newMemory[int](10000)}
	if !d.Guarded() {
		// Info where a consumer group (a transport that redelivers) is
		// named but no guard store is at hand; Debug otherwise, as for an
		// in-process Pub/Sub, where it is noise.
		log := cfg.Logger.Debug
		if cfg.ConsumerGroup != "" && !cfg.NoGuard {
			log = cfg.Logger.Info
		}
		log("Dead letters are at least once: a consumer killed between writing one and acknowledging "+
			"its message writes it again; set DeadLetterConfig.ConsumerGroup and a Guard or GuardClient for once-only",
			watermill.LogFields{"guard": cfg.Guard != nil, "consumer_group": cfg.ConsumerGroup})
	}
	return d, nil
}

// DeadLetterStats counts what DeadLetter did.
type DeadLetterStats struct {
	DeadLettered, DelayedRetries, PublishFailures uint64
	// IgnoredDeadLetters counts dead letters that reached Malformed (a
	// router reading its own dead-letter topic) and were acknowledged.
	IgnoredDeadLetters uint64
	// TransportFailures counts messages nacked, not dead-lettered, because
	// their final error was a transport's outage.
	TransportFailures uint64
	// RepeatsSkipped counts messages acknowledged without a dead letter
	// because the guard found theirs written by an earlier delivery.
	RepeatsSkipped uint64
	// GuardBusy counts messages nacked because another delivery held the
	// claim on their dead letter; GuardFailures, guard calls that failed.
	GuardBusy, GuardFailures uint64
}

// Stats returns the counters so far.
func (d *DeadLetter) Stats() DeadLetterStats {
	return DeadLetterStats{DeadLettered: d.deadLettered.Load(), DelayedRetries: d.requeued.Load(),
		PublishFailures: d.publishFailures.Load(), IgnoredDeadLetters: d.ignoredDeadLetters.Load(),
		TransportFailures: d.transportFailures.Load(), RepeatsSkipped: d.repeatsSkipped.Load(),
		GuardBusy: d.guardBusy.Load(), GuardFailures: d.guardFailures.Load()}
}

// Middleware is the message.HandlerMiddleware.
func (d *DeadLetter) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		out, err := h(msg)
		if err == nil {
			if d.outages.size.Load() > 0 { // the key costs an allocation: only when something is remembered
				d.outages.forget(memoryKeyIn(ctx, msg.UUID))
			}
			return out, nil
		}
		key := memoryKeyIn(ctx, msg.UUID)
		if errors.Is(err, ErrShutdown) || IsShutdown(ctx) {
			return nil, err // a shutdown is no failure: nack, for the next delivery
		}
		var re *RetryError
		if ctx.Err() != nil && !errors.As(err, &re) {
			return nil, err // no Retry inside: a failure as the context ends is a shutdown's
		}
		if !(re != nil && re.Unrecoverable) && d.cfg.TransportError(err) {
			// The event is not at fault: never a dead letter, never a delayed
			// retry. Nack after a wait, so an outage is no hot loop.
			d.transportFailures.Add(1)
			d.cfg.Logger.Error("Transport failure; nacking the message, not dead-lettering it", err,
				watermill.LogFields{"message_uuid": msg.UUID})
			d.waitOutage(ctx, key)
			return nil, err
		}
		if msg.Metadata.Get(MetadataDLQReason) != "" {
			d.cfg.Logger.Error("Handling a dead letter failed; not dead-lettering it again", err,
				watermill.LogFields{"message_uuid": msg.UUID})
			return nil, err
		}
		dl := d.envelope(ctx, msg, err)
		if d.cfg.Delayed != nil && dl.Reason == ReasonRetryExhausted {
			n, _ := strconv.Atoi(msg.Metadata.Get(MetadataDelayedRetries))
			if n < len(d.cfg.Delayed.Delays) {
				if perr := d.requeue(msg, dl, n); perr != nil {
					d.waitOutage(ctx, key)
					return nil, errors.Join(err, fmt.Errorf("delayed retry not published: %w", perr))
				}
				d.outages.forget(key)
				return nil, nil
			}
		}
		if perr := d.publishOnce(msg, dl, dl.HandlerName); perr != nil {
			d.waitOutage(ctx, key)
			return nil, errors.Join(err, fmt.Errorf("dead letter not published: %w", perr))
		}
		noteDeadLettered(ctx, dl.Reason, dl.Error.Message) // a Sequencer outside parks the key
		d.outages.forget(key)
		return nil, nil
	}
}

// waitOutage waits before a nack that follows an outage (of a dependency,
// or of the dead-letter publisher), longer for each consecutive one of the
// same message, so that the redelivery a nack causes at once is no hot
// loop. It returns early when ctx ends.
func (d *DeadLetter) waitOutage(ctx context.Context, key string) {
	n, _ := d.outages.get(key)
	n++
	d.outages.put(key, n)
	sleepCtx(ctx, outageDelay(d.cfg.OutageBackoff, d.cfg.OutageMaxBackoff, DefaultJitter, n))
}

// Malformed dead-letters a message that is not an Arc event, with reason
// "malformed" and the raw message. Its signature fits
// wildcard.Config.OnMalformed.
//
// A dead letter is not an event either (a router reading its own
// dead-letter topic, as Arc's single stream invites): it is acknowledged and
// counted, never dead-lettered again, so no amplification loop can start.
func (d *DeadLetter) Malformed(msg *message.Message, err error) error {
	if msg.Metadata.Get(MetadataDLQReason) != "" {
		d.ignoredDeadLetters.Add(1)
		d.cfg.Logger.Debug("A dead letter reached the router; acknowledged", watermill.LogFields{"message_uuid": msg.UUID})
		return nil
	}
	dl := d.envelope(msg.Context(), msg, err)
	key := memoryKey(msg)
	if perr := d.publishOnce(msg, dl, ""); perr != nil {
		d.waitOutage(msg.Context(), key)
		return errors.Join(err, fmt.Errorf("dead letter not published: %w", perr))
	}
	d.outages.forget(key)
	return nil
}

// envelope gathers every fact about the failure.
func (d *DeadLetter) envelope(ctx context.Context, msg *message.Message, err error) DeadLetteredEvent {
	now := time.Now().UTC()
	dl := DeadLetteredEvent{Attempts: 1, FirstFailedAt: now, LastFailedAt: now, Host: d.host,
		ConsumerGroup: d.cfg.ConsumerGroup, OriginalID: msg.Metadata.Get(MetadataOriginalID)}
	var re *RetryError
	if errors.As(err, &re) {
		dl.Attempts, dl.FirstFailedAt, dl.LastFailedAt = re.Attempts, re.FirstFailedAt.UTC(), re.LastFailedAt.UTC()
	}
	switch {
	case errors.Is(err, ErrValidation):
		dl.Reason = ReasonValidationFailed
	case errors.Is(err, arc.ErrMalformedEvent):
		dl.Reason = ReasonMalformed
	case re != nil && re.Unrecoverable || errors.Is(err, arc.ErrUnrecoverable):
		dl.Reason = ReasonUnrecoverable
	default:
		dl.Reason = ReasonRetryExhausted
	}
	if info, ok := wildcard.InfoFromContext(ctx); ok {
		dl.Event, dl.HandlerName, dl.Pattern, dl.SourceTopic = info.Event, info.Handler, info.Pattern, info.Topic
		dl.target = info.Handler
	} else {
		dl.HandlerName = message.HandlerNameFromCtx(ctx)
		dl.SourceTopic = message.SubscribeTopicFromCtx(ctx)
		if ev, derr := arc.FromMessage(msg); derr == nil {
			dl.Event = ev
		}
	}
	if dl.Event.Type == "" { // not an event: Arc's placeholder, and the raw message
		dl.Event = PlaceholderEvent(placeholderID(msg), now)
		dl.Raw = newRawExcerpt(msg, d.cfg.MaxRawBytes)
	}
	dl.Error = d.errorInfo(err)
	dl.ErrorType = ErrorType(err)
	return dl
}

// errorInfo is Arc's {message, code, stack} of the last handler error: the
// error Retry gave up on, without Retry's wrapping; a panic as "panic: v"
// (Watermill's Recoverer or the wildcard router's), its stack only with
// IncludeStack.
func (d *DeadLetter) errorInfo(err error) ErrorInfo {
	var re *RetryError
	if errors.As(err, &re) {
		err = re.Err
	}
	info := ErrorInfo{Message: err.Error()}
	var p wmiddleware.RecoveredPanicError
	var wp *wildcard.PanicError
	isPanic := errors.As(err, &p)
	if isPanic {
		info.Message = fmt.Sprintf("panic: %v", p.V)
	} else if isPanic = errors.As(err, &wp); isPanic {
		info.Message = fmt.Sprintf("panic: %v", wp.Value)
		p.Stacktrace = wp.Stack
	}
	var coded interface{ Code() string }
	if errors.As(err, &coded) {
		info.Code = coded.Code()
	}
	if d.cfg.IncludeStack {
		if isPanic {
			info.Stack = p.Stacktrace
		} else if s := fmt.Sprintf("%+v", err); s != info.Message {
			info.Stack = s
		}
	}
	return info
}

// ErrorType names the Go type of the deepest error in err's chain (the
// last of a join): a low-cardinality name for a failure, which dead letters
// carry as errorType and tracing as error.type.
func ErrorType(err error) string {
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if errs := u.Unwrap(); len(errs) > 0 {
				next = errs[len(errs)-1]
			}
		}
		if next == nil {
			return reflect.TypeOf(err).String()
		}
		err = next
	}
}

// placeholderID names a message that is not an event: the event id its
// payload carries where it can be read, else the transport's id for the
// message (a stream entry id, as Arc's placeholder uses), else its UUID.
func placeholderID(msg *message.Message) string {
	if id := ReadableEventID(msg.Payload); id != "" {
		return id
	}
	if id := msg.Metadata.Get(MetadataOriginalID); id != "" {
		return id
	}
	return msg.UUID
}

// ReadableEventID returns the event id in data, when data starts with a
// JSON object whose meta.id is a non-empty string or a number, even if data
// is not an event arcmill can read (trailing garbage, a bad payload);
// else "". Dead letters name unreadable events by it.
func ReadableEventID(data []byte) string {
	var probe struct {
		Meta struct {
			ID json.RawMessage `json:"id"`
		} `json:"meta"`
	}
	if json.NewDecoder(bytes.NewReader(data)).Decode(&probe) != nil || len(probe.Meta.ID) == 0 {
		return ""
	}
	var id string
	if json.Unmarshal(probe.Meta.ID, &id) == nil {
		return id
	}
	var n json.Number
	if json.Unmarshal(probe.Meta.ID, &n) == nil {
		return n.String()
	}
	return ""
}

// encode writes the envelope. Dead-lettering must always succeed, or the
// message comes back forever: when the event cannot be written (MarshalArc
// fails), or the envelope is more than encoding/json can read back (nested
// past its 10,000 levels, as a deep event read with arc.NoLimit would be),
// it writes a fallback: Arc's placeholder event, the message's raw bytes
// (bounded by MaxRawBytes) and, in EncodeError, why.
func (d *DeadLetter) encode(msg *message.Message, dl *DeadLetteredEvent) []byte {
	payload, err := dl.MarshalArc() // JSON.stringify's bytes; json.Marshal would escape <, > and &
	if err == nil && json.Valid(payload) {
		return payload
	}
	why := "the envelope is not JSON encoding/json reads (nested too deeply)"
	if err != nil {
		why = err.Error()
	}
	dl.EncodeError = "event not written: " + why
	dl.Event = PlaceholderEvent(placeholderID(msg), dl.LastFailedAt)
	dl.Raw = newRawExcerpt(msg, d.cfg.MaxRawBytes)
	payload, err = dl.MarshalArc()
	if err != nil { // cannot happen: the placeholder and strings always encode
		panic(fmt.Sprintf("middleware: fallback dead letter not encodable: %v", err))
	}
	return payload
}

// publish stores the dead letter: payload the envelope, metadata the same
// facts, plus the original event's correlation id and its id as causation.
// It has PublishTimeout of its own; a guarded write uses publishUnder.
func (d *DeadLetter) publish(msg *message.Message, dl DeadLetteredEvent) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
	defer cancel()
	return d.publishUnder(ctx, msg, dl)
}

// publishUnder is publish bounded by ctx (the dead letter's message
// context): a guarded write passes its claim's, so that the publish cannot
// outlive the claim's lease.
func (d *DeadLetter) publishUnder(ctx context.Context, msg *message.Message, dl DeadLetteredEvent) error {
	payload := d.encode(msg, &dl)
	out := message.NewMessage(watermill.NewUUID(), payload)
	corr := dl.Event.Meta.CorrelationID
	if corr == "" {
		corr = dl.Event.Meta.ID
	}
	out.Metadata = message.Metadata{
		MetadataDLQReason: dl.Reason, MetadataDLQError: dl.Error.Message, MetadataDLQErrorType: dl.ErrorType,
		MetadataDLQAttempts: strconv.Itoa(dl.Attempts), MetadataDLQFirstFailedAt: arc.FormatTimestamp(dl.FirstFailedAt),
		MetadataDLQLastFailedAt: arc.FormatTimestamp(dl.LastFailedAt), MetadataDLQHandler: dl.HandlerName,
		MetadataDLQSourceTopic: dl.SourceTopic, MetadataDLQPattern: dl.Pattern, MetadataDLQConsumerGroup: dl.ConsumerGroup,
		MetadataDLQOriginalID: dl.OriginalID, MetadataDLQHost: dl.Host,
		arc.MetadataCorrelationID: corr, arc.MetadataCausationID: dl.Event.Meta.ID,
		// Watermill's PoisonQueue keys, for tools that read those.
		wmiddleware.ReasonForPoisonedKey: dl.Error.Message, wmiddleware.PoisonedTopicKey: dl.SourceTopic,
		wmiddleware.PoisonedHandlerKey: dl.HandlerName,
	}
	for k, v := range out.Metadata {
		if v == "" {
			delete(out.Metadata, k)
		}
	}
	out.SetContext(ctx)
	if err := d.cfg.Publisher.Publish(d.cfg.Topic, out); err != nil {
		d.publishFailures.Add(1)
		d.cfg.Logger.Error("Dead letter not published; nacking", err, watermill.LogFields{"message_uuid": msg.UUID})
		return err
	}
	d.deadLettered.Add(1)
	// Error, not Info: a dead letter is an event the service gave up on,
	// which someone must look at (Watermill's logger has no Warn level).
	d.cfg.Logger.Error("Message dead-lettered", errors.New(dl.Error.Message), watermill.LogFields{
		"message_uuid": msg.UUID, "reason": dl.Reason, "handler_name": dl.HandlerName, "attempts": dl.Attempts,
		"event_type": dl.Event.Type, "event_id": dl.Event.Meta.ID, "source_topic": dl.SourceTopic,
		"dead_letter_topic": d.cfg.Topic, "error_type": dl.ErrorType,
	})
	if d.cfg.OnDeadLetter != nil {
		d.cfg.OnDeadLetter(dl)
	}
	return nil
}

// requeue publishes the message back with its history and a delay; n
// delayed retries have happened so far.
func (d *DeadLetter) requeue(msg *message.Message, dl DeadLetteredEvent, n int) error {
	out := msg.Copy()
	out.Metadata.Set(MetadataAttempts, strconv.Itoa(dl.Attempts))
	out.Metadata.Set(MetadataFirstFailedAt, dl.FirstFailedAt.Format(time.RFC3339Nano))
	out.Metadata.Set(MetadataDelayedRetries, strconv.Itoa(n+1))
	// Only the wildcard router's handlers can be targeted; a plain
	// Watermill handler gets its message back as it is.
	if dl.target != "" {
		out.Metadata.Set(wildcard.MetadataTargetHandler, dl.target)
	}
	delay.Message(out, delay.For(d.cfg.Delayed.Delays[n]))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), d.cfg.PublishTimeout)
	defer cancel()
	out.SetContext(pctx)
	topic := d.cfg.Delayed.Topic
	if topic == "" {
		topic = dl.SourceTopic
	}
	if topic == "" {
		return errors.New("no topic to publish the delayed retry to: set DelayedRetry.Topic")
	}
	if err := d.cfg.Delayed.Publisher.Publish(topic, out); err != nil {
		d.publishFailures.Add(1)
		return err
	}
	d.requeued.Add(1)
	d.cfg.Logger.Debug("Message sent back for a delayed retry", watermill.LogFields{
		"message_uuid": msg.UUID, "handler_name": dl.HandlerName, "delayed_retry": n + 1, "delay": d.cfg.Delayed.Delays[n].String(),
	})
	return nil
}

// NewRawMessage keeps a message as it arrived, for DeadLetteredEvent.Raw;
// a payload that is not UTF-8 text is kept in base64.
func NewRawMessage(msg *message.Message) *RawMessage { return newRawExcerpt(msg, NoMaxRawBytes) }

// newRawExcerpt is NewRawMessage keeping at most maxBytes payload bytes
// (NoMaxRawBytes: all); a cut payload is marked Truncated with its Size.
func newRawExcerpt(msg *message.Message, maxBytes int) *RawMessage {
	p := msg.Payload
	raw := &RawMessage{UUID: msg.UUID, Metadata: msg.Metadata}
	if maxBytes >= 0 && len(p) > maxBytes {
		raw.Truncated, raw.Size = true, len(p)
		p = p[:maxBytes]
	}
	if utf8.Valid(p) {
		raw.Payload = string(p)
	} else {
		raw.Payload, raw.Encoding = base64.StdEncoding.EncodeToString(p), "base64"
	}
	return raw
}

// PlaceholderEvent is Arc's stand-in for an event that cannot be read: type
// "<unknown>", a null payload, meta.id the transport's id ("<unknown>" when
// there is none), timestamp at.
func PlaceholderEvent(id string, at time.Time) arc.Event {
	return arc.Event{Type: "<unknown>", Payload: json.RawMessage("null"),
		Meta: arc.Meta{ID: fallback(id, "<unknown>"), Timestamp: at.UTC().Truncate(time.Millisecond)}}
}

func fallback(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
