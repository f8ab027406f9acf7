package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redispubsub"
	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

const tailUsage = `Usage: arcmill tail [pattern] [flags]

Follow Arc events and print one per line: JSON with --format json (the
default when stdout is not a terminal), otherwise time, type, id,
correlation and causation. The pattern is Arc's: a type ("order.created"), a
prefix ("order.*") or everything ("*", the default). NATS-style patterns
("*.created", "order.>") need --segments; without it they are refused, as Arc
would take them literally. It says on stderr what it follows.

The stream must exist: a mistyped --stream is an error (exit 3), and --group
never creates one. --wait waits for a stream that does not exist yet (and with
--group creates it, empty, to hold the group).

By default it reads the stream without a consumer group and acknowledges
nothing, so it disturbs no consumer. With --group it reads as a member of
that group (created if missing, at the stream's end or with --from-start
its beginning; an existing group keeps its position) and acknowledges
every entry it reads, including those the pattern filters out. An
interrupted run leaves what it read but did not print pending, and the
next run with the same --consumer prints it first. With --channel it
subscribes to Arc's Pub/Sub channels (<prefix>:<type>) as package
redispubsub does: a type is one exact channel whatever characters it holds
("order[1]" follows order[1] only), and a prefix ("order.*", "*") a Redis
glob on the escaped rest.

Examples:
  arcmill tail                                  every new event on arc:events
  arcmill tail 'order.*' --from-start           the stream's history, then new ones
  arcmill tail --group audit --format json      as consumer group "audit"
  arcmill tail 'payment.*' --channel            Arc's Pub/Sub transport
  arcmill tail --count 10 --timeout 30s         stop after 10 events or 30 s
  arcmill tail '*.created' --segments           NATS-style: every *.created type
  arcmill tail --redis rediss://redis.internal:6380 --redis-tls-ca ca.pem
                                                TLS; the password in ARCMILL_REDIS_PASSWORD
`

type tailOpts struct {
	redisFlags
	stream, group, consumer, prefix, format string
	channel, fromStart, segments, wait      bool
	count                                   int
	timeout                                 time.Duration
}

func tailCmd(ctx context.Context, e env, args []string) error {
	var o tailOpts
	fs := newFlags(e, "tail", tailUsage+redisHelp)
	o.register(fs)
	fs.StringVar(&o.stream, "stream", redisstream.ArcStream, "`stream` to read")
	fs.StringVar(&o.group, "group", "", "read as this consumer `group` and acknowledge (default: no group, no acks)")
	fs.StringVar(&o.consumer, "consumer", "", "consumer `name` within --group (default arcmill-tail-<host>)")
	fs.BoolVar(&o.channel, "channel", false, "read Redis Pub/Sub channels instead of a stream")
	fs.StringVar(&o.prefix, "prefix", redispubsub.ArcPrefix, "Pub/Sub channel `prefix` (with --channel)")
	fs.BoolVar(&o.fromStart, "from-start", false, "start at the stream's first entry instead of new ones")
	fs.StringVar(&o.format, "format", "", "json or text (default: text on a terminal, json otherwise)")
	fs.BoolVar(&o.segments, "segments", false, "NATS-style pattern: * one dot-separated token, > the rest (\"*.created\", \"order.>\")")
	fs.BoolVar(&o.wait, "wait", false, "follow a stream that does not exist yet (with --group, create it)")
	fs.IntVar(&o.count, "count", 0, "stop after `n` lines (events and malformed entries; 0: never)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop after this `duration`, exit 0 (0: never)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErr("one pattern at most, got %d", len(pos))
	}
	pattern := "*"
	if len(pos) == 1 {
		pattern = pos[0]
	}
	match, err := tailMatcher(pattern, o.segments)
	if err != nil {
		return err
	}
	if o.count < 0 || o.timeout < 0 {
		return usageErr("--count and --timeout must not be negative")
	}
	if o.channel && (o.group != "" || o.fromStart || o.wait) {
		return usageErr("--group, --from-start and --wait apply to streams, not to --channel")
	}
	if o.channel && o.segments {
		return usageErr("--segments applies to streams: on --channel a pattern is a type or a prefix (\"order.*\")")
	}
	p, err := newPrinter(e.stdout, o.format)
	if err != nil {
		return err
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	client, err := o.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()

	printed := 0
	emit := func(data []byte, where string) (done bool, err error) {
		var ev arc.Event
		if uerr := arc.Unmarshal(data, &ev); uerr != nil {
			err = p.malformed(where, uerr.Error())
		} else if !match(ev.Type) {
			return false, nil
		} else {
			err = p.event(ev, where)
		}
		if err != nil {
			return true, err
		}
		printed++
		return o.count > 0 && printed >= o.count, nil
	}
	if o.channel {
		err = tailChannel(ctx, e, client, o, pattern, emit)
	} else {
		err = tailStream(ctx, e, client, o, pattern, emit)
	}
	if o.timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

type emitFunc func(data []byte, where string) (done bool, err error)

// tailMatcher returns the pattern's matcher, refusing a NATS-style
// pattern read as Arc's (where it would match only itself).
func tailMatcher(pattern string, segments bool) (func(string) bool, error) {
	if segments {
		p, err := wildcard.ParseMode(pattern, wildcard.SegmentMode)
		if err != nil {
			return nil, usageErr("--segments pattern: %v", err)
		}
		return p.Match, nil
	}
	if _, err := wildcard.Parse(pattern); err != nil {
		return nil, usageErr("%v", err)
	}
	body := strings.TrimSuffix(strings.TrimSuffix(pattern, ".*"), ":*")
	if pattern != "*" && strings.ContainsAny(body, "*>") {
		return nil, usageErr("pattern %q: Arc's patterns are a type, a prefix (\"order.*\") or \"*\", so this one "+
			"would match only a type spelled %q; for NATS-style patterns (\"*.created\", \"order.>\") add --segments",
			pattern, pattern)
	}
	return func(t string) bool { return wildcard.Match(pattern, t) }, nil
}

func tailStream(ctx context.Context, e env, client redis.UniversalClient, o tailOpts, pattern string, emit emitFunc) error {
	exists, err := client.Exists(ctx, o.stream).Result()
	if err != nil {
		return fmt.Errorf("reading %s: %w", o.stream, err)
	}
	if exists == 0 && !o.wait {
		return fmt.Errorf("%w: stream %q does not exist: check --stream (the default is %s), or add --wait to wait for it",
			errNotFound, o.stream, redisstream.ArcStream)
	}
	from := "new entries"
	if o.fromStart {
		from = "from its first entry"
	}
	if o.group != "" {
		from += ", as group " + o.group
	}
	fmt.Fprintf(e.stderr, "following %s (%s), pattern %s; Ctrl-C stops\n", o.stream, from, pattern)
	last := "0-0"
	if !o.fromStart {
		// The stream's last id now, never "$" in a loop: "$" re-read after
		// an empty wait would skip what arrived in between.
		tip, err := client.XRevRangeN(ctx, o.stream, "+", "-", 1).Result()
		if err != nil {
			return fmt.Errorf("reading %s: %w", o.stream, err)
		}
		if len(tip) > 0 {
			last = tip[0].ID
		}
	}
	pending := false
	if o.group != "" {
		if o.consumer == "" {
			// Stable per host, so that a run that stopped mid-batch (Ctrl-C)
			// leaves its unprinted entries to the next run: it reads its own
			// pending entries first.
			host, _ := os.Hostname()
			o.consumer = "arcmill-tail-" + host
		}
		var err error
		if o.wait {
			err = client.XGroupCreateMkStream(ctx, o.stream, o.group, last).Err()
		} else {
			// No MKSTREAM: a stream deleted since the check is not recreated.
			err = client.XGroupCreate(ctx, o.stream, o.group, last).Err()
		}
		if err != nil && !isBusyGroup(err) {
			return fmt.Errorf("creating group %q on %s: %w", o.group, o.stream, err)
		}
		pending = true
	}
	printed := 0
	for {
		n := int64(100)
		if o.count > 0 {
			n = int64(max(1, min(100, o.count-printed))) // never read more than will be printed
		}
		var streams []redis.XStream
		var err error
		if o.group != "" {
			from := ">"
			if pending {
				from = "0"
			}
			streams, err = client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: o.group, Consumer: o.consumer,
				Streams: []string{o.stream, from}, Count: n, Block: time.Second}).Result()
			if pending && err == nil && (len(streams) == 0 || len(streams[0].Messages) == 0) {
				pending = false // own backlog done
				continue
			}
		} else {
			streams, err = client.XRead(ctx, &redis.XReadArgs{Streams: []string{o.stream, last}, Count: n,
				Block: time.Second}).Result()
		}
		if errors.Is(err, redis.Nil) {
			pending = false
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading %s: %w", o.stream, err)
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				last = m.ID
				data, _ := m.Values[redisstream.FieldData].(string)
				done, err := emit([]byte(data), m.ID) // no data field: printed as malformed
				if o.group != "" && err == nil {
					// Every entry read is settled for this group, printed or
					// filtered out by the pattern; otherwise it stays pending.
					err = client.XAck(ctx, o.stream, o.group, m.ID).Err()
				}
				if err != nil || done {
					return err
				}
			}
			printed += len(s.Messages)
		}
	}
}

func isBusyGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP")
}

func tailChannel(ctx context.Context, e env, client redis.UniversalClient, o tailOpts, pattern string, emit emitFunc) error {
	// redispubsub's rule, not Arc's raw glob: an exact type holding '[' or
	// '?' would otherwise be a glob that misses its own channel.
	isGlob, channel := redispubsub.Subscription(o.prefix+":"+pattern, false)
	var sub *redis.PubSub
	if isGlob {
		fmt.Fprintf(e.stderr, "following Pub/Sub channels matching %s; Ctrl-C stops\n", channel)
		sub = client.PSubscribe(ctx, channel)
	} else {
		fmt.Fprintf(e.stderr, "following Pub/Sub channel %s; Ctrl-C stops\n", channel)
		sub = client.Subscribe(ctx, channel)
	}
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return fmt.Errorf("subscribing to %s: %w", channel, err)
	}
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return errors.New("the Pub/Sub connection closed")
			}
			done, err := emit([]byte(m.Payload), m.Channel)
			if err != nil || done {
				return err
			}
		}
	}
}
