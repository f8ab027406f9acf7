package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/ctxsleep"
)

// streamDLQ is a dead-letter stream in Arc's layout, filtered.
type streamDLQ struct {
	client redis.UniversalClient
	stream string
	types  []string
	ids    []string
}

// check says what is wrong with --stream before anything is read or
// changed: a stream that does not exist (a typo, or nothing was ever
// dead-lettered there), or a stream of events rather than dead letters.
func (d *streamDLQ) check(ctx context.Context) error {
	n, err := d.client.Exists(ctx, d.stream).Result()
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.stream, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: dead-letter stream %q does not exist: nothing was ever dead-lettered there, or --stream "+
			"is mistyped (Arc's is %s)", errNotFound, d.stream, redisstream.ArcDeadLetterStream)
	}
	sample, err := redisstream.RangeEntries(ctx, d.client, d.stream, "-", "+", 10)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.stream, err)
	}
	events := 0
	for _, m := range sample {
		values := m.Map()
		if _, ok := values[redisstream.FieldOriginalStream]; ok {
			return nil // a dead letter
		}
		data, _ := values[redisstream.FieldData].(string)
		var ev arc.Event
		if arc.Unmarshal([]byte(data), &ev) == nil && ev.Type != "" {
			events++
		}
	}
	if events > 0 && events == len(sample) {
		return usageErr("%s holds Arc events, not dead letters: its dead letters are on %s:dlq (--stream %s:dlq)",
			d.stream, d.stream, d.stream)
	}
	return nil
}

// entry is one dead letter as read, or why it cannot be read.
type entry struct {
	raw redisstream.Entry
	dl  redisstream.DeadLetterEntry
	err error
}

// field is a field's value in a dead-letter entry ("" when absent).
func (e entry) field(name string) string {
	v, _ := e.raw.Map()[name].(string)
	return v
}

func (d *streamDLQ) matches(e entry) bool {
	if len(d.types) > 0 && !slices.Contains(d.types, e.dl.Type) && !slices.Contains(d.types, e.dl.Envelope.Event.Type) {
		return false
	}
	if len(d.ids) > 0 && !slices.Contains(d.ids, e.dl.Envelope.Event.Meta.ID) && !slices.Contains(d.ids, e.raw.ID) {
		return false
	}
	return true
}

// each walks the stream oldest first, in pages, calling fn for each
// matching entry until fn says stop.
func (d *streamDLQ) each(ctx context.Context, fn func(entry) (stop bool, err error)) error {
	start := "-"
	for {
		page, err := redisstream.RangeEntries(ctx, d.client, d.stream, start, "+", 200)
		if err != nil {
			return fmt.Errorf("reading %s: %w", d.stream, err)
		}
		for _, m := range page {
			dl, rerr := redisstream.ReadDeadLetterEntry(m)
			e := entry{raw: m, dl: dl, err: rerr}
			if !d.matches(e) {
				continue
			}
			if stop, err := fn(e); stop || err != nil {
				return err
			}
		}
		if len(page) < 200 {
			return nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

func entryJSON(e entry) map[string]any {
	env := e.dl.Envelope
	out := map[string]any{"entryId": e.raw.ID, "type": e.dl.Type, "eventId": env.Event.Meta.ID,
		"originalStream": e.dl.OriginalStream, "originalId": e.dl.OriginalID, "group": e.dl.Group,
		"attempts": env.Attempts, "reason": env.Reason, "error": env.Error.Message, "handler": env.HandlerName}
	if e.err != nil {
		out["unreadable"] = e.err.Error()
	}
	return out
}

// list prints up to limit matching dead letters (0: all), oldest first,
// and says on stderr how many of how many it showed.
func (d *streamDLQ) list(ctx context.Context, e env, p printer, limit int) error {
	shown, total := 0, 0
	err := d.each(ctx, func(e entry) (bool, error) {
		total++
		if limit > 0 && shown >= limit {
			return false, nil // counted, not shown
		}
		shown++
		env := e.dl.Envelope
		return false, p.value(entryJSON(e), func(w io.Writer) {
			if e.err != nil {
				fmt.Fprintf(w, "%s  UNREADABLE  %v\n", e.raw.ID, e.err)
				return
			}
			reason := env.Reason
			if reason == "" {
				reason = "-" // Arc's own envelopes have none
			}
			fmt.Fprintf(w, "%s  %-24s event=%s  attempts=%d  reason=%s  from=%s  error=%q\n", e.raw.ID, e.dl.Type,
				env.Event.Meta.ID, env.Attempts, reason, e.dl.OriginalStream, env.Error.Message)
		})
	})
	if err != nil {
		return err
	}
	return shownOf(e, shown, total, d.stream, d.filtered())
}

// filtered reports whether --type or --id narrows the dead letters.
func (d *streamDLQ) filtered() bool { return len(d.types) > 0 || len(d.ids) > 0 }

// shownOf reports on stderr how many dead letters a list showed; none
// matching a filter is "nothing matched".
func shownOf(e env, shown, total int, where string, filtered bool) error {
	if total == 0 && filtered {
		return fmt.Errorf("%w: no dead letter on %s matches --type/--id", errNotFound, where)
	}
	more := ""
	if shown < total {
		more = "; --limit N or --all for more, --summary for counts"
	}
	fmt.Fprintf(e.stderr, "showing %d of %d dead letter(s) on %s, oldest first%s\n", shown, total, where, more)
	return nil
}

// summary counts dead letters by type, reason and error.
type summary struct {
	Where    string         `json:"of"`
	Total    int            `json:"total"`
	ByType   map[string]int `json:"byType"`
	ByReason map[string]int `json:"byReason"`
	ByError  map[string]int `json:"byError"`
}

func newSummary(where string) *summary {
	return &summary{Where: where, ByType: map[string]int{}, ByReason: map[string]int{}, ByError: map[string]int{}}
}

func (s *summary) add(typ, reason, errMsg string) {
	s.Total++
	if reason == "" {
		reason = "-"
	}
	if len(errMsg) > 100 {
		errMsg = errMsg[:97] + "..."
	}
	s.ByType[typ]++
	s.ByReason[reason]++
	s.ByError[errMsg]++
}

func (s *summary) print(p printer) error {
	return p.value(s, func(w io.Writer) {
		fmt.Fprintf(w, "%d dead letter(s) on %s\n", s.Total, s.Where)
		for _, part := range []struct {
			title  string
			counts map[string]int
		}{{"by type", s.ByType}, {"by reason", s.ByReason}, {"by error", s.ByError}} {
			fmt.Fprintf(w, "\n%s:\n", part.title)
			keys := make([]string, 0, len(part.counts))
			for k := range part.counts {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b string) int {
				if c := part.counts[b] - part.counts[a]; c != 0 {
					return c
				}
				return strings.Compare(a, b)
			})
			for _, k := range keys {
				fmt.Fprintf(w, "  %7d  %s\n", part.counts[k], k)
			}
		}
	})
}

// summarize prints the counts of the matching dead letters.
func (d *streamDLQ) summarize(ctx context.Context, p printer) error {
	s := newSummary(d.stream)
	err := d.each(ctx, func(e entry) (bool, error) {
		typ, reason, msg := e.dl.Type, e.dl.Envelope.Reason, e.dl.Envelope.Error.Message
		if e.err != nil {
			typ, reason, msg = "(unreadable)", "-", e.err.Error()
		}
		s.add(typ, reason, msg)
		return false, nil
	})
	if err != nil {
		return err
	}
	if s.Total == 0 && d.filtered() {
		return fmt.Errorf("%w: no dead letter on %s matches --type/--id", errNotFound, d.stream)
	}
	return s.print(p)
}

func (d *streamDLQ) show(ctx context.Context, p printer, id string) error {
	found := false
	d.ids = append(d.ids, id)
	err := d.each(ctx, func(e entry) (bool, error) {
		found = true
		data := e.field(redisstream.FieldData)
		out := map[string]any{"entry": entryJSON(e), "data": jsonOrString(data)}
		if len(e.dl.RawFields) > 0 {
			out["originalFields"] = e.dl.RawFields
		}
		return true, p.value(out, func(w io.Writer) {
			fmt.Fprintf(w, "entry:            %s\ntype:             %s\noriginal stream:  %s\noriginal id:      %s\n"+
				"group:            %s\n", e.raw.ID, e.dl.Type, e.dl.OriginalStream, e.dl.OriginalID, e.dl.Group)
			if e.err != nil {
				fmt.Fprintf(w, "unreadable:       %v\n", e.err)
			}
			for i := 0; i+1 < len(e.dl.RawFields); i += 2 {
				fmt.Fprintf(w, "original field:   %s = %q\n", e.dl.RawFields[i], e.dl.RawFields[i+1])
			}
			fmt.Fprintf(w, "data:\n%s\n", indented(data))
		})
	})
	if err == nil && !found {
		return fmt.Errorf("%w: no dead letter %q on %s", errNotFound, id, d.stream)
	}
	return err
}

// Trim settings of a redrive (--trim).
const (
	trimAuto = "auto"
	trimArc  = "arc"
	trimSafe = "safe"
	trimNone = "none"
)

// trimRule is how a redrive trims its target stream.
type trimRule struct {
	maxLen int64 // MAXLEN ~ on each XADD; 0: none
	auto   bool  // Arc's MAXLEN for Arc's stream only
	safe   bool  // SafeTrim each target afterwards
}

func parseTrim(s string) (trimRule, error) {
	switch s {
	case trimAuto, "":
		return trimRule{maxLen: redisstream.ArcMaxLen, auto: true}, nil
	case trimArc:
		return trimRule{maxLen: redisstream.ArcMaxLen}, nil
	case trimSafe:
		return trimRule{safe: true}, nil
	case trimNone:
		return trimRule{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return trimRule{}, usageErr("--trim wants auto, arc, safe, none or a positive MAXLEN, not %q", s)
	}
	return trimRule{maxLen: n}, nil
}

// maxLenFor is the MAXLEN ~ of an XADD to target; 0 for none.
func (r trimRule) maxLenFor(target string) int64 {
	if r.auto && target != redisstream.ArcStream {
		return 0
	}
	return r.maxLen
}

// redriveOpts are the flags of a stream redrive.
type redriveOpts struct {
	to    string
	limit int
	rate  float64
	trim  trimRule
}

// redriveFields is what a dead letter is put back as
// (redisstream.RedriveFields).
func redriveFields(en entry) ([]string, bool) { return redisstream.RedriveFields(en.dl, en.err) }

// redrive moves matching dead letters back, oldest first, each atomically
// (redisstream.RedriveEntry), so a redrive interrupted at any point and run again, or
// two run at once, redrive nothing twice.
func (d *streamDLQ) redrive(ctx context.Context, e env, p printer, o redriveOpts) error {
	total := int64(0)
	if err := d.each(ctx, func(entry) (bool, error) { total++; return false, nil }); err != nil {
		return err
	}
	if total == 0 && d.filtered() {
		return fmt.Errorf("%w: no dead letter on %s matches --type/--id", errNotFound, d.stream)
	}
	if o.limit > 0 {
		total = min(total, int64(o.limit))
	}
	bar := newProgress(e.stderr, total)
	moved, skipped := 0, 0
	targets := map[string]bool{}
	start := time.Now()
	err := d.each(ctx, func(en entry) (bool, error) {
		fields, ok := redriveFields(en)
		target := o.to
		if target == "" {
			target = en.dl.OriginalStream
		}
		if !ok || target == "" {
			skipped++ // nothing to replay, or nowhere to put it
			return false, nil
		}
		ok, err := redisstream.RedriveEntry(ctx, d.client, d.stream, en.raw.ID, target, o.trim.maxLenFor(target), fields)
		if err != nil {
			return true, err
		}
		if !ok {
			return false, nil // a concurrent redrive took it
		}
		targets[target] = true
		moved++
		bar.set(int64(moved + skipped))
		if o.limit > 0 && moved >= o.limit {
			return true, nil
		}
		if o.rate > 0 {
			due := start.Add(time.Duration(float64(moved) / o.rate * float64(time.Second)))
			if !ctxsleep.Sleep(ctx, time.Until(due)) {
				return true, ctx.Err()
			}
		}
		return false, nil
	})
	bar.done()
	if o.trim.safe {
		for target := range targets {
			if _, terr := redisstream.SafeTrim(context.WithoutCancel(ctx), d.client, target); terr != nil {
				fmt.Fprintf(e.stderr, "trimming %s: %v\n", target, terr)
			}
		}
	}
	where := "their original streams"
	if o.to != "" {
		where = o.to
	}
	fmt.Fprintf(e.stderr, "redriven %d dead letter(s) to %s; skipped %d (unreadable, kept only as an excerpt, or without a stream: use --to)\n",
		moved, where, skipped)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(e.stderr, "interrupted: run the same command again to go on")
	}
	return err
}

func (d *streamDLQ) purge(ctx context.Context, p printer, limit int) error {
	var ids []string
	if err := d.each(ctx, func(e entry) (bool, error) {
		ids = append(ids, e.raw.ID)
		return limit > 0 && len(ids) >= limit, nil
	}); err != nil {
		return err
	}
	if len(ids) == 0 && d.filtered() {
		return fmt.Errorf("%w: no dead letter on %s matches --type/--id", errNotFound, d.stream)
	}
	var n int64
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		c, err := d.client.XDel(ctx, d.stream, chunk...).Result()
		n += c
		if err != nil {
			return err
		}
	}
	return p.value(map[string]any{"purged": n, "stream": d.stream}, func(w io.Writer) {
		fmt.Fprintf(w, "purged %d dead letter(s) from %s\n", n, d.stream)
	})
}

// progress draws a bar on a terminal and nothing elsewhere.
type progress struct {
	w     io.Writer
	total int64
	on    bool
}

func newProgress(w io.Writer, total int64) *progress {
	return &progress{w: w, total: total, on: isTerminal(w) && total > 0}
}

func (p *progress) set(n int64) {
	if !p.on {
		return
	}
	const width = 30
	filled := int(min(n, p.total) * width / p.total)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), n, p.total)
}

func (p *progress) done() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}

// jsonOrString is raw JSON as itself in a JSON document, or as a string
// when it is not JSON.
func jsonOrString(s string) any {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return s
}

// indented is JSON indented for reading, or the text as it is.
func indented(s string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "  ", "  ") != nil {
		return "  " + s
	}
	return "  " + b.String()
}
