package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/wildcard"
)

// Tail settings.
const (
	// DefaultMaxTails caps the live tails served at once: each holds a
	// Redis connection in a blocking read.
	DefaultMaxTails = 16
	// tailBlock is how long one XREAD waits: the longest a tail takes to
	// notice that its client left or the console closed.
	tailBlock = time.Second
	// tailBatch is the entries one XREAD returns at most.
	tailBatch = 100
)

// TailEvent is one event of a live tail, as the SSE "event" messages carry
// it.
type TailEvent struct {
	// EntryID is the stream entry's id.
	EntryID string `json:"entryId"`
	// Type, EventID, Time, Source, CorrelationID and CausationID come
	// from the event.
	Type          string    `json:"type"`
	EventID       string    `json:"eventId,omitempty"`
	Time          time.Time `json:"time,omitzero"`
	Source        string    `json:"source,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	CausationID   string    `json:"causationId,omitempty"`
	// Event is the event in Arc's wire JSON, payload redacted unless
	// exposed.
	Event json.RawMessage `json:"event,omitempty"`
	// Unreadable says why the entry is no Arc event.
	Unreadable string `json:"unreadable,omitempty"`
}

// tailStream resolves the stream a tail may read: a configured stream or
// its dead-letter stream, never any other key.
func (c *Console) tailStream(name string) (string, bool) {
	for _, s := range c.cfg.Streams {
		if name == s.Name || name == s.DeadLetter {
			return name, true
		}
	}
	if name == "" && len(c.cfg.Streams) > 0 {
		return c.cfg.Streams[0].Name, true
	}
	return "", false
}

// apiTail serves GET /api/tail?stream=&pattern= as Server-Sent Events:
// the events appended to the stream from now on whose type matches the
// pattern (Arc's wildcard patterns; default every type).
func (c *Console) apiTail(w http.ResponseWriter, r *http.Request) {
	stream, ok := c.tailStream(r.URL.Query().Get("stream"))
	if !ok {
		c.fail(w, r, fmt.Errorf("%w: stream %q is not one the console shows", ErrNotFound, r.URL.Query().Get("stream")))
		return
	}
	patternText := r.URL.Query().Get("pattern")
	if patternText == "" {
		patternText = "*"
	}
	pattern, err := wildcard.Parse(patternText)
	if err != nil {
		c.fail(w, r, fmt.Errorf("%w: pattern: %v", ErrInvalidConfig, err))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		c.refuse(w, r, http.StatusInternalServerError, "streaming is not supported by this server")
		return
	}
	select {
	case c.tailSlots <- struct{}{}:
		defer func() { <-c.tailSlots }()
	default:
		c.refuse(w, r, http.StatusServiceUnavailable, "too many live tails: close one and try again")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(c.closing, cancel) // Close ends every tail
	defer stop()
	c.tailWG.Add(1)
	defer c.tailWG.Done()

	// Where the tail starts: the newest entry now, before "ready" is
	// sent, so that whatever is appended after the client sees "ready"
	// reaches it. ("$" on each XREAD would skip what lands between two.)
	last := "0-0" // an empty stream: from its first entry
	ids, err := c.cfg.Redis.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		c.fail(w, r, fmt.Errorf("console: reading %s: %w", stream, err))
		return
	}
	if len(ids) == 1 {
		last = ids[0].ID
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\nevent: ready\ndata: {\"stream\":%q,\"pattern\":%q}\n\n", stream, pattern.String())
	flusher.Flush()

	for ctx.Err() == nil {
		res, err := c.cfg.Redis.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, last}, Count: tailBatch,
			Block: tailBlock}).Result()
		if errors.Is(err, redis.Nil) {
			if _, werr := fmt.Fprint(w, ": keep-alive\n\n"); werr != nil {
				return
			}
			flusher.Flush()
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(w, "event: failure\ndata: %q\n\n", err.Error())
				flusher.Flush()
			}
			return
		}
		for _, m := range res[0].Messages {
			last = m.ID
			ev, match := c.tailEvent(m, pattern)
			if !match {
				continue
			}
			b, _ := json.Marshal(ev)
			if _, werr := fmt.Fprintf(w, "id: %s\nevent: event\ndata: %s\n\n", m.ID, b); werr != nil {
				return
			}
		}
		flusher.Flush()
	}
}

// tailEvent reads an entry for a tail, and whether its type matches.
func (c *Console) tailEvent(m redis.XMessage, p wildcard.Pattern) (TailEvent, bool) {
	typ, _ := m.Values[redisstream.FieldType].(string)
	data, _ := m.Values[redisstream.FieldData].(string)
	out := TailEvent{EntryID: m.ID, Type: typ}
	var ev arc.Event
	if err := arc.Unmarshal([]byte(data), &ev); err != nil {
		out.Unreadable = err.Error()
		return out, typ != "" && p.Match(typ)
	}
	if out.Type == "" {
		out.Type = ev.Type
	}
	out.EventID, out.Time, out.Source = ev.Meta.ID, ev.Meta.Timestamp, ev.Meta.Source
	out.CorrelationID, out.CausationID = ev.Meta.CorrelationID, ev.Meta.CausationID
	out.Event = eventJSON(ev, c.cfg.ExposePayloads)
	return out, p.Match(out.Type)
}

// tailView is the live-tail page.
type tailView struct {
	Streams []string
	Stream  string
	Pattern string
}

func (c *Console) tailPage(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, s := range c.cfg.Streams {
		names = append(names, s.Name, s.DeadLetter)
	}
	stream, _ := c.tailStream(r.URL.Query().Get("stream"))
	c.render(w, r, "tail.html", "Live tail", "tail", tailView{Streams: names, Stream: stream, Pattern: r.URL.Query().Get("pattern")})
}
