package redisstream

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
)

// ErrInvalidConfig wraps every configuration error of this package.
var ErrInvalidConfig = errors.New("redisstream: invalid configuration")

// None is the special value −1 that turns a count or duration off, where a
// field's doc says so. 0 always means the default, and any other negative
// value is invalid.
const None = -1

// Subscriber defaults, used by setDefaults and named in the field docs.
const (
	// DefaultConsumers is how many consumers a subscriber runs per topic.
	DefaultConsumers = 1
	// DefaultBatchSize is XREADGROUP's COUNT and the largest XACK.
	DefaultBatchSize = 100
	// DefaultBlockTime is XREADGROUP's BLOCK.
	DefaultBlockTime = time.Second
	// DefaultOldestID is where a new group starts: the whole stream.
	DefaultOldestID = "0"
	// DefaultClaimIdle is how long an entry stays pending on a consumer
	// before another takes it over: Arc's claimTimeoutMs.
	DefaultClaimIdle = 30 * time.Second
	// DefaultClaimInterval is how often a consumer looks for idle entries.
	DefaultClaimInterval = 5 * time.Second
	// DefaultMaxInFlight is how many messages a consumer has delivered and
	// not yet settled: 64, one at a time per partition key, so order holds
	// within a key while keys are handled concurrently (Arc's
	// processingConcurrency). 1 is Watermill's rule: one at a time.
	DefaultMaxInFlight = 64
	// DefaultMaxDeliveries is how many deliveries an entry gets before it
	// is dead-lettered: Arc's maxRetries.
	DefaultMaxDeliveries = 5
	// DefaultAckFlushInterval is the longest an ack waits in the batch
	// before its XACK is sent. Short, so a killed process re-delivers
	// little; batches still fill under load.
	DefaultAckFlushInterval = 2 * time.Millisecond
	// DefaultCloseTimeout is how long Close lets in-flight handlers finish.
	DefaultCloseTimeout = 30 * time.Second
	// DefaultCommandTimeout bounds each attempt of a command that settles
	// entries (XACK, the heartbeat's XCLAIM), which runs detached from the
	// subscription's context so that a shutdown still settles.
	DefaultCommandTimeout = 5 * time.Second

	// DefaultMaxEntryBytes is the largest entry a subscriber reads: the most
	// UTF-8 bytes an event Arc's publish accepts can take (maxPayloadBytes,
	// 1,000,000 JavaScript characters, at up to 3 bytes each), plus room for
	// the type, so nothing Arc publishes is refused.
	DefaultMaxEntryBytes = 3*DefaultMaxPayloadBytes + 64*1024

	// DefaultMaxBatchBytes is the most entry bytes one read brings into
	// the process: 8 MiB, so a batch of 100 entries of up to 80 KiB each
	// comes in one round trip, and larger ones in several.
	DefaultMaxBatchBytes = 8 << 20

	// DefaultReadErrorBackoffBase is the ceiling of the first pause after
	// a read fails: Arc's 1 s.
	DefaultReadErrorBackoffBase = time.Second
	// DefaultReadErrorBackoffMax caps the pause ceiling: Arc's 30 s.
	DefaultReadErrorBackoffMax = 30 * time.Second
	// DefaultReadErrorBackoffMin is the shortest pause after a failed read:
	// Arc's 100 ms floor under the jitter.
	DefaultReadErrorBackoffMin = 100 * time.Millisecond

	// MinClaimIdle is the shortest ClaimIdle: the heartbeat refreshes held
	// entries every ClaimIdle/3, and must be able to.
	MinClaimIdle = 30 * time.Millisecond
)

// SubscriberConfig configures a Subscriber. The zero value of each optional
// field means its default; None (−1) turns a field off where its doc says so.
type SubscriberConfig struct {
	// Client runs every command but the blocking reads. go-redis takes a
	// pool connection per command, so the blocking XREADGROUP never holds up
	// XACK or a publisher's XADD (Arc's one connection does). Required.
	Client redis.UniversalClient
	// BlockingClient runs the blocking XREADGROUP reads, so they never take
	// connections from Client's pool. Defaults to Client.
	BlockingClient redis.UniversalClient
	// ConsumerGroup is the group; the group is the service. Required.
	ConsumerGroup string
	// Consumer names this process in the group. Give a stable name to pick
	// up your own pending entries after a restart without waiting for
	// ClaimIdle. Defaults to a random short id.
	Consumer string
	// Consumers is how many consumers this subscriber runs per topic, each
	// reading and delivering on its own (named Consumer-1, Consumer-2, …).
	// Defaults to DefaultConsumers.
	Consumers int
	// Unmarshaller reads entries. An Unmarshal error never ends the
	// subscription: the entry becomes a message flagged with
	// arc.MetadataMalformed. Set Marshaller{Limits: …} to bound nesting
	// and type length otherwise than arc's defaults. Defaults to
	// Marshaller{} (Arc's layout, arc's default Limits).
	Unmarshaller wredis.Unmarshaller
	// BatchSize is XREADGROUP's COUNT and the most acks sent in one XACK.
	// Defaults to DefaultBatchSize.
	BatchSize int
	// BlockTime is XREADGROUP's BLOCK. Defaults to DefaultBlockTime.
	BlockTime time.Duration
	// OldestID is where a new group starts: "0" reads the whole stream,
	// "$" only new entries (Arc's choice). Defaults to DefaultOldestID.
	OldestID string
	// ClaimIdle is how long an entry stays pending on a consumer before
	// another takes it over (XPENDING … IDLE, then XCLAIM). Entries a
	// consumer holds (read, in flight, or handled and waiting for their
	// XACK) are kept fresh by its heartbeat every ClaimIdle/3, so only a
	// dead or stalled consumer's entries are taken. At least MinClaimIdle.
	// Defaults to DefaultClaimIdle (Arc's claimTimeoutMs).
	ClaimIdle time.Duration
	// ClaimInterval is how often a consumer looks for idle entries of
	// other consumers; None never claims. At most ClaimIdle. Defaults to
	// DefaultClaimInterval, or ClaimIdle when that is shorter.
	ClaimInterval time.Duration
	// MaxInFlight is how many messages a consumer may have delivered and
	// not yet acked or nacked. Above one, deliveries are pipelined in order
	// per partition key (wildcard.DefaultPartitionKey: meta.partitionKey,
	// else the aggregate id, else the message UUID): a message is delivered
	// only once every earlier one of its key is acked, so a Watermill
	// router, which runs each message in its own goroutine, handles one key
	// in order and keys concurrently. One delivers the next message after
	// the previous one is settled, Watermill's rule: total order per
	// consumer. A process killed mid-stream has up to MaxInFlight handled
	// entries, plus one AckFlushInterval of acks, delivered again.
	// Defaults to DefaultMaxInFlight.
	MaxInFlight int
	// DeadLetterStream, when set, receives (in Arc's dead-letter layout) the
	// entries left pending on dead consumers that Redis has delivered
	// MaxDeliveries times, instead of their being claimed again; and entries
	// deleted or trimmed while pending, which XCLAIM would silently drop.
	// Defaults to none.
	DeadLetterStream string
	// DeadLetterMaxLen caps DeadLetterStream (MAXLEN ~), with a warning as
	// it nears the cap. Defaults to no cap: a dead letter leaves only by
	// redrive or purge (Arc's dead-letter stream is uncapped too).
	DeadLetterMaxLen int64
	// DeadLetterDurability, when set, has each dead letter the subscriber
	// writes itself (MaxDeliveries reached, an entry gone while pending)
	// confirmed as PublisherConfig.Durability confirms events, before the
	// entry is acknowledged; unconfirmed, the entry stays pending and the
	// next claim pass tries again. Without it a dead letter written just
	// before the primary dies can go with it while the XACK lands on the
	// promoted replica. Use the service publisher's setting. Defaults to
	// nil: a plain XADD.
	DeadLetterDurability *Durability
	// MaxDeliveries is how many deliveries an entry of a dead consumer gets
	// before it goes to DeadLetterStream; None never dead-letters for the
	// count. Defaults to DefaultMaxDeliveries (Arc's maxRetries).
	MaxDeliveries int
	// AckFlushInterval is the longest a handled entry's ack waits to be
	// batched before its XACK is sent; acks are also sent as soon as
	// BatchSize have gathered or the consumer goes idle. A process killed
	// between a handler's Ack and the XACK has that entry delivered again.
	// None sends one XACK per ack. Defaults to DefaultAckFlushInterval.
	AckFlushInterval time.Duration
	// MaxEntryBytes is the largest entry (names and values) that is
	// delivered; a larger one is handed on flagged malformed, with an
	// excerpt, for the router to dead-letter. None: no limit. Defaults to
	// DefaultMaxEntryBytes.
	MaxEntryBytes int
	// MaxBatchBytes bounds the entry bytes (names and values) one read or
	// claim brings into the process. The batch is read on the server by a
	// script: entries come whole while their total stays within
	// MaxBatchBytes (the first always comes), an entry over MaxEntryBytes
	// comes only as an excerpt (its first 32 fields, each cut to 1 KiB), and
	// the rest of the batch stays pending to this consumer, fetched by id in
	// order as the batch is delivered. While a full batch is delivered the
	// next is read ahead, so a consumer holds at most two reads: about
	// 2 × max(MaxBatchBytes, MaxEntryBytes) of entries (16 MiB by default),
	// plus the MaxInFlight messages its handlers hold. A wait on an idle
	// stream (XREADGROUP BLOCK, which scripts cannot run) takes the one
	// entry that ends it whole. None, together with MaxEntryBytes None,
	// reads with plain XREADGROUP COUNT BatchSize, bounded only in count.
	// Defaults to DefaultMaxBatchBytes.
	MaxBatchBytes int
	// NackResendSleep is the pause before a nacked message is sent again.
	// Defaults to no pause.
	NackResendSleep time.Duration
	// CloseTimeout is how long Close lets in-flight handlers finish with
	// their context live. After it their contexts are cancelled with
	// ErrClosed as the cause, unsettled entries stay pending for the group,
	// and Close returns ErrCloseTimeout; None cancels them at once.
	// Defaults to DefaultCloseTimeout.
	CloseTimeout time.Duration
	// CommandTimeout bounds each attempt of the commands that settle entries
	// (XACK, heartbeat XCLAIM) and write dead letters. Defaults to
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// ReadErrorBackoff paces a consumer's read loop while Redis fails (a
	// read, a claim's recovery, an XACK before a read, or recreating the
	// group): exponential backoff with full jitter, as Arc does, so a fleet
	// of consumers neither spins nor comes back in step. Defaults to
	// Arc's: DefaultReadErrorBackoffBase, DefaultReadErrorBackoffMax and
	// DefaultReadErrorBackoffMin.
	ReadErrorBackoff ReadErrorBackoff
	// CloseClient closes Client (and BlockingClient) on Close. Watermill's
	// subscriber always does; here the client stays the caller's unless this
	// is set.
	CloseClient bool
	// Logger receives the subscriber's logs, with Watermill's field names.
	// Defaults to no logging.
	Logger watermill.LoggerAdapter
	// Now is the clock, for tests. Defaults to time.Now.
	Now func() time.Time
}

// ReadErrorBackoff is the pacing of a consumer's read loop after Redis
// fails. The nth failure in a row (n from 0) pauses for a time drawn
// uniformly from [0, min(Max, Base·2ⁿ)] ("full jitter"), and never less
// than Min, so the loop never spins; the first successful read starts over
// at Base. The pause ends at once when the subscription closes. Zero
// fields take their defaults; negative ones are invalid.
type ReadErrorBackoff struct {
	// Base is the ceiling of the first pause; each failure in a row
	// doubles it, up to Max. Defaults to DefaultReadErrorBackoffBase, or
	// Max when that is shorter.
	Base time.Duration
	// Max caps the ceiling, so the longest pause. At least Base and Min.
	// Defaults to DefaultReadErrorBackoffMax.
	Max time.Duration
	// Min is the shortest pause, the floor under the jitter. Defaults to
	// DefaultReadErrorBackoffMin, or Base when that is shorter.
	Min time.Duration
}

func (b *ReadErrorBackoff) setDefaults() {
	setDefault(&b.Max, DefaultReadErrorBackoffMax)
	if b.Base == 0 {
		b.Base = DefaultReadErrorBackoffBase
		if b.Max > 0 {
			b.Base = min(b.Base, b.Max)
		}
	}
	if b.Min == 0 {
		b.Min = DefaultReadErrorBackoffMin
		if b.Base > 0 {
			b.Min = min(b.Min, b.Base)
		}
	}
}

// validate reports, field by field, a pacing that cannot work, defaults
// applied: a zero pause would let the loop spin.
func (b ReadErrorBackoff) validate(bad func(field, format string, args ...any)) {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Base", b.Base}, {"Max", b.Max}, {"Min", b.Min}} {
		if f.d <= 0 {
			bad("ReadErrorBackoff."+f.name, "is %s: must be positive (0 for the default)", f.d)
		}
	}
	if b.Base > 0 && b.Max > 0 && b.Base > b.Max {
		bad("ReadErrorBackoff.Base", "(%s) is longer than Max (%s)", b.Base, b.Max)
	}
	if b.Min > 0 && b.Max > 0 && b.Min > b.Max {
		bad("ReadErrorBackoff.Min", "(%s) is longer than Max (%s)", b.Min, b.Max)
	}
}

func (c *SubscriberConfig) setDefaults() {
	if c.Consumer == "" {
		c.Consumer = watermill.NewShortUUID()
	}
	if c.BlockingClient == nil {
		c.BlockingClient = c.Client
	}
	setDefault(&c.Consumers, DefaultConsumers)
	if c.Unmarshaller == nil {
		c.Unmarshaller = Marshaller{}
	}
	setDefault(&c.BatchSize, DefaultBatchSize)
	setDefault(&c.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.MaxDeliveries, DefaultMaxDeliveries)
	setDefault(&c.MaxEntryBytes, DefaultMaxEntryBytes)
	setDefault(&c.MaxBatchBytes, DefaultMaxBatchBytes)
	setDefault(&c.BlockTime, DefaultBlockTime)
	if c.OldestID == "" {
		c.OldestID = DefaultOldestID
	}
	setDefault(&c.ClaimIdle, DefaultClaimIdle)
	if c.ClaimInterval == 0 { // a short ClaimIdle looks as often as it needs
		c.ClaimInterval = min(DefaultClaimInterval, max(c.ClaimIdle, 0))
	}
	setDefault(&c.AckFlushInterval, DefaultAckFlushInterval)
	setDefault(&c.CloseTimeout, DefaultCloseTimeout)
	setDefault(&c.CommandTimeout, DefaultCommandTimeout)
	c.ReadErrorBackoff.setDefaults()
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports a configuration that cannot work, naming the field. It
// checks the configuration as NewSubscriber uses it, defaults applied.
func (c SubscriberConfig) Validate() error {
	c.setDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: SubscriberConfig.%s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if c.Client == nil {
		bad("Client", "is required")
	}
	if c.ConsumerGroup == "" {
		bad("ConsumerGroup", "is required")
	}
	positive := map[string]int64{"Consumers": int64(c.Consumers), "BatchSize": int64(c.BatchSize),
		"MaxInFlight": int64(c.MaxInFlight), "BlockTime": int64(c.BlockTime), "ClaimIdle": int64(c.ClaimIdle),
		"CommandTimeout": int64(c.CommandTimeout)}
	for _, f := range []string{"Consumers", "BatchSize", "MaxInFlight", "BlockTime", "ClaimIdle", "CommandTimeout"} {
		if positive[f] < 0 {
			bad(f, "is %d: must be positive (0 for the default)", positive[f])
		}
	}
	orNone := map[string]int64{"ClaimInterval": int64(c.ClaimInterval), "MaxDeliveries": int64(c.MaxDeliveries),
		"AckFlushInterval": int64(c.AckFlushInterval), "CloseTimeout": int64(c.CloseTimeout),
		"MaxEntryBytes": int64(c.MaxEntryBytes), "MaxBatchBytes": int64(c.MaxBatchBytes)}
	for _, f := range []string{"ClaimInterval", "MaxDeliveries", "AckFlushInterval", "CloseTimeout", "MaxEntryBytes",
		"MaxBatchBytes"} {
		if orNone[f] < 0 && orNone[f] != None {
			bad(f, "is %d: must be positive, 0 for the default or None (-1)", orNone[f])
		}
	}
	if err := limitsOf(c.Unmarshaller).Validate(); err != nil {
		bad("Unmarshaller", "has invalid Limits: %v", err)
	}
	if d := c.DeadLetterDurability; d != nil && (d.Replicas < 0 || d.Timeout < 0 || d.Replicas == 0 && !d.Fsync) {
		bad("DeadLetterDurability", "asks for nothing or for negative values: %+v", *d)
	}
	if c.DeadLetterMaxLen < 0 {
		bad("DeadLetterMaxLen", "is %d: must not be negative (0 for no cap)", c.DeadLetterMaxLen)
	}
	if c.NackResendSleep < 0 {
		bad("NackResendSleep", "is %s: must not be negative", c.NackResendSleep)
	}
	if c.ClaimIdle > 0 && c.ClaimIdle < MinClaimIdle {
		bad("ClaimIdle", "is %s: below MinClaimIdle (%s) the heartbeat cannot keep held entries fresh", c.ClaimIdle, MinClaimIdle)
	}
	if c.ClaimInterval > c.ClaimIdle {
		bad("ClaimInterval", "(%s) is longer than ClaimIdle (%s): a dead consumer's entries would wait longer than ClaimIdle says",
			c.ClaimInterval, c.ClaimIdle)
	}
	if c.AckFlushInterval > 0 && c.AckFlushInterval >= c.ClaimIdle/3 {
		bad("AckFlushInterval", "(%s) must be shorter than a third of ClaimIdle (%s)", c.AckFlushInterval, c.ClaimIdle)
	}
	c.ReadErrorBackoff.validate(bad)
	if c.OldestID != "0" && c.OldestID != "$" {
		if _, _, err := parseID(c.OldestID); err != nil {
			bad("OldestID", "is %q: want \"0\", \"$\" or an entry id", c.OldestID)
		}
	}
	return errors.Join(errs...)
}

// bounded reports whether reads go through the bounded read script: unless
// both byte bounds are turned off.
func (c SubscriberConfig) bounded() bool {
	return c.MaxEntryBytes != None || c.MaxBatchBytes != None
}
