package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// Kinds of dead-letter source.
const (
	kindStream = "stream"
	kindOutbox = "outbox"
)

// reasonOutbox is the reason shown for an outbox dead letter: the relay
// gave up publishing it (the table keeps no reason).
const reasonOutbox = "relay-failed"

// source is one place dead letters live: a dead-letter stream or an
// outbox.
type source struct {
	kind   string
	name   string // the dead-letter stream, or the outbox's Name
	stream Stream
	outbox Outbox
	// targets are the configured streams (Config.Streams' names): the
	// only streams a redrive may write to.
	targets map[string]bool
}

// redriveTarget is the stream a stream dead letter named original goes
// back to, and whether a redrive may write there: only to a configured
// stream, whatever the dead letter names (anyone who can write to a
// dead-letter stream would otherwise pick any key of the Redis).
func (s source) redriveTarget(original string) (string, bool) {
	t := original
	if t == "" {
		t = s.stream.Name
	}
	return t, s.targets[t]
}

// redrivability says whether a stream dead letter can go back, and why
// not: complete is false when it cannot be put back as it was written.
func redrivability(src source, original string, truncated, complete bool) (bool, string) {
	switch {
	case truncated:
		return false, "only an excerpt of it was kept"
	case !complete:
		return false, "it cannot be put back as it was written"
	}
	if t, ok := src.redriveTarget(original); !ok {
		return false, fmt.Sprintf("it names stream %q, which is not one of the console's streams", t)
	}
	return true, ""
}

// key is the source's id in the API and in URLs: "stream:<dlq>" or
// "outbox:<name>".
func (s source) key() string { return s.kind + ":" + s.name }

// Letter is one dead letter, from any source, as the list and the API show
// it. Payloads are not part of it.
type Letter struct {
	// Source is "stream:<dead-letter stream>" or "outbox:<name>".
	Source string `json:"source"`
	// ID is the dead letter's id in its source: the stream entry id, or
	// the outbox row's sequence number.
	ID string `json:"id"`
	// EventID is the event's meta.id.
	EventID string `json:"eventId"`
	// CorrelationID and CausationID link the event to its chain.
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	// Type is the event type.
	Type string `json:"type"`
	// Reason says why it was dead-lettered ("" for Arc's own envelopes).
	Reason string `json:"reason"`
	// Error is the last error's message.
	Error string `json:"error"`
	// ErrorType is the Go type of the error, where known.
	ErrorType string `json:"errorType,omitempty"`
	// Handler names the handler that gave up, where known.
	Handler string `json:"handler,omitempty"`
	// Attempts counts the failed attempts.
	Attempts int `json:"attempts"`
	// FirstFailedAt and LastFailedAt bound the failures.
	FirstFailedAt time.Time `json:"firstFailedAt"`
	LastFailedAt  time.Time `json:"lastFailedAt"`
	// OriginalStream and Group are where a stream dead letter was read.
	OriginalStream string `json:"originalStream,omitempty"`
	Group          string `json:"group,omitempty"`
	// Cause is the failure group: a hash of type, reason and the
	// normalised error message.
	Cause string `json:"cause"`
	// Redrivable is false for a dead letter that cannot be put back as it
	// was (unreadable, or only an excerpt kept), or that names a stream
	// the console is not configured with.
	Redrivable bool `json:"redrivable"`
	// NoRedrive says why Redrivable is false.
	NoRedrive string `json:"noRedrive,omitempty"`
	// Unreadable says why the dead letter itself could not be read.
	Unreadable string `json:"unreadable,omitempty"`
}

// letter is a Letter with what it takes to open and redrive it.
type letter struct {
	Letter
	src     source
	dl      redisstream.DeadLetterEntry // a stream dead letter
	readErr error
	row     outbox.DeadLetter // an outbox dead letter
	event   arc.Event         // the event, where it could be read
}

// target is the stream a stream dead letter goes back to, and whether a
// redrive may write there.
func (l letter) target() (string, bool) { return l.src.redriveTarget(l.dl.OriginalStream) }

// sources lists the configured dead-letter sources, filtered by key when
// only is not empty.
func (c *Console) sources(only string) []source {
	var out []source
	for _, s := range c.cfg.Streams {
		src := source{kind: kindStream, name: s.DeadLetter, stream: s, targets: c.targets}
		if only == "" || only == src.key() {
			out = append(out, src)
		}
	}
	for _, o := range c.cfg.Outboxes {
		src := source{kind: kindOutbox, name: o.Name, outbox: o}
		if only == "" || only == src.key() {
			out = append(out, src)
		}
	}
	return out
}

// scanPage is how many dead letters one read fetches.
const scanPage = 500

// scan calls fn for each dead letter of src, oldest first, up to
// ScanLimit, until fn returns false; a stream's letters are summaries
// from its index (no event, envelope or redrive fields: find reads those).
// It returns the source's total count and whether the scan stopped at the
// limit.
func (c *Console) scan(ctx context.Context, src source, fn func(letter) bool) (total int64, limited bool, err error) {
	if src.kind == kindStream {
		ls, n, limited, err := c.index(src).snapshot(ctx, c, src)
		if err != nil {
			return n, false, err
		}
		for _, l := range ls {
			if !fn(letter{Letter: l, src: src}) {
				break
			}
		}
		return n, limited, nil
	}
	return c.scanFull(ctx, src, fn)
}

// index returns the summaries index of a dead-letter stream.
func (c *Console) index(src source) *streamIndex {
	c.indexMu.Lock()
	defer c.indexMu.Unlock()
	x := c.indexes[src.name]
	if x == nil {
		x = &streamIndex{}
		c.indexes[src.name] = x
	}
	return x
}

// scanFull is scan with every letter read whole.
func (c *Console) scanFull(ctx context.Context, src source, fn func(letter) bool) (total int64, limited bool, err error) {
	limit := c.cfg.ScanLimit
	seen := 0
	switch src.kind {
	case kindStream:
		if total, err = c.cfg.Redis.XLen(ctx, src.name).Result(); err != nil {
			return 0, false, fmt.Errorf("console: reading %s: %w", src.name, err)
		}
		start := "-"
		for {
			page, err := redisstream.RangeEntries(ctx, c.cfg.Redis, src.name, start, "+", scanPage)
			if err != nil {
				return total, false, fmt.Errorf("console: reading %s: %w", src.name, err)
			}
			for _, e := range page {
				if limit > 0 && seen >= limit {
					return total, true, nil
				}
				seen++
				if !fn(streamLetter(src, e)) {
					return total, false, nil
				}
			}
			if len(page) < scanPage {
				return total, false, nil
			}
			start = "(" + page[len(page)-1].ID
		}
	case kindOutbox:
		ob := src.outbox.Outbox
		if total, err = ob.CountDeadLetters(ctx, outbox.Filter{}); err != nil {
			return 0, false, fmt.Errorf("console: %w", err)
		}
		var after int64
		for {
			page, err := ob.DeadLetters(ctx, outbox.Filter{AfterSeq: after}, scanPage)
			if err != nil {
				return total, false, fmt.Errorf("console: %w", err)
			}
			for _, d := range page {
				if limit > 0 && seen >= limit {
					return total, true, nil
				}
				seen++
				if !fn(outboxLetter(src, d)) {
					return total, false, nil
				}
			}
			if len(page) < scanPage {
				return total, false, nil
			}
			after = page[len(page)-1].Seq
		}
	}
	return 0, false, fmt.Errorf("%w: source kind %q", ErrNotFound, src.kind)
}

// find returns dead letter id of the source with key srcKey.
func (c *Console) find(ctx context.Context, srcKey, id string) (letter, error) {
	srcs := c.sources(srcKey)
	if len(srcs) != 1 {
		return letter{}, fmt.Errorf("%w: source %q", ErrNotFound, srcKey)
	}
	src := srcs[0]
	switch src.kind {
	case kindStream:
		page, err := redisstream.RangeEntries(ctx, c.cfg.Redis, src.name, id, id, 1)
		if err != nil {
			return letter{}, fmt.Errorf("console: reading %s: %w", src.name, err)
		}
		if len(page) == 0 {
			return letter{}, fmt.Errorf("%w: dead letter %s on %s", ErrNotFound, id, src.name)
		}
		return streamLetter(src, page[0]), nil
	default:
		seq, err := strconv.ParseInt(id, 10, 64)
		if err != nil || seq <= 0 {
			return letter{}, fmt.Errorf("%w: dead letter %q of outbox %s", ErrNotFound, id, src.name)
		}
		page, err := src.outbox.Outbox.DeadLetters(ctx, outbox.Filter{AfterSeq: seq - 1}, 1)
		if err != nil {
			return letter{}, fmt.Errorf("console: %w", err)
		}
		if len(page) == 0 || page[0].Seq != seq {
			return letter{}, fmt.Errorf("%w: dead letter %d of outbox %s", ErrNotFound, seq, src.name)
		}
		return outboxLetter(src, page[0]), nil
	}
}

func streamLetter(src source, e redisstream.Entry) letter {
	dl, rerr := redisstream.ReadDeadLetterEntry(e)
	env := dl.Envelope
	l := letter{src: src, dl: dl, readErr: rerr, event: env.Event}
	typ := dl.Type
	if typ == "" {
		typ = env.Event.Type
	}
	l.Letter = Letter{Source: src.key(), ID: e.ID, EventID: env.Event.Meta.ID, CorrelationID: env.Event.Meta.CorrelationID,
		CausationID: env.Event.Meta.CausationID, Type: typ, Reason: env.Reason,
		Error: env.Error.Message, ErrorType: env.ErrorType, Handler: env.HandlerName, Attempts: env.Attempts,
		FirstFailedAt: env.FirstFailedAt, LastFailedAt: env.LastFailedAt, OriginalStream: dl.OriginalStream,
		Group: dl.Group}
	if rerr != nil {
		l.Unreadable = rerr.Error()
		l.Type, l.Error = "(unreadable)", rerr.Error()
	}
	if l.FirstFailedAt.IsZero() {
		l.FirstFailedAt = entryTime(e.ID)
	}
	if l.LastFailedAt.IsZero() {
		l.LastFailedAt = entryTime(e.ID)
	}
	// Whether it can go back, without encoding it (RedriveFields does,
	// when a redrive needs the fields).
	l.Redrivable, l.NoRedrive = redrivability(src, dl.OriginalStream, dl.Truncated > 0,
		len(dl.RawFields) > 0 || rerr == nil && env.Raw == nil && env.Event.Type != "")
	l.Cause = causeOf(l.Type, l.Reason, l.Error)
	return l
}

func outboxLetter(src source, d outbox.DeadLetter) letter {
	l := letter{src: src, row: d}
	l.Letter = Letter{Source: src.key(), ID: strconv.FormatInt(d.Seq, 10), EventID: d.EventID, Type: d.Type,
		Reason: reasonOutbox, Error: d.Error, Attempts: d.Attempts, FirstFailedAt: d.FirstFailedAt,
		LastFailedAt: d.LastFailedAt, OriginalStream: d.Topic, Redrivable: true}
	if d.Message != nil {
		if ev, err := arc.FromMessage(d.Message); err == nil {
			l.event = ev
			l.CorrelationID, l.CausationID = ev.Meta.CorrelationID, ev.Meta.CausationID
		} else {
			l.Unreadable = err.Error()
		}
	} else {
		l.Unreadable = "the row's message is malformed"
	}
	l.Cause = causeOf(l.Type, l.Reason, l.Error)
	return l
}

// entryTime is the time in a stream entry id ("<ms>-<seq>").
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// maxCauseMessage bounds a normalised message.
const maxCauseMessage = 200

// NormalizeError masks what varies between failures of one cause in an
// error message: quoted values become <str>, UUIDs <id>, hex ids of 8 or
// more digits <hex> and numbers <n>, and runs of white space one space, so
// that "order 42 not found" and "order 7 not found" both read
// "order <n> not found". It is a single pass without regular expressions:
// grouping runs it on every dead letter.
func NormalizeError(msg string) string {
	var out strings.Builder
	out.Grow(min(len(msg), maxCauseMessage+8))
	space := false
	for i := 0; i < len(msg) && out.Len() < maxCauseMessage+8; {
		ch := msg[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			space = true
			i++
			continue
		case ch == '"' || ch == '\'' || ch == '`':
			if j := strings.IndexByte(msg[i+1:], ch); j >= 0 {
				writeSpace(&out, &space)
				out.WriteString("<str>")
				i += j + 2
				continue
			}
		case isWordByte(ch):
			j := i
			for j < len(msg) && (isWordByte(msg[j]) || msg[j] == '-') {
				j++
			}
			writeSpace(&out, &space)
			maskWord(&out, msg[i:j])
			i = j
			continue
		}
		writeSpace(&out, &space)
		out.WriteByte(ch)
		i++
	}
	s := out.String()
	if len(s) > maxCauseMessage {
		s = s[:maxCauseMessage-3] + "..."
	}
	return s
}

func writeSpace(b *strings.Builder, pending *bool) {
	if *pending && b.Len() > 0 {
		b.WriteByte(' ')
	}
	*pending = false
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// maskWord writes a word (letters, digits, _ and -): a UUID as <id>, else
// each dash-separated part masked on its own.
func maskWord(b *strings.Builder, w string) {
	if isUUID(w) {
		b.WriteString("<id>")
		return
	}
	for k, part := range strings.Split(w, "-") {
		if k > 0 {
			b.WriteByte('-')
		}
		switch {
		case part == "":
		case allDigits(part):
			b.WriteString("<n>")
		case len(part) >= 8 && isHexID(part):
			b.WriteString("<hex>")
		default:
			b.WriteString(part)
		}
	}
}

func isUUID(w string) bool {
	if len(w) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if w[i] != '-' {
				return false
			}
		} else if !isHex(w[i]) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isHexID reports hex digits with at least one decimal digit among them,
// so that words such as "facade" stay words.
func isHexID(s string) bool {
	digit := false
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
		digit = digit || s[i] <= '9'
	}
	return digit
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// causeOf is the failure group of a dead letter.
func causeOf(typ, reason, msg string) string {
	h := sha256.Sum256([]byte(typ + "\x00" + reason + "\x00" + NormalizeError(msg)))
	return hex.EncodeToString(h[:6])
}
