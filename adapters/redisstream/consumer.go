package redisstream

import (
	"context"
	"fmt"
	"github.com/google/uuid"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/ctxsleep"
	"github.com/arcmill/arcmill/wildcard"
)

// maxClaimRounds bounds one claim pass, so a long backlog of idle entries
// never starves the consumer's own reads.
const maxClaimRounds = 10

// consumer is one consumer of one stream. Its read loop (run) is the only
// goroutine that reads, claims and delivers; each delivered message has a
// settling goroutine; the acker and the heartbeat have their own.
type consumer struct {
	s       *Subscriber
	cfg     SubscriberConfig
	topic   string
	name    string
	out     chan<- *message.Message
	workCtx context.Context // handlers' contexts derive from it (see Subscribe)
	logger  watermill.LoggerAdapter
	acks    *acker
	claims  *claimer
	reader  *boundedReader // nil: plain XREADGROUP (both byte bounds off)
	backoff *readBackoff   // the read loop's (run), as is fetchDeferred

	// aheadReqs asks the read-ahead goroutine for the next batch; both
	// fields are the read loop's (run), nil until the first read ahead.
	aheadReqs chan chan readResult
	aheadDone chan struct{}

	slots    chan struct{}  // one per message in flight
	gate     *keyGate       // one message in flight per partition key; nil at MaxInFlight 1
	inFlight sync.WaitGroup // the settling goroutines
}

func newConsumer(s *Subscriber, topic, name string, out chan<- *message.Message, workCtx context.Context) *consumer {
	c := &consumer{s: s, cfg: s.cfg, topic: topic, name: name, out: out, workCtx: workCtx,
		logger: s.logger(topic, name), slots: make(chan struct{}, s.cfg.MaxInFlight),
		backoff: newReadBackoff(s.cfg.ReadErrorBackoff)}
	if s.cfg.MaxInFlight > 1 {
		c.gate = newKeyGate()
	}
	c.acks = newAcker(ackerConfig{Client: s.cfg.Client, Stream: topic, Group: s.cfg.ConsumerGroup,
		MaxBatch: s.cfg.BatchSize, Interval: s.cfg.AckFlushInterval, Timeout: s.cfg.CommandTimeout,
		Logger: c.logger, OnAcked: func(ids []string) { s.release(c, ids...) }, Flushed: &s.signals.Flushed})
	c.claims = &claimer{cfg: s.cfg, stream: topic, consumer: name, logger: c.logger, holds: s.holds,
		hold: func(ids ...string) { s.hold(c, ids...) }, release: func(ids ...string) { s.release(c, ids...) },
		deadLetters: &deadLetterer{cfg: s.cfg, stream: topic, consumer: name, host: s.host, logger: c.logger,
			signal: &s.signals.DeadLettered, w: &s.deadLetters},
		claimed: &s.signals.Claimed}
	if s.cfg.bounded() {
		c.reader = &boundedReader{client: s.cfg.Client, stream: topic, group: s.cfg.ConsumerGroup, consumer: name,
			maxEntry: s.cfg.MaxEntryBytes, budget: s.cfg.MaxBatchBytes}
		c.claims.reader = c.reader
	}
	return c
}

func createGroup(ctx context.Context, cfg SubscriberConfig, topic string) error {
	err := cfg.Client.XGroupCreateMkStream(ctx, topic, cfg.ConsumerGroup, cfg.OldestID).Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redisstream: creating group %q on %q: %w", cfg.ConsumerGroup, topic, err)
	}
	return nil
}

// run reads and delivers until ctx ends, then waits for the messages in
// flight (up to CloseTimeout, see Subscriber.drain) and flushes their acks.
func (c *consumer) run(ctx context.Context) {
	c.acks.start()
	stopBeat := c.heartbeat()
	defer func() {
		c.inFlight.Wait() // every delivered message settled, or left pending
		stopBeat()
		c.acks.close()
		c.s.release(c, c.s.heldBy(c)...) // left pending for the group
	}()
	c.s.started.Do(func() { close(c.s.running) })
	// First this consumer's own pending entries (a restart under a stable
	// name): read from 0 until none are left.
	for from := "0"; ctx.Err() == nil; {
		entries, err := c.read(ctx, from, false)
		if err != nil || len(entries) == 0 {
			break
		}
		if !c.deliverAll(ctx, entries) {
			return
		}
		from = entries[len(entries)-1].ID
	}
	nextClaim := c.cfg.Now()
	// next is the batch read ahead while the previous one is delivered, or
	// nil. Held like any read, so it is released if the consumer stops first.
	var next <-chan readResult
	// lostReply is set when a read or claim failed: it may have taken entries
	// into the group's pending list for this consumer and lost the reply.
	lostReply := false
	defer func() {
		if next != nil {
			r := <-next
			c.s.release(c, idsOf(r.entries)...)
		}
		c.stopReadAhead()
	}()
	for ctx.Err() == nil {
		// Acks go out before a claim and before blocking: a claim must never
		// see this consumer's handled entries as idle, and a quiet stream
		// must not keep acks waiting. Not before taking a batch read ahead:
		// under load the acker's own batches (BatchSize, or AckFlushInterval)
		// are sent without the read loop waiting for each XACK's reply.
		if next != nil {
			// taken below, with no claim and no blocking read this turn
		} else if err := c.acks.flush(ctx); err != nil {
			// Redis is failing (the acker logged how): read nothing more until acks go out.
			c.pause(ctx, "Reads paused until the acks are written", nil)
			continue
		}
		var entries []Entry
		var err error
		switch {
		case next != nil:
			r := <-next
			next, entries, err = nil, r.entries, r.err
		case lostReply:
			ok, rerr := c.recoverOwn(ctx)
			if !ok {
				return
			}
			if rerr != nil && strings.Contains(rerr.Error(), "NOGROUP") {
				rerr = nil // the group is gone, and its pending entries with it: the read recreates it
			}
			if rerr != nil {
				c.pause(ctx, "Recovering entries of a failed read failed", rerr)
			} else {
				c.backoff.reset()
			}
			lostReply = rerr != nil
			continue
		case c.cfg.ClaimInterval != None && !c.cfg.Now().Before(nextClaim):
			ok, failed := c.claimPass(ctx)
			if !ok {
				return
			}
			lostReply = failed && c.reader != nil
			nextClaim = c.cfg.Now().Add(c.cfg.ClaimInterval)
			continue // flush the claimed entries' acks before blocking
		default:
			entries, err = c.read(ctx, ">", true)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.Contains(err.Error(), "NOGROUP") { // the stream or group was deleted: recreate (Arc loops on it)
				if cerr := createGroup(ctx, c.cfg, c.topic); cerr != nil {
					c.pause(ctx, "Recreating the consumer group", cerr)
				}
				continue
			}
			lostReply = c.reader != nil
			c.pause(ctx, "XREADGROUP failed", err)
			continue
		}
		c.backoff.reset()
		if c.reader != nil && len(entries) == c.cfg.BatchSize {
			// A full batch: more are likely waiting. The read script costs Redis
			// more than a plain XREADGROUP, so the next batch is read while this
			// one is delivered, and the script's time is hidden behind delivery.
			next = c.readAhead(ctx)
		}
		if !c.deliverAll(ctx, entries) {
			return
		}
	}
}

// readResult is the outcome of a read ahead.
type readResult struct {
	entries []Entry
	err     error
}

// readAhead reads the next batch of new entries without blocking, on the
// consumer's read-ahead goroutine; the result arrives on the channel
// returned, always once. One long-lived goroutine, not one per batch: a new
// goroutine's stack grows (and is copied) on every go-redis reply.
func (c *consumer) readAhead(ctx context.Context) <-chan readResult {
	if c.aheadReqs == nil {
		c.aheadReqs, c.aheadDone = make(chan chan readResult), make(chan struct{})
		go func() {
			defer close(c.aheadDone)
			for out := range c.aheadReqs {
				entries, err := c.read(ctx, ">", false)
				c.decodeAhead(entries)
				out <- readResult{entries, err}
			}
		}()
	}
	out := make(chan readResult, 1)
	c.aheadReqs <- out
	return out
}

// stopReadAhead ends the read-ahead goroutine, if it runs.
func (c *consumer) stopReadAhead() {
	if c.aheadReqs != nil {
		close(c.aheadReqs)
		<-c.aheadDone
	}
}

// decodeAhead decodes the entries in Arc's layout of a batch read ahead,
// on the read-ahead goroutine, so that the read loop, which delivers one
// message after another, does not: decoding is most of its work per event.
// A decoded entry keeps its message in place of its fields, which it no
// longer needs, so the batch holds about the bytes it held before.
func (c *consumer) decodeAhead(entries []Entry) {
	for i := range entries {
		e := &entries[i]
		if e.deferred || e.msg != nil || (c.cfg.MaxEntryBytes != None && e.size() > c.cfg.MaxEntryBytes) {
			continue
		}
		if msg, ev, ok := decodeArc(c.cfg.Unmarshaller, *e); ok {
			msg.Metadata.Set(MetadataEntryID, e.ID)
			e.msg, e.event = msg, ev
			e.dropFields()
		}
	}
}

func idsOf(entries []Entry) []string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

// claimPass runs claim rounds until no idle entry is left (or
// maxClaimRounds), delivering what it claims; ok is false when the consumer
// must stop, failed true when a round failed.
func (c *consumer) claimPass(ctx context.Context) (ok, failed bool) {
	for round := 0; round < maxClaimRounds && ctx.Err() == nil; round++ {
		res, err := c.claims.claimOnce(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Error("Claiming idle entries failed", err, nil)
			}
			return ctx.Err() == nil, true
		}
		if !c.deliverAll(ctx, res.Claimed) {
			return false, false
		}
		if !res.More {
			break
		}
	}
	return ctx.Err() == nil, false
}

// recoverOwn delivers, in order, the entries pending to this consumer that
// it does not hold: a bounded read or claim whose reply was lost (a
// timeout: a script over huge entries can outlast the client's read
// timeout) has taken them into the group's pending list, and without this
// they would wait for ClaimIdle and a claim. ok is false when the consumer
// must stop. Runs only with no read ahead outstanding, so every entry this
// consumer has read and not lost is held.
func (c *consumer) recoverOwn(ctx context.Context) (ok bool, err error) {
	for start := "-"; ; {
		page, err := c.cfg.Client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: c.topic, Group: c.cfg.ConsumerGroup,
			Start: start, End: "+", Count: int64(c.cfg.BatchSize), Consumer: c.name}).Result()
		if err != nil {
			return ctx.Err() == nil, err
		}
		var lost []Entry
		for _, p := range page {
			if !c.s.holds(c.topic, p.ID) {
				lost = append(lost, Entry{ID: p.ID, deferred: true})
			}
		}
		if len(lost) > 0 {
			c.logger.Info("Delivering entries a failed read left pending to this consumer",
				watermill.LogFields{"entries": len(lost)})
		}
		c.s.hold(c, idsOf(lost)...)
		if !c.deliverAll(ctx, lost) {
			return false, nil
		}
		if len(page) < c.cfg.BatchSize {
			return true, nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

// read runs XREADGROUP from id (">" new entries, "0" own pending ones) and
// marks what it returns as held. Under the byte bounds the batch is read
// by the bounded read script, which cannot block: when it finds no new
// entry and wait is set, one blocking XREADGROUP COUNT 1 waits for the next.
func (c *consumer) read(ctx context.Context, id string, wait bool) ([]Entry, error) {
	var entries []Entry
	var err error
	if c.reader == nil {
		block, client := c.cfg.BlockTime.Milliseconds(), c.cfg.BlockingClient
		if id != ">" || !wait {
			block, client = -1, c.cfg.Client // no BLOCK for pending entries
		}
		entries, err = readGroup(ctx, client, c.cfg.ConsumerGroup, c.name, c.topic, id, c.cfg.BatchSize, block)
	} else {
		entries, err = c.reader.read(ctx, id, c.cfg.BatchSize)
		if err == nil && len(entries) == 0 && id == ">" && wait {
			entries, err = readGroup(ctx, c.cfg.BlockingClient, c.cfg.ConsumerGroup, c.name, c.topic, ">", 1,
				c.cfg.BlockTime.Milliseconds())
		}
	}
	if err != nil {
		return nil, err
	}
	c.s.hold(c, idsOf(entries)...)
	return entries, nil
}

// fetchDeferred fills entries' deferred head, in order, within the byte
// bounds (what does not fit stays deferred, for the next call). A failing
// Redis is waited out: the entries are held, and pending to this consumer.
// False when the consumer must stop.
func (c *consumer) fetchDeferred(ctx context.Context, entries []Entry) bool {
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.deferred {
			break
		}
		ids = append(ids, e.ID)
	}
	for ctx.Err() == nil {
		got, err := c.reader.fetch(ctx, ids)
		if err == nil && len(got) == len(ids) {
			copy(entries, got)
			c.backoff.reset()
			return true
		}
		if err == nil {
			err = errBoundedReply
		}
		c.pause(ctx, "Fetching the rest of a read batch failed", err)
	}
	return false
}

// deliverAll delivers entries in order; false when the consumer must stop,
// and then the entries not delivered stay pending for the group.
func (c *consumer) deliverAll(ctx context.Context, entries []Entry) bool {
	for i := range entries {
		if (entries[i].deferred && !c.fetchDeferred(ctx, entries[i:])) || !c.deliver(ctx, entries[i]) {
			for _, rest := range entries[i:] {
				c.s.release(c, rest.ID)
			}
			return false
		}
		entries[i].msg, entries[i].event = nil, nil // delivered: the message's now, not the batch's
		entries[i].dropFields()
	}
	return true
}

// deliver sends one entry and has it watched until it is settled; false
// when the consumer must stop (the entry then stays pending). Entries are
// sent in order; up to MaxInFlight wait for their ack at once, of which one
// per partition key (wildcard.DefaultPartitionKey): an entry whose key has
// a message in flight waits for it to be acked.
func (c *consumer) deliver(ctx context.Context, e Entry) bool {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	msg, ev := c.unmarshal(e)
	var key string
	if c.gate != nil {
		key = c.s.orderKey(msg)
		if !c.gate.acquire(ctx, key) {
			<-c.slots
			return false
		}
	}
	m, cancel := c.prepare(msg, ev)
	select {
	case c.out <- m:
	case <-ctx.Done():
		cancel()
		c.unlock(key)
		<-c.slots
		return false
	}
	c.inFlight.Add(1)
	id := e.ID // the settling goroutine keeps the id, not the entry and its fields
	go func() {
		defer c.inFlight.Done()
		defer func() { <-c.slots }()
		defer c.unlock(key)
		c.settle(ctx, id, msg, ev, m, cancel)
	}()
	return true
}

// unlock lets the next message of key be delivered.
func (c *consumer) unlock(key string) {
	if c.gate != nil {
		c.gate.release(key)
	}
}

// settle waits for the delivered m to be acked (its ack goes to the
// acker) or nacked (it is sent again, unless the subscription is
// stopping). When the work context ends (CloseTimeout after a stop) it
// gives up: the entry stays pending and is counted as unsettled.
func (c *consumer) settle(ctx context.Context, id string, msg *message.Message, ev *decodedEvent, m *message.Message,
	cancel context.CancelFunc) {
	for {
		select {
		case <-m.Acked():
			cancel()
			c.acks.ack(id)
			return
		case <-m.Nacked():
			cancel()
			if ctx.Err() != nil || !ctxsleep.Sleep(ctx, c.cfg.NackResendSleep) {
				c.s.release(c, id) // a nack while stopping is not sent again: it stays pending
				return
			}
			if ev != nil { // the delivered msg was the handler's to change: rebuild it
				msg = c.rebuild(ev, id)
			}
			m, cancel = c.prepare(msg, ev)
			select {
			case c.out <- m:
				continue
			case <-ctx.Done():
				cancel()
				c.s.release(c, id)
				return
			}
		case <-c.workCtx.Done():
			select {
			case <-m.Acked(): // settled as the time ran out
				cancel()
				c.acks.ack(id)
				return
			default:
			}
			cancel()
			c.s.unsettled.Add(1)
			c.s.release(c, id)
			c.logger.Info("Handler did not settle the message within CloseTimeout; the entry stays pending",
				watermill.LogFields{"message_uuid": m.UUID, "xid": id})
			return
		}
	}
}

// prepare makes one delivery of msg, with its own context, ended once it
// is settled. A message decoded from Arc's layout (ev set) is delivered
// itself, its event carried for the wildcard router, and rebuilt from the
// event should it be delivered again; any other is kept as read and
// delivered as a copy.
func (c *consumer) prepare(msg *message.Message, ev *decodedEvent) (*message.Message, context.CancelFunc) {
	mctx, cancel := context.WithCancel(c.workCtx)
	if ev != nil {
		msg.SetContext(wildcard.ContextWithEvent(mctx, msg, ev.ev, ev.limits))
		return msg, cancel
	}
	m := msg.Copy()
	m.SetContext(mctx)
	return m, cancel
}

// rebuild makes the message of an entry decoded from Arc's layout again,
// as decodeArc made it, for a delivery after a nack.
func (c *consumer) rebuild(ev *decodedEvent, id string) *message.Message {
	msg, err := arc.ToMessage(ev.ev)
	if err != nil { // decodeArc made a message of the same event: cannot happen
		msg = message.NewMessage(ev.ev.Meta.ID, nil)
		msg.Metadata.Set(arc.MetadataMalformed, "re-encoding the entry for a redelivery: "+err.Error())
	}
	msg.Metadata.Set(MetadataEntryID, id)
	return msg
}

// decodedEvent is the event an entry was decoded into, and under which
// limits.
type decodedEvent struct {
	ev     arc.Event
	limits arc.Limits
}

// excerptBytes is how much of an oversized entry's data a malformed
// message carries, for the dead letter's reason to be read by a person.
const excerptBytes = 1024

// unmarshal reads an entry; it never fails: an entry that cannot be read,
// is over MaxEntryBytes, or has repeated type or data fields (two events in
// one entry, of which Arc would read only the last) becomes a message
// flagged malformed, for the router to dead-letter with the reason.
func (c *consumer) unmarshal(e Entry) (*message.Message, *decodedEvent) {
	if e.msg != nil {
		return e.msg, e.event
	}
	if c.cfg.MaxEntryBytes == None || e.size() <= c.cfg.MaxEntryBytes {
		if msg, ev, ok := decodeArc(c.cfg.Unmarshaller, e); ok {
			msg.Metadata.Set(MetadataEntryID, e.ID)
			return msg, ev
		}
	}
	var why string
	var msg *message.Message
	switch size := e.size(); {
	case c.cfg.MaxEntryBytes != None && size > c.cfg.MaxEntryBytes:
		why = fmt.Sprintf("entry of %d bytes is over MaxEntryBytes (%d)", size, c.cfg.MaxEntryBytes)
		data, _ := e.Map()[FieldData].(string)
		msg = message.NewMessage("", []byte(data[:min(len(data), excerptBytes)]))
	case e.count(FieldType) > 1 || e.count(FieldData) > 1:
		why = fmt.Sprintf("entry has %d type and %d data fields: more than one event in one entry (Arc would read only the last)",
			e.count(FieldType), e.count(FieldData))
	default:
		m, err := c.cfg.Unmarshaller.Unmarshal(e.Map())
		switch {
		case err != nil:
			why = err.Error()
		case m == nil:
			why = "unreadable entry"
		default:
			msg = m
		}
	}
	if why != "" {
		if msg == nil {
			msg = message.NewMessage("", nil)
			msg.Metadata.Set(MetadataRawFields, rawFields(e.Map()))
		}
		msg.Metadata.Set(arc.MetadataMalformed, why)
	}
	if msg.Metadata.Get(arc.MetadataMalformed) != "" {
		// No event id to name it by: a UUID of the entry, the same on every
		// delivery, so that what keys on it (the dead-letter guard, logs)
		// sees one message, not one per read.
		msg.UUID = entryUUID(c.topic, e.ID)
	}
	msg.Metadata.Set(MetadataEntryID, e.ID)
	return msg, nil
}

// entryUUID names a stream entry that holds no readable event: a name-based
// (SHA-1) UUID of the stream and the entry id.
func entryUUID(stream, id string) string {
	return uuid.NewSHA1(entryNamespace, []byte(stream+"\x00"+id)).String()
}

// entryNamespace is the UUID namespace of entryUUID.
var entryNamespace = uuid.MustParse("6f1d6c2e-3b8a-5c39-9a51-8a7c0e2d4b10")
