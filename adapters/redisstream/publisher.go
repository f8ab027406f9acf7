package redisstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Client runs the XADDs. Required.
	Client redis.UniversalClient
	// Marshaller writes entries; default Marshaller (Arc's layout, fields
	// written in Arc's order: type, then data).
	Marshaller wredis.Marshaller
	// MaxLens trims a topic's stream approximately (MAXLEN ~) on every
	// XADD; DefaultMaxLen applies to other topics; 0 does not trim.
	// Approximate trimming ignores consumer groups: a slow group can lose
	// entries, as in Arc (SafeTrim does not).
	MaxLens       map[string]int64
	DefaultMaxLen int64
	// SafeTrimEvery, when set, runs SafeTrim on a topic after every so many
	// messages published to it: trimming that never removes an entry a
	// consumer group still needs. Use it instead of MaxLens.
	SafeTrimEvery int
	// MaxPayloadBytes refuses an entry whose data field (the event's Arc
	// JSON) is longer, with ErrPayloadTooLarge, before anything of the
	// Publish call is written. The length is counted as Arc counts it, in
	// JavaScript string length (UTF-16 code units) of the serialised event,
	// so an event is refused here exactly when Arc's publish would refuse it.
	// None: no limit. Defaults to DefaultMaxPayloadBytes (Arc's
	// maxPayloadBytes).
	MaxPayloadBytes int
	// Durability, when set, has every Publish confirmed beyond the
	// primary's memory before it returns: a Redis without persistence or a
	// replica loses acknowledged writes when it crashes. Defaults to none:
	// a Publish returns once the primary has the entries.
	Durability *Durability
	// CloseClient closes Client on Close.
	CloseClient bool
	// Logger receives, once, before the first Publish, a warning for each
	// server setting that can lose acknowledged entries (CheckServer).
	// Defaults to no logging.
	Logger watermill.LoggerAdapter
	// SkipServerCheck skips that check (for a server that refuses CONFIG).
	SkipServerCheck bool
}

// Durability asks Redis to confirm a write beyond its memory. The XADDs
// and the confirming command go in one pipeline, on one connection, as
// WAIT and WAITAOF require. After a confirmation falls short, the
// Publisher writes nothing until the server shows it can confirm again
// (see ErrNotDurable), so retries through a replica outage do not fill the
// stream with unconfirmed copies.
type Durability struct {
	// Replicas is how many replicas must have acknowledged the entries
	// (WAIT). 0: no replica asked for.
	Replicas int
	// Fsync asks that the primary has written the entries to its
	// append-only file and fsynced it (WAITAOF 1; Redis ≥ 7.2 with
	// appendonly yes), and, with Replicas, that many replicas too.
	Fsync bool
	// Timeout bounds the wait for confirmation. Defaults to
	// DefaultDurabilityTimeout.
	Timeout time.Duration
}

// DefaultDurabilityTimeout bounds the wait for WAIT or WAITAOF.
const DefaultDurabilityTimeout = time.Second

// ErrNotDurable is returned by Publish when Redis did not confirm the
// durability asked for within the timeout: the entries are written, but may
// be lost if the primary crashes. Publish them again (the outbox relay keeps
// such rows pending). Once a confirmation has fallen short, Publish asks the
// server (INFO, at most every 200 ms) before writing again, and returns
// ErrNotDurable with nothing written ("nothing written" in the message)
// while too few replicas are online and acknowledging, or, with Fsync, the
// primary has no append-only file; the first confirmation that succeeds
// ends this. It is a fault of the broker, not of the event: it
// reports Timeout() true, so classifiers of transport failures (such as
// outbox.IsTransportError) never charge it to the event.
var ErrNotDurable error = notDurableError{}

type notDurableError struct{}

func (notDurableError) Error() string { return "redisstream: write not confirmed durable" }

// Timeout marks the failure as the broker's: confirmation did not come in time.
func (notDurableError) Timeout() bool { return true }

// DefaultMaxPayloadBytes is Arc's maxPayloadBytes.
const DefaultMaxPayloadBytes = 1_000_000

// ErrPayloadTooLarge refuses an entry over MaxPayloadBytes. It wraps
// arc.ErrUnrecoverable: retrying cannot help, so middleware and the outbox
// relay dead-letter such an event at once.
var ErrPayloadTooLarge = fmt.Errorf("redisstream: event larger than MaxPayloadBytes: %w", arc.ErrUnrecoverable)

func (c *PublisherConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.Marshaller == nil {
		c.Marshaller = Marshaller{}
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
}

// Validate reports a configuration that cannot work, naming the field.
func (c PublisherConfig) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Client == nil {
		errs = append(errs, fmt.Errorf("%w: PublisherConfig.Client is required", ErrInvalidConfig))
	}
	if c.MaxPayloadBytes < 0 && c.MaxPayloadBytes != None {
		errs = append(errs, fmt.Errorf("%w: PublisherConfig.MaxPayloadBytes is %d: must be positive, 0 for the default or None (-1)",
			ErrInvalidConfig, c.MaxPayloadBytes))
	}
	if c.DefaultMaxLen < 0 {
		errs = append(errs, fmt.Errorf("%w: PublisherConfig.DefaultMaxLen is %d: must not be negative", ErrInvalidConfig, c.DefaultMaxLen))
	}
	for topic, n := range c.MaxLens {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%w: PublisherConfig.MaxLens[%q] is %d: must not be negative", ErrInvalidConfig, topic, n))
		}
	}
	if d := c.Durability; d != nil && (d.Replicas < 0 || d.Timeout < 0 || d.Replicas == 0 && !d.Fsync) {
		errs = append(errs, fmt.Errorf("%w: PublisherConfig.Durability asks for nothing or for negative values: "+
			"set Replicas > 0, Fsync, or both, and a positive Timeout (0 for the default)", ErrInvalidConfig))
	}
	if c.SafeTrimEvery < 0 {
		errs = append(errs, fmt.Errorf("%w: PublisherConfig.SafeTrimEvery is %d: must not be negative", ErrInvalidConfig, c.SafeTrimEvery))
	}
	return errors.Join(errs...)
}

// Publisher appends messages to streams: one XADD for one message, one
// pipelined round trip for many.
type Publisher struct {
	cfg    PublisherConfig
	closed atomic.Bool

	checked sync.Once // the server check, before the first Publish

	gate      durableGate // with Durability: refuses writes while confirmation is known to be missing
	nodeGates sync.Map    // on a Cluster, one gate per primary instead: address → *durableGate

	mu        sync.Mutex
	published map[string]int // since the last SafeTrim, per topic
}

// NewPublisher returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Publisher{cfg: cfg, published: map[string]int{}}, nil
}

// Publish appends msgs to the stream topic, in order, under the first
// message's context. With several messages, a failure may leave the first
// ones written (XADD is not transactional); the error says which failed.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	b, err := p.entries(topic, msgs)
	if err != nil {
		return err
	}
	defer b.release()
	ctx := msgs[0].Context()
	p.checked.Do(func() { p.checkServer(ctx) })
	return p.send(ctx, topic, msgs, b.args)
}

// send writes the entries entries built for msgs: one XADD, or one
// pipeline (with WAIT or WAITAOF when Durability asks), then trims.
func (p *Publisher) send(ctx context.Context, topic string, msgs []*message.Message, args []*redis.XAddArgs) error {
	if p.cfg.Durability != nil {
		if err := p.admitDurable(ctx, topic, p.durability()); err != nil {
			return err
		}
		defer p.trim(ctx, topic, len(msgs))
		return p.publishDurably(ctx, topic, msgs, args)
	}
	defer p.trim(ctx, topic, len(msgs))
	if len(args) == 1 {
		if err := p.cfg.Client.XAdd(ctx, args[0]).Err(); err != nil {
			return fmt.Errorf("redisstream: XADD to %q: %w", topic, err)
		}
		return nil
	}
	cmds, err := p.cfg.Client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, a := range args {
			pipe.XAdd(ctx, a)
		}
		return nil
	})
	if err != nil {
		for i, cmd := range cmds {
			if cmd.Err() != nil {
				return fmt.Errorf("redisstream: XADD of message %d of %d (%s) to %q: %w", i+1, len(msgs), msgs[i].UUID, topic, cmd.Err())
			}
		}
		return fmt.Errorf("redisstream: pipelined XADD to %q: %w", topic, err)
	}
	return nil
}

// entries builds the XADD of each message, in order, encoding and checking
// them all before anything is sent: a message that is refused (not an Arc
// event, too large) leaves nothing of the call written. The error is the
// first failing message's. The caller releases the batch once the XADDs
// are sent (or dropped).
func (p *Publisher) entries(topic string, msgs []*message.Message) (*batch, error) {
	b := newBatch(len(msgs))
	m, arcLayout := p.cfg.Marshaller.(Marshaller)
	for i, msg := range msgs {
		if arcLayout {
			data, err := b.encode(m, i, msg)
			if err == nil {
				err = p.checkLen(msg, data)
			}
			if err != nil {
				b.release()
				return nil, err
			}
			continue
		}
		values, err := p.cfg.Marshaller.Marshal(topic, msg)
		if err == nil {
			err = p.checkSize(msg, values)
		}
		if err != nil {
			b.release()
			return nil, err
		}
		b.argv[i].Values = values
	}
	b.finish(topic, p.maxLen(topic))
	return b, nil
}

// checkServer warns about server settings that can lose acknowledged
// entries. A server that refuses CONFIG (a managed Redis) is only noted.
func (p *Publisher) checkServer(ctx context.Context) {
	if p.cfg.SkipServerCheck {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultDurabilityTimeout)
	defer cancel()
	report, err := CheckServer(ctx, p.cfg.Client)
	if err != nil {
		p.cfg.Logger.Info("Could not check the Redis server's durability settings", watermill.LogFields{"err": err.Error()})
		return
	}
	for _, f := range report.Findings {
		if f.Risk && !(f.Setting == "replicas" && p.cfg.Durability != nil && p.cfg.Durability.Fsync) {
			p.cfg.Logger.Error("Redis can lose acknowledged events: "+f.Advice, nil,
				watermill.LogFields{"setting": f.Setting, "value": f.Value})
		}
	}
}

// publishDurably sends the XADDs and WAIT / WAITAOF in one pipeline (one
// connection: both commands confirm that connection's writes), on a
// Cluster to the primary serving topic (see cluster.go), following MOVED
// and ASK itself: the entries not yet written go again to the node the
// reply names, confirmed there.
// A confirmation that falls short opens the gate (durableGate), so the
// retries that follow write nothing until the server can confirm again.
//
// On a Cluster client the pipeline runs on the stream's primary itself:
// go-redis would route WAIT by its first argument, as if the replica count
// were a key (WAIT 1 … to the node of slot 9842), and confirm nothing of
// the stream's writes. A MOVED or ASK reply (the slot has moved, or is
// moving) fails the publish, to be retried, and reloads the client's slot
// map, so the retry goes to the new primary.
func (p *Publisher) publishDurably(ctx context.Context, topic string, msgs []*message.Message, args []*redis.XAddArgs) error {
	d := p.durability()
	target, err := nodeFor(ctx, p.cfg.Client, topic)
	if err != nil {
		return fmt.Errorf("redisstream: finding the cluster node of %q: %w", topic, err)
	}
	done, asking := 0, false // entries written, and whether the next pipeline follows an ASK
	for redirects := 0; ; redirects++ {
		var wait, waitAOF *redis.Cmd
		xadds := make([]redis.Cmder, 0, len(args)-done)
		_, pipeErr := target.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, a := range args[done:] {
				if asking {
					pipe.Do(ctx, "ASKING") // good for the one command after it
				}
				xadds = append(xadds, pipe.XAdd(ctx, a))
			}
			if d.Fsync {
				waitAOF = pipe.Do(ctx, "WAITAOF", 1, d.Replicas, d.Timeout.Milliseconds())
			} else {
				wait = pipe.Do(ctx, "WAIT", d.Replicas, d.Timeout.Milliseconds())
			}
			return nil
		})
		redirected, err := p.followRedirect(ctx, topic, msgs, xadds, &done, redirects)
		if err != nil {
			return err
		}
		if redirected != nil {
			target, asking = redirected.node, redirected.ask
			continue
		}
		if err := p.confirmation(d, len(msgs), wait, waitAOF, pipeErr); err != nil {
			if !errors.Is(err, ErrNotDurable) {
				return fmt.Errorf("redisstream: pipelined XADD to %q: %w", topic, err)
			}
			p.gateOf(target).fellShort(err)
			return err
		}
		p.gateOf(target).confirmed()
		return nil
	}
}

// touchScript sets a stream's last id to what it is: a write that changes
// nothing but is replicated, so that a WAIT after it on the same
// connection covers every earlier write to the stream, whoever made it (a
// WAIT alone covers only its own connection's writes).
var touchScript = redis.NewScript(`
redis.replicate_commands()
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return redis.call('XSETID', KEYS[1], info[i + 1]) end
end
return redis.error_reply('XINFO STREAM gave no last-generated-id')`)

// confirmStream confirms, as the publisher's Durability asks, every entry
// already written to topic: a replicated no-op write to it, then WAIT or
// WAITAOF, on its primary. It returns an error wrapping ErrNotDurable
// when the confirmation falls short. A Cluster's redirect fails it (the
// slot map is reloaded for the next try).
func (p *Publisher) confirmStream(ctx context.Context, topic string) error {
	d := p.durability()
	target, err := nodeFor(ctx, p.cfg.Client, topic)
	if err != nil {
		return fmt.Errorf("redisstream: finding the cluster node of %q: %w", topic, err)
	}
	var touch *redis.Cmd
	var wait, waitAOF *redis.Cmd
	_, pipeErr := target.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		touch = touchScript.Eval(ctx, pipe, []string{topic})
		if d.Fsync {
			waitAOF = pipe.Do(ctx, "WAITAOF", 1, d.Replicas, d.Timeout.Milliseconds())
		} else {
			wait = pipe.Do(ctx, "WAIT", d.Replicas, d.Timeout.Milliseconds())
		}
		return nil
	})
	if err := touch.Err(); err != nil {
		if cc, ok := p.cfg.Client.(*redis.ClusterClient); ok {
			if moved, _, _ := redirection(err); moved {
				cc.ReloadState(ctx)
			}
		}
		return fmt.Errorf("redisstream: confirming the entries of %q: %w", topic, err)
	}
	if err := p.confirmation(d, 1, wait, waitAOF, pipeErr); err != nil {
		if errors.Is(err, ErrNotDurable) {
			p.gateOf(target).fellShort(err)
		}
		return err
	}
	p.gateOf(target).confirmed()
	return nil
}

// redirect is where a durable publish goes on after MOVED or ASK.
type redirect struct {
	node pipeliner
	ask  bool
}

// followRedirect reads the XADDs of one durable pipeline, sent from entry
// *done on: nil when all were written; a redirect (and *done moved to the
// first entry not written) when one was answered MOVED or ASK on a Cluster
// and redirects remain; or the error of the first that failed.
func (p *Publisher) followRedirect(ctx context.Context, topic string, msgs []*message.Message, xadds []redis.Cmder,
	done *int, redirects int) (*redirect, error) {
	for i, cmd := range xadds {
		if cmd.Err() == nil {
			continue
		}
		n := *done + i
		fail := func(err error) error {
			return fmt.Errorf("redisstream: XADD of message %d of %d (%s) to %q: %w", n+1, len(msgs), msgs[n].UUID, topic, err)
		}
		cc, isCluster := p.cfg.Client.(*redis.ClusterClient)
		moved, ask, addr := redirection(cmd.Err())
		if !isCluster || !moved || redirects >= maxDurableRedirects {
			return nil, fail(cmd.Err())
		}
		node, err := clusterNode(ctx, cc, addr)
		if err != nil {
			return nil, fail(err)
		}
		*done = n
		return &redirect{node: node, ask: ask}, nil
	}
	return nil, nil
}

// confirmation reads the reply of WAIT or WAITAOF: nil when d is met, an
// ErrNotDurable when it is not, or the pipeline's own error.
func (p *Publisher) confirmation(d Durability, n int, wait, waitAOF *redis.Cmd, pipeErr error) error {
	if d.Fsync {
		if err := waitAOF.Err(); err != nil {
			return fmt.Errorf("%w: WAITAOF (needs Redis 7.2 or later with appendonly yes): %w", ErrNotDurable, err)
		}
		got, _ := waitAOF.Int64Slice()
		if len(got) != 2 || got[0] < 1 || got[1] < int64(d.Replicas) {
			return fmt.Errorf("%w: WAITAOF confirmed %v (local fsyncs, replica fsyncs) of 1 and %d within %s",
				ErrNotDurable, got, d.Replicas, d.Timeout)
		}
		return nil
	}
	if pipeErr != nil && wait.Err() == nil {
		return pipeErr
	}
	got, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", ErrNotDurable, err)
	}
	if got < int64(d.Replicas) {
		return fmt.Errorf("%w: %d of %d replica(s) acknowledged %d entr(ies) within %s", ErrNotDurable, got, d.Replicas,
			n, d.Timeout)
	}
	return nil
}

// durability returns the configured Durability with its defaults.
func (p *Publisher) durability() Durability {
	d := *p.cfg.Durability
	if d.Timeout == 0 {
		d.Timeout = DefaultDurabilityTimeout
	}
	return d
}

// checkSize applies MaxPayloadBytes to the data field (Arc's layout) or,
// for another Marshaller, to the message payload, counting as Arc does.
func (p *Publisher) checkSize(msg *message.Message, values any) error {
	if p.cfg.MaxPayloadBytes == None {
		return nil
	}
	data := []byte(msg.Payload)
	if pairs, ok := values.([]any); ok && len(pairs) >= 4 {
		switch d := pairs[3].(type) {
		case string:
			return p.checkLen(msg, d)
		case *string:
			return p.checkLen(msg, *d)
		case []byte:
			data = d
		}
	}
	if len(data) <= p.cfg.MaxPayloadBytes { // UTF-16 length ≤ byte length: the common case costs nothing
		return nil
	}
	return p.checkLen(msg, string(data))
}

// checkLen applies MaxPayloadBytes to data, an entry's data field.
func (p *Publisher) checkLen(msg *message.Message, data string) error {
	limit := p.cfg.MaxPayloadBytes
	if limit == None || len(data) <= limit {
		return nil
	}
	if size := JSLength(data); size > limit {
		return fmt.Errorf("%w: message %s is %d characters (JavaScript string length), the limit %d",
			ErrPayloadTooLarge, msg.UUID, size, limit)
	}
	return nil
}

// JSLength is the length JavaScript gives s: UTF-16 code units, two for a
// character outside the Basic Multilingual Plane, one for each byte of
// invalid UTF-8 (which a JavaScript reader sees as U+FFFD). Arc measures
// maxPayloadBytes in it.
func JSLength(s string) int {
	n := 0
	for _, r := range s { // invalid bytes come as utf8.RuneError, one each
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}

// trim runs SafeTrim after SafeTrimEvery messages to topic. A failure is
// not the publish's: the entries are written, the stream only stays longer.
func (p *Publisher) trim(ctx context.Context, topic string, n int) {
	if p.cfg.SafeTrimEvery <= 0 {
		return
	}
	p.mu.Lock()
	p.published[topic] += n
	due := p.published[topic] >= p.cfg.SafeTrimEvery
	if due {
		p.published[topic] = 0
	}
	p.mu.Unlock()
	if due {
		_, _ = SafeTrim(ctx, p.cfg.Client, topic)
	}
}

func (p *Publisher) maxLen(topic string) int64 {
	if n, ok := p.cfg.MaxLens[topic]; ok {
		return n
	}
	return p.cfg.DefaultMaxLen
}

// Close makes later Publish calls fail; idempotent.
func (p *Publisher) Close() error {
	if p.closed.CompareAndSwap(false, true) && p.cfg.CloseClient {
		return p.cfg.Client.Close()
	}
	return nil
}
