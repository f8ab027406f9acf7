package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/ctxsleep"
	"github.com/arcmill/arcmill/middleware"
)

// ErrClosed is returned by Subscribe and Publish after Close.
var ErrClosed = errors.New("redisstream: closed")

// MetadataEntryID holds the stream entry id of a received message; dead
// letters name it (it is middleware.MetadataOriginalID).
const MetadataEntryID = "arcmill_original_id"

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Client runs every command. go-redis takes a pool connection per
	// command, so the blocking XREADGROUP never holds up XACK or a
	// publisher's XADD (Arc's weakness 9). Required.
	Client redis.UniversalClient
	// BlockingClient, when set, runs the blocking XREADGROUP reads, so
	// they never take connections from Client's pool; default Client.
	BlockingClient redis.UniversalClient
	// ConsumerGroup is the group; required (the group is the service).
	ConsumerGroup string
	// Consumer names this process in the group; default a random short id.
	// Give a stable name to pick up your own pending entries after a restart
	// without waiting for ClaimIdle.
	Consumer string
	// Consumers is how many consumers this subscriber runs per topic, each
	// reading and delivering on its own (names Consumer-1, Consumer-2, …).
	// Default 1.
	Consumers int
	// Unmarshaller reads entries; default Marshaller (Arc's layout). An
	// Unmarshal error never ends the subscription: the entry becomes a
	// message flagged with arc.MetadataMalformed.
	Unmarshaller wredis.Unmarshaller
	// BatchSize is XREADGROUP's COUNT and the most acks sent in one XACK.
	// Default 100.
	BatchSize int
	// BlockTime is XREADGROUP's BLOCK. Default 1 s.
	BlockTime time.Duration
	// OldestID is where a new group starts: "0" (default) reads the whole
	// stream, "$" only new entries (Arc's choice).
	OldestID string
	// ClaimIdle is how long an entry stays pending on a consumer before
	// another takes it over with XAUTOCLAIM. Default 30 s (Arc's
	// claimTimeoutMs); ClaimInterval is how often to look. Default 5 s.
	ClaimIdle, ClaimInterval time.Duration
	// MaxInFlight is how many messages a consumer may have delivered and
	// not yet acked or nacked. Default 1: the next message after the
	// previous one is settled, Watermill's rule, and order holds. More
	// pipelines deliveries (with the wildcard router's Workers, per
	// partition key in order).
	MaxInFlight int
	// DeadLetterStream, when set, receives (in Arc's dead-letter layout) the
	// entries left pending on dead consumers that Redis has delivered
	// MaxDeliveries times (default 5, Arc's maxRetries), instead of their
	// being claimed again; and entries deleted or trimmed while pending,
	// which XCLAIM would silently drop. Its length is capped at
	// DefaultDeadLetterMaxLen.
	DeadLetterStream string
	MaxDeliveries    int
	// NackResendSleep is the pause before a nacked message is sent again.
	// Default 0.
	NackResendSleep time.Duration
	// CloseTimeout bounds how long Close waits for in-flight messages to be
	// acked or nacked; unsettled ones stay pending. Default 30 s.
	CloseTimeout time.Duration
	// CloseClient closes Client on Close (Watermill's subscriber always
	// does; here the client stays the caller's unless this is set).
	CloseClient bool
	// Logger defaults to no logging.
	Logger watermill.LoggerAdapter
}

func (c *SubscriberConfig) setDefaults() {
	if c.Consumer == "" {
		c.Consumer = watermill.NewShortUUID()
	}
	if c.BlockingClient == nil {
		c.BlockingClient = c.Client
	}
	if c.Consumers == 0 {
		c.Consumers = 1
	}
	if c.Unmarshaller == nil {
		c.Unmarshaller = Marshaller{}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	if c.BlockTime == 0 {
		c.BlockTime = time.Second
	}
	if c.OldestID == "" {
		c.OldestID = "0"
	}
	if c.ClaimIdle == 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = 5 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports a configuration that cannot work.
func (c SubscriberConfig) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("redisstream: SubscriberConfig.Client is required")
	case c.ConsumerGroup == "":
		return errors.New("redisstream: SubscriberConfig.ConsumerGroup is required")
	case c.Consumers < 0 || c.BatchSize < 0 || c.MaxInFlight < 0 || c.BlockTime < 0 || c.ClaimIdle < 0 || c.ClaimInterval < 0:
		return errors.New("redisstream: counts and durations must not be negative")
	}
	return nil
}

// Subscriber reads Redis Streams through a consumer group, built for
// throughput: batched XREADGROUP and XACK, XAUTOCLAIM of entries left idle
// by dead consumers, several consumers per process on request. By default
// it delivers one message at a time per consumer (the next after the
// previous is acked or nacked), so order holds per consumer; MaxInFlight
// pipelines more. A message is acknowledged only
// after it is acked; a nacked one is sent again; on Close, reading stops
// first, in-flight messages are given CloseTimeout to settle, and whatever
// is not acked stays pending for the group (Arc acks entries read during
// shutdown without running them: weakness 2).
type Subscriber struct {
	cfg     SubscriberConfig
	host    string
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inFlight map[string]bool // topic + "\x00" + entry id: delivered here, not yet settled
}

func inFlightKey(topic, id string) string { return topic + "\x00" + id }

// busy reports whether this subscriber is handling an entry: claims and
// dead-lettering leave it alone.
func (s *Subscriber) busy(topic, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight[inFlightKey(topic, id)]
}

func (s *Subscriber) setBusy(topic, id string, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if busy {
		s.inFlight[inFlightKey(topic, id)] = true
	} else {
		delete(s.inFlight, inFlightKey(topic, id))
	}
}

// NewSubscriber returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	host, _ := os.Hostname()
	return &Subscriber{cfg: cfg, host: host, closing: make(chan struct{}), inFlight: map[string]bool{}}, nil
}

// Subscribe reads topic (the stream key) until ctx ends or Close.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1) // held until the subscription is running, so Close waits for it
	s.mu.Unlock()
	defer s.wg.Done()
	if err := s.createGroup(ctx, topic); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	// Buffered to what may be in flight anyway: the slots, not the channel,
	// bound unsettled messages (MaxInFlight 1 keeps Watermill's rule).
	out := make(chan *message.Message, s.cfg.MaxInFlight*s.cfg.Consumers-1)
	var consumers sync.WaitGroup
	for i := 1; i <= s.cfg.Consumers; i++ {
		name := s.cfg.Consumer
		if s.cfg.Consumers > 1 {
			name = fmt.Sprintf("%s-%d", s.cfg.Consumer, i)
		}
		c := &consumer{s: s, topic: topic, name: name, out: out, slots: make(chan struct{}, s.cfg.MaxInFlight),
			mine:   map[string]bool{},
			logger: s.cfg.Logger.With(watermill.LogFields{"topic": topic, "consumer": name})}
		consumers.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer consumers.Done()
			c.run(ctx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.closing:
		case <-ctx.Done():
		}
		cancel()
		// Messages still in the buffer never reached a handler: nack them
		// (their entries stay pending) so their watchers need not wait.
		done := make(chan struct{})
		go func() { consumers.Wait(); close(done) }()
		for {
			select {
			case m := <-out:
				m.Nack()
				continue
			case <-done:
			}
			break
		}
		close(out)
	}()
	return out, nil
}

func (s *Subscriber) createGroup(ctx context.Context, topic string) error {
	err := s.cfg.Client.XGroupCreateMkStream(ctx, topic, s.cfg.ConsumerGroup, s.cfg.OldestID).Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redisstream: creating group %q on %q: %w", s.cfg.ConsumerGroup, topic, err)
	}
	return nil
}

// Close stops every subscription and waits for them; idempotent.
func (s *Subscriber) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		s.wg.Wait()
		if s.cfg.CloseClient {
			_ = s.cfg.Client.Close()
			if s.cfg.BlockingClient != s.cfg.Client {
				_ = s.cfg.BlockingClient.Close()
			}
		}
	})
	return nil
}

// consumer is one consumer of one stream.
type consumer struct {
	s        *Subscriber
	topic    string
	name     string
	out      chan<- *message.Message
	logger   watermill.LoggerAdapter
	slots    chan struct{} // one per message in flight
	inFlight sync.WaitGroup
	stopped  chan struct{} // closed when a settling goroutine asks the consumer to stop

	mu   sync.Mutex
	acks []string
	mine map[string]bool // entries this consumer is handling
}

func (c *consumer) run(ctx context.Context) {
	c.stopped = make(chan struct{})
	beat := c.heartbeat()
	defer func() {
		c.inFlight.Wait() // every delivered message settled, or left pending
		beat()
		c.flush()
	}()
	cfg := c.s.cfg
	// First this consumer's own pending entries (a restart under a stable
	// name): read from 0 until none are left.
	for from := "0"; ctx.Err() == nil; {
		entries, err := c.read(ctx, from)
		if err != nil || len(entries) == 0 {
			break
		}
		if !c.deliverAll(ctx, entries) {
			return
		}
		from = entries[len(entries)-1].ID
	}
	nextClaim := time.Now()
	for ctx.Err() == nil {
		if time.Now().After(nextClaim) {
			if !c.claim(ctx) {
				return
			}
			nextClaim = time.Now().Add(cfg.ClaimInterval)
		}
		c.flush() // acks go out before blocking
		entries, err := c.read(ctx, ">")
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.Contains(err.Error(), "NOGROUP") { // the stream or group was deleted: recreate (Arc loops on it)
				if cerr := c.s.createGroup(ctx, c.topic); cerr != nil {
					c.logger.Error("Recreating the consumer group", cerr, nil)
				}
				continue
			}
			c.logger.Error("XREADGROUP failed", err, nil)
			ctxsleep.Sleep(ctx, 500*time.Millisecond)
			continue
		}
		if !c.deliverAll(ctx, entries) {
			return
		}
	}
}

// heartbeat keeps the entries this consumer is handling from looking idle:
// every ClaimIdle/3, XCLAIM … JUSTID to itself resets their idle time
// without counting a delivery, so no other process claims (or
// dead-letters) an entry a slow handler is still working on. It returns
// the function that stops it.
func (c *consumer) heartbeat() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(c.s.cfg.ClaimIdle/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			c.mu.Lock()
			ids := make([]string, 0, len(c.mine))
			for id := range c.mine {
				ids = append(ids, id)
			}
			c.mu.Unlock()
			if len(ids) == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.s.cfg.Client.XClaimJustID(ctx, &redis.XClaimArgs{Stream: c.topic, Group: c.s.cfg.ConsumerGroup,
				Consumer: c.name, Messages: ids}).Err()
			cancel()
			if err != nil {
				c.logger.Error("Refreshing in-flight entries failed", err, nil)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// read runs XREADGROUP from id (">" new entries, "0" own pending ones).
func (c *consumer) read(ctx context.Context, id string) ([]redis.XMessage, error) {
	block, client := c.s.cfg.BlockTime, c.s.cfg.BlockingClient
	if id != ">" {
		block, client = -1, c.s.cfg.Client // no BLOCK for pending entries
	}
	streams, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.s.cfg.ConsumerGroup, Consumer: c.name, Streams: []string{c.topic, id},
		Count: int64(c.s.cfg.BatchSize), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []redis.XMessage
	for _, st := range streams {
		entries = append(entries, st.Messages...)
	}
	return entries, nil
}

// claim takes over entries idle for ClaimIdle on dead consumers: with
// XPENDING IDLE, for Redis's delivery counts, then one XCLAIM. Entries at
// MaxDeliveries, and entries gone from the stream, go to DeadLetterStream.
func (c *consumer) claim(ctx context.Context) bool {
	cfg := c.s.cfg
	for round := 0; round < 10 && ctx.Err() == nil; round++ {
		pending, err := cfg.Client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.topic, Group: cfg.ConsumerGroup,
			Idle: cfg.ClaimIdle, Start: "-", End: "+", Count: int64(cfg.BatchSize)}).Result()
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("XPENDING failed", err, nil)
			}
			return ctx.Err() == nil
		}
		if len(pending) == 0 {
			return true
		}
		var ids []string
		counts := map[string]int64{}
		for _, p := range pending {
			counts[p.ID] = p.RetryCount
			if c.s.busy(c.topic, p.ID) {
				continue // one of this subscriber's handlers has it
			}
			if cfg.DeadLetterStream != "" && p.RetryCount >= int64(cfg.MaxDeliveries) {
				c.deadLetter(ctx, p.ID, p.RetryCount, fmt.Sprintf(
					"delivered %d times without being acknowledged (its consumers died or timed out)", p.RetryCount))
				continue
			}
			ids = append(ids, p.ID)
		}
		if len(ids) > 0 {
			claimed, err := cfg.Client.XClaim(ctx, &redis.XClaimArgs{Stream: c.topic, Group: cfg.ConsumerGroup,
				Consumer: c.name, MinIdle: cfg.ClaimIdle, Messages: ids}).Result()
			if err != nil {
				if ctx.Err() == nil {
					c.logger.Error("XCLAIM failed", err, nil)
				}
				return ctx.Err() == nil
			}
			got := map[string]bool{}
			for _, e := range claimed {
				got[e.ID] = true
			}
			for _, id := range ids {
				if !got[id] && c.gone(ctx, id) { // deleted or trimmed while pending: Redis dropped it from the group
					c.deadLetter(ctx, id, counts[id], "the entry was deleted or trimmed from the stream before it was processed")
				}
			}
			if !c.deliverAll(ctx, claimed) {
				return false
			}
		}
		if len(pending) < cfg.BatchSize {
			return true
		}
	}
	return ctx.Err() == nil
}

// gone reports whether an entry no longer exists in the stream.
func (c *consumer) gone(ctx context.Context, id string) bool {
	entries, err := c.s.cfg.Client.XRange(ctx, c.topic, id, id).Result()
	return err == nil && len(entries) == 0
}

// deadLetter moves an entry to DeadLetterStream in Arc's layout, then acks
// it; if the write fails, the entry stays pending for the next pass.
func (c *consumer) deadLetter(ctx context.Context, id string, deliveries int64, why string) {
	cfg := c.s.cfg
	if cfg.DeadLetterStream == "" {
		c.logger.Error("Entry lost from the stream while pending", nil, watermill.LogFields{"entry": id})
		return
	}
	// One dead letter per entry, whichever consumer or process gets here
	// first.
	guard := "arcmill:dead-lettered:" + c.topic + ":" + cfg.ConsumerGroup + ":" + id
	if won, err := cfg.Client.SetNX(ctx, guard, c.name, 10*time.Minute).Result(); err != nil || !won {
		return
	}
	now := time.Now().UTC()
	dl := middleware.DeadLetteredEvent{Error: middleware.ErrorInfo{Message: why}, Attempts: int(deliveries),
		FirstFailedAt: now, LastFailedAt: now, Reason: middleware.ReasonRetryExhausted, SourceTopic: c.topic,
		ConsumerGroup: cfg.ConsumerGroup, OriginalID: id, Host: c.s.host}
	if entries, err := cfg.Client.XRange(ctx, c.topic, id, id).Result(); err == nil && len(entries) == 1 {
		msg := c.unmarshal(entries[0])
		if ev, err := arc.FromMessage(msg); err == nil {
			dl.Event = ev
		} else {
			dl.Reason = middleware.ReasonMalformed
			dl.Raw = middleware.NewRawMessage(msg)
		}
	}
	if dl.Event.Type == "" {
		dl.Event = middleware.PlaceholderEvent(id, now)
	}
	data, err := json.Marshal(dl)
	if err != nil {
		c.logger.Error("Encoding a dead letter", err, watermill.LogFields{"entry": id})
		return
	}
	err = cfg.Client.XAdd(ctx, &redis.XAddArgs{Stream: cfg.DeadLetterStream, ID: "*", MaxLen: DefaultDeadLetterMaxLen, Approx: true,
		Values: []any{FieldType, dl.Event.Type, FieldOriginalStream, c.topic, FieldOriginalID, id,
			FieldGroup, cfg.ConsumerGroup, FieldData, string(data)}}).Err()
	if err != nil {
		cfg.Client.Del(context.WithoutCancel(ctx), guard) // let the next pass try again
		c.logger.Error("Dead letter not written; the entry stays pending", err, watermill.LogFields{"entry": id})
		return
	}
	if err := cfg.Client.XAck(ctx, c.topic, cfg.ConsumerGroup, id).Err(); err != nil {
		c.logger.Error("XACK of a dead-lettered entry failed", err, watermill.LogFields{"entry": id})
	}
	c.logger.Info("Entry moved to the dead-letter stream", watermill.LogFields{"entry": id, "deliveries": deliveries})
}

func (c *consumer) deliverAll(ctx context.Context, entries []redis.XMessage) bool {
	for _, e := range entries {
		if !c.deliver(ctx, e) {
			return false
		}
	}
	return true
}

// deliver sends one entry and has it watched until it is acked; false
// when the consumer must stop (the entry then stays pending). Entries are
// sent in order; up to MaxInFlight wait for their ack at once.
func (c *consumer) deliver(ctx context.Context, e redis.XMessage) bool {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	case <-c.stopped:
		return false
	}
	msg := c.unmarshal(e)
	m, cancel := c.prepare(ctx, msg)
	c.track(e.ID, true)
	select {
	case c.out <- m:
	case <-ctx.Done():
		cancel()
		c.track(e.ID, false)
		<-c.slots
		return false
	}
	c.inFlight.Add(1)
	go func() {
		defer c.inFlight.Done()
		defer func() { <-c.slots }()
		defer c.track(e.ID, false)
		for {
			ok, again := c.settle(ctx, m, e.ID)
			cancel()
			if !again || ctx.Err() != nil { // a nack while closing is not sent again
				if !ok || ctx.Err() != nil {
					c.stop()
				}
				return
			}
			// Nacked: send it again.
			m, cancel = c.prepare(ctx, msg)
			select {
			case c.out <- m:
			case <-ctx.Done():
				cancel()
				return
			}
		}
	}()
	return true
}

// track records whether this consumer is handling entry id.
func (c *consumer) track(id string, busy bool) {
	c.s.setBusy(c.topic, id, busy)
	c.mu.Lock()
	defer c.mu.Unlock()
	if busy {
		c.mine[id] = true
	} else {
		delete(c.mine, id)
	}
}

// prepare makes one delivery of msg, with its own context, ended once it
// is settled.
func (c *consumer) prepare(ctx context.Context, msg *message.Message) (*message.Message, context.CancelFunc) {
	m := msg.Copy()
	mctx, cancel := context.WithCancel(ctx)
	m.SetContext(mctx)
	return m, cancel
}

func (c *consumer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stopped:
	default:
		close(c.stopped)
	}
}

// settle waits for the delivered m: ok false when the consumer must stop,
// again true when it was nacked and must be sent again.
func (c *consumer) settle(ctx context.Context, m *message.Message, id string) (ok, again bool) {
	select {
	case <-m.Acked():
		c.ack(id)
		return true, false
	case <-m.Nacked():
		return ctxsleep.Sleep(ctx, c.s.cfg.NackResendSleep), true
	case <-ctx.Done():
		// Closing: the handler may still settle it.
		select {
		case <-m.Acked():
			c.ack(id)
		case <-m.Nacked():
		case <-time.After(c.s.cfg.CloseTimeout):
		}
		return false, false
	}
}

func (c *consumer) unmarshal(e redis.XMessage) *message.Message {
	msg, err := c.s.cfg.Unmarshaller.Unmarshal(e.Values)
	if err != nil || msg == nil {
		why := "unreadable entry"
		if err != nil {
			why = err.Error()
		}
		msg = message.NewMessage(watermill.NewUUID(), nil)
		msg.Metadata.Set(arc.MetadataMalformed, why)
		msg.Metadata.Set(MetadataRawFields, rawFields(e.Values))
	}
	msg.Metadata.Set(MetadataEntryID, e.ID)
	return msg
}

func (c *consumer) ack(id string) {
	c.mu.Lock()
	c.acks = append(c.acks, id)
	full := len(c.acks) >= c.s.cfg.BatchSize
	c.mu.Unlock()
	if full {
		c.flush()
	}
}

// flush sends the pending acks in one XACK. On failure they stay pending
// in Redis and come back through a claim: at least once.
func (c *consumer) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.acks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 3; attempt++ {
		if err := c.s.cfg.Client.XAck(ctx, c.topic, c.s.cfg.ConsumerGroup, c.acks...).Err(); err == nil {
			c.acks = c.acks[:0]
			return
		} else if attempt == 2 {
			c.logger.Error("XACK failed; the entries stay pending", err, watermill.LogFields{"entries": len(c.acks)})
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.acks = c.acks[:0]
}
