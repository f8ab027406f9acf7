package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

const dlqUsage = `Usage: arcmill dlq list|show|redrive|purge|parked|release|discard [id|key] [flags]

Dead letters of a Redis dead-letter stream in Arc's layout (default
arc:events:dlq, written by Arc services and by arcmill), or, with --outbox,
of arcmill's SQL outbox, or, with --nats, of a NATS JetStream dead-letter
stream (where adapters/natsjs stores them).

  list              the dead letters, oldest first (--type, --id); the first
                    100, or --limit N, or --all; says "showing N of M" on
                    stderr. --summary counts them by type, reason and error.
  show <id>         one dead letter in full: a dead-letter entry id, an event
                    id, or (--outbox) a row number
  redrive           put dead letters back, oldest first: on their original
                    stream (or --to), or pending again in the outbox. Each
                    one is moved atomically, so an interrupted redrive can be
                    run again and redrives nothing twice. --rate caps it.
  purge             delete dead letters (--type, --id, or --all)
  parked            sequenced handlers' parked keys (middleware.Sequencer):
                    each key with its count of held events and the dead
                    letter (head) they wait behind; --handler, --group;
                    every key, read a page at a time, or --offset N and
                    --limit N for a page of them
  release <key>     run a key's parked events, in order, without their head
                    (its dead letter stays; redriving the head instead
                    releases them after it)
  discard <key>     drop a key's parked events for good (the head's dead
                    letter stays); new events of the key run again

With --type or --id, a command that finds no dead letter exits 3 (nothing
matched), as show does for an unknown id.

Examples:
  arcmill dlq list
  arcmill dlq list --summary              counts by type, reason and error
  arcmill dlq list --all --format json     every dead letter, one JSON line each
  arcmill dlq show 1764150000000-0
  arcmill dlq redrive --type order.created --rate 50
  arcmill dlq redrive --to arc:events:replay --limit 10
  arcmill dlq redrive --trim safe
  arcmill dlq parked --handler ship
  arcmill dlq parked --offset 1000 --limit 100
  arcmill dlq release order-42 --handler ship
  arcmill dlq discard order-43 --handler ship
  arcmill dlq purge --id 4f0c…  --outbox --dsn postgres://…
  arcmill dlq list --outbox --dsn file:shop.db --format json
  arcmill dlq list --nats nats://127.0.0.1:4222 --nats-stream ARC_DEAD_LETTERS

Redrive trims the target stream as it is trimmed, per --trim: "auto" (the
default) trims Arc's stream arc:events to MAXLEN ~ 10000 as Arc's publish
does and leaves other streams alone; "arc" always does that; a number N
trims to MAXLEN ~ N; "safe" runs SafeTrim on each target afterwards (only
what every group is done with); "none" never trims. A dead letter of an
entry that could not be read is put back as its original fields, byte for
byte.
`

// dlqOpts are the flags of every dlq subcommand.
type dlqOpts struct {
	redisFlags
	dbFlags
	stream, to, format string
	trim               string
	useOutbox, all     bool
	natsURL            string
	natsStream         string
	natsPrefix         string
	summary            bool
	handler, group     string
	seqPrefix          string
	types, ids         stringList
	limit, offset      int
	rate               float64
}

// stringList is a repeatable (or comma-free) string flag.
type stringList []string

func (s *stringList) String() string { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	*s = append(*s, v)
	return nil
}

func dlqCmd(ctx context.Context, e env, args []string) error {
	var o dlqOpts
	fs := newFlags(e, "dlq", dlqUsage+redisHelp)
	o.redisFlags.register(fs)
	o.dbFlags.register(fs)
	fs.StringVar(&o.stream, "stream", redisstream.ArcDeadLetterStream, "dead-letter `stream`")
	fs.BoolVar(&o.useOutbox, "outbox", false, "the outbox's dead letters instead of a Redis stream (needs --dsn)")
	fs.StringVar(&o.natsURL, "nats", getenv(envNatsURL, ""), "the dead letters of a NATS JetStream stream at this `URL` instead of Redis ("+envNatsURL+")")
	fs.StringVar(&o.natsStream, "nats-stream", defaultNatsDLQStream, "with --nats: the dead-letter `stream`")
	fs.StringVar(&o.natsPrefix, "nats-prefix", natsjs.DefaultPrefix, "with --nats: redrive events to `prefix`.<type>")
	fs.Var(&o.types, "type", "only events of this `type` (repeatable)")
	fs.Var(&o.ids, "id", "only this event `id` (repeatable)")
	fs.IntVar(&o.limit, "limit", 0, "at most `n` dead letters (list: default 100, --all for every one; redrive, purge: all), or parked keys (default: all)")
	fs.IntVar(&o.offset, "offset", 0, "parked: skip the first `n` keys")
	fs.Float64Var(&o.rate, "rate", 0, "redrive at most `n` per second (0: no cap)")
	fs.StringVar(&o.to, "to", "", "redrive to this `stream` instead of each entry's original stream")
	fs.StringVar(&o.trim, "trim", trimAuto, "how redrive trims its target: auto, arc, safe, none or a MAXLEN `n`")
	fs.BoolVar(&o.all, "all", false, "list: every dead letter, not only the first 100; purge: every dead letter (purge wants a filter or --all)")
	fs.BoolVar(&o.summary, "summary", false, "list: counts by type, reason and error instead of the dead letters")
	fs.StringVar(&o.format, "format", "", "json or text (default: text on a terminal, json otherwise)")
	fs.StringVar(&o.handler, "handler", "", "parked, release, discard: only this sequenced `handler`")
	fs.StringVar(&o.group, "group", "", "parked, release, discard: only this consumer `group`")
	fs.StringVar(&o.seqPrefix, "seq-prefix", middleware.DefaultSequencePrefix, "parked, release, discard: the Sequencers' key `prefix`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("want a subcommand: list, show, redrive, purge, parked, release or discard")
	}
	sub, rest := pos[0], pos[1:]
	want := map[string]int{"list": 0, "show": 1, "redrive": 0, "purge": 0, "parked": 0, "release": 1, "discard": 1}
	n, ok := want[sub]
	if !ok {
		return usageErr("unknown subcommand %q: use list, show, redrive, purge, parked, release or discard", sub)
	}
	if len(rest) != n {
		return usageErr("%s takes %d argument(s), got %d", sub, n, len(rest))
	}
	if sub == "purge" && !o.all && len(o.types) == 0 && len(o.ids) == 0 {
		return usageErr("purge deletes for good: give --type, --id, or --all")
	}
	if o.limit < 0 || o.rate < 0 || o.offset < 0 {
		return usageErr("--limit, --offset and --rate must not be negative")
	}
	if o.offset > 0 && sub != "parked" {
		return usageErr("--offset applies to parked")
	}
	if sub == "list" && o.all && o.limit > 0 {
		return usageErr("list: give --limit or --all, not both")
	}
	if o.summary && sub != "list" {
		return usageErr("--summary applies to list")
	}
	if sub == "list" && !o.all && o.limit == 0 {
		o.limit = defaultListLimit
	}
	if sub == "purge" && o.useOutbox && o.limit > 0 {
		return usageErr("--limit does not apply to an outbox purge: filter with --type or --id")
	}
	if sub == "show" {
		o.types, o.ids = nil, nil // show names its one dead letter
	}
	trim, err := parseTrim(o.trim)
	if err != nil {
		return err
	}
	if o.useOutbox && o.to != "" {
		return usageErr("--to applies to Redis streams; an outbox row keeps its topic")
	}
	p, err := newPrinter(e.stdout, o.format)
	if err != nil {
		return err
	}
	if sub == "parked" || sub == "release" || sub == "discard" {
		return parkedDLQ(ctx, e, o, p, sub, rest)
	}
	if o.useOutbox {
		return outboxDLQ(ctx, e, o, p, sub, rest)
	}
	if o.natsURL != "" {
		if o.to != "" {
			return usageErr("--to applies to Redis streams; with --nats, --nats-prefix names where events go")
		}
		return natsDLQ(ctx, e, o, p, sub, rest)
	}
	client, err := o.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	d := &streamDLQ{client: client, stream: o.stream, types: o.types, ids: o.ids}
	if err := d.check(ctx); err != nil {
		return err
	}
	switch sub {
	case "list":
		if o.summary {
			return d.summarize(ctx, p)
		}
		return d.list(ctx, e, p, o.limit)
	case "show":
		return d.show(ctx, p, rest[0])
	case "redrive":
		return d.redrive(ctx, e, p, redriveOpts{to: o.to, limit: o.limit, rate: o.rate, trim: trim})
	default:
		return d.purge(ctx, p, o.limit)
	}
}

func outboxDLQ(ctx context.Context, e env, o dlqOpts, p printer, sub string, rest []string) error {
	ob, closeDB, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	f := outbox.Filter{Types: o.types, EventIDs: o.ids}
	switch sub {
	case "list":
		total, err := ob.CountDeadLetters(ctx, f)
		if err != nil {
			return err
		}
		filtered := len(o.types) > 0 || len(o.ids) > 0
		if o.summary {
			s := newSummary(ob.Table())
			if err := eachOutboxDead(ctx, ob, f, 0, func(d outbox.DeadLetter) error {
				s.add(d.Type, "", d.Error)
				return nil
			}); err != nil {
				return err
			}
			if s.Total == 0 && filtered {
				return fmt.Errorf("%w: no dead letter in %s matches --type/--id", errNotFound, ob.Table())
			}
			return s.print(p)
		}
		shown := 0
		if err := eachOutboxDead(ctx, ob, f, o.limit, func(d outbox.DeadLetter) error {
			shown++
			return p.value(outboxDeadJSON(d), func(w io.Writer) {
				fmt.Fprintf(w, "#%-8d %-24s event=%s  attempts=%d  topic=%s  last failed %s  error=%q\n", d.Seq, d.Type,
					d.EventID, d.Attempts, d.Topic, d.LastFailedAt.UTC().Format(time.RFC3339), d.Error)
			})
		}); err != nil {
			return err
		}
		return shownOf(e, shown, int(max(total, int64(shown))), ob.Table(), filtered)
	case "show":
		// An event id first; a number that is no event id is a row number.
		dead, err := ob.DeadLetters(ctx, outbox.Filter{EventIDs: []string{rest[0]}}, 1)
		if err != nil {
			return err
		}
		if seq, perr := strconv.ParseInt(rest[0], 10, 64); len(dead) == 0 && perr == nil && seq > 0 {
			if dead, err = ob.DeadLetters(ctx, outbox.Filter{AfterSeq: seq - 1}, 1); err != nil {
				return err
			}
			if len(dead) > 0 && dead[0].Seq != seq {
				dead = nil
			}
		}
		if len(dead) == 0 {
			return fmt.Errorf("%w: no dead letter %q in the outbox", errNotFound, rest[0])
		}
		d := dead[0]
		return p.value(outboxDeadJSON(d), func(w io.Writer) {
			fmt.Fprintf(w, "row:           #%d\ntype:          %s\nevent id:      %s\ntopic:         %s\nattempts:      %d\n"+
				"first failed:  %s\nlast failed:   %s\nerror:         %s\n", d.Seq, d.Type, d.EventID, d.Topic, d.Attempts,
				d.FirstFailedAt.UTC().Format(time.RFC3339Nano), d.LastFailedAt.UTC().Format(time.RFC3339Nano), d.Error)
			if d.Message != nil {
				md, _ := json.Marshal(d.Message.Metadata) // a map of strings always marshals
				fmt.Fprintf(w, "metadata:\n%s\npayload:\n%s\n", indented(string(md)), indented(string(d.Message.Payload)))
			}
		})
	case "redrive":
		total, err := ob.CountDeadLetters(ctx, f)
		if err != nil {
			return err
		}
		if total == 0 && (len(o.types) > 0 || len(o.ids) > 0) {
			return fmt.Errorf("%w: no dead letter in %s matches --type/--id", errNotFound, ob.Table())
		}
		if o.limit > 0 {
			total = min(total, int64(o.limit))
		}
		bar := newProgress(e.stderr, total)
		moved := 0
		for o.limit == 0 || moved < o.limit {
			chunk := 100
			if o.limit > 0 {
				chunk = min(chunk, o.limit-moved)
			}
			n, err := ob.Redrive(ctx, outbox.RedriveOptions{Filter: f, Limit: chunk, Rate: o.rate})
			moved += n
			bar.set(int64(moved))
			if err != nil {
				bar.done()
				fmt.Fprintf(e.stderr, "redriven %d before stopping; run it again to go on\n", moved)
				return err
			}
			if left, err := ob.CountDeadLetters(ctx, f); err != nil || left == 0 || n == 0 {
				break
			}
		}
		bar.done()
		fmt.Fprintf(e.stderr, "redriven %d dead letter(s): pending again in %s\n", moved, ob.Table())
		return nil
	default:
		n, err := ob.PurgeDeadLetters(ctx, f)
		if err != nil {
			return err
		}
		if n == 0 && !o.all {
			return fmt.Errorf("%w: no dead letter in %s matches --type/--id", errNotFound, ob.Table())
		}
		return p.value(map[string]any{"purged": n, "table": ob.Table()}, func(w io.Writer) {
			fmt.Fprintf(w, "purged %d dead letter(s) from %s\n", n, ob.Table())
		})
	}
}

// defaultListLimit is how many dead letters list shows without --limit
// or --all.
const defaultListLimit = 100

// eachOutboxDead walks the outbox's matching dead letters oldest first, in
// pages, up to limit (0: all).
func eachOutboxDead(ctx context.Context, ob *outbox.Outbox, f outbox.Filter, limit int, fn func(outbox.DeadLetter) error) error {
	const page = 500
	seen := 0
	for {
		n := page
		if limit > 0 {
			n = min(page, limit-seen)
		}
		if n <= 0 {
			return nil
		}
		dead, err := ob.DeadLetters(ctx, f, n)
		if err != nil {
			return err
		}
		for _, d := range dead {
			if err := fn(d); err != nil {
				return err
			}
			f.AfterSeq = d.Seq
		}
		seen += len(dead)
		if len(dead) < n {
			return nil
		}
	}
}

func outboxDeadJSON(d outbox.DeadLetter) map[string]any {
	out := map[string]any{"row": d.Seq, "type": d.Type, "eventId": d.EventID, "topic": d.Topic,
		"attempts": d.Attempts, "error": d.Error, "firstFailedAt": d.FirstFailedAt.UTC(),
		"lastFailedAt": d.LastFailedAt.UTC()}
	if d.Message != nil {
		out["metadata"] = d.Message.Metadata
		out["payload"] = jsonOrString(string(d.Message.Payload))
	}
	return out
}
