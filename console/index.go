package console

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
)

// streamIndex keeps the summaries (Letter) of one dead-letter stream's
// entries, oldest first, so that grouping and paging do not decode every
// envelope on every page load. Streams only append with growing ids, so a
// refresh reads the entries after the last one it holds; when the count no
// longer adds up (entries deleted by a redrive or purge elsewhere), it
// reads the stream again. Deletions made by this console are applied
// without a full read (forget).
type streamIndex struct {
	mu      sync.Mutex
	letters []Letter
	lastID  string
	lastLen int64
	built   bool
	limited bool
	gone    map[string]struct{} // ids this console removed since the last refresh
}

// forget notes that entry id was removed from the stream by this console.
func (x *streamIndex) forget(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.gone == nil {
		x.gone = map[string]struct{}{}
	}
	x.gone[id] = struct{}{}
}

// snapshot brings the index up to date and returns its letters (shared:
// read only), the stream's length and whether the index stops at limit.
func (x *streamIndex) snapshot(ctx context.Context, c *Console, src source) ([]Letter, int64, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	rdb := c.cfg.Redis
	n, err := rdb.XLen(ctx, src.name).Result()
	if err != nil {
		return nil, 0, false, fmt.Errorf("console: reading %s: %w", src.name, err)
	}
	limit := c.cfg.ScanLimit
	if x.built && x.limited && n == x.lastLen && len(x.gone) == 0 {
		return x.letters, n, true, nil
	}
	if x.built && !x.limited {
		if len(x.gone) > 0 {
			kept := x.letters[:0:0]
			for _, l := range x.letters {
				if _, g := x.gone[l.ID]; !g {
					kept = append(kept, l)
				}
			}
			x.letters, x.gone = kept, nil
		}
		fresh, err := readSummaries(ctx, c, src, "("+x.lastID, limit-len(x.letters))
		if err == nil && int64(len(x.letters)+len(fresh)) == n {
			x.append(fresh)
			x.lastLen = n
			return x.letters, n, false, nil
		}
	}
	// First read, or entries were removed elsewhere: read it all again.
	first := "-"
	letters, err := readSummaries(ctx, c, src, first, limit)
	if err != nil {
		x.built = false
		return nil, n, false, err
	}
	x.letters, x.lastID, x.gone, x.built = nil, "", nil, true
	x.append(letters)
	x.lastLen = n
	x.limited = limit > 0 && int64(len(letters)) < n && len(letters) >= limit
	return x.letters, n, x.limited, nil
}

func (x *streamIndex) append(ls []Letter) {
	if len(ls) == 0 {
		return
	}
	// A new slice, so that a snapshot handed out earlier never changes.
	grown := make([]Letter, 0, len(x.letters)+len(ls))
	x.letters = append(append(grown, x.letters...), ls...)
	x.lastID = ls[len(ls)-1].ID
}

// readSummaries reads up to limit (0: no limit) entries of src from start,
// as summaries.
func readSummaries(ctx context.Context, c *Console, src source, start string, limit int) ([]Letter, error) {
	var out []Letter
	if c.cfg.ScanLimit > 0 && limit <= 0 {
		return nil, nil
	}
	for {
		page, err := redisstream.RangeEntries(ctx, c.cfg.Redis, src.name, start, "+", scanPage)
		if err != nil {
			return nil, fmt.Errorf("console: reading %s: %w", src.name, err)
		}
		for _, e := range page {
			if c.cfg.ScanLimit > 0 && len(out) >= limit {
				return out, nil
			}
			out = append(out, summarize(src, e))
		}
		if len(page) < scanPage {
			return out, nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

// envelopeSummary is the part of a dead letter's envelope the lists show;
// decoding only it skips the payload, which is most of the bytes.
type envelopeSummary struct {
	Event struct {
		Type string `json:"type"`
		Meta struct {
			ID            string `json:"id"`
			CorrelationID string `json:"correlationId"`
			CausationID   string `json:"causationId"`
		} `json:"meta"`
	} `json:"event"`
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
	Attempts      int             `json:"attempts"`
	FirstFailedAt string          `json:"firstFailedAt"`
	LastFailedAt  string          `json:"lastFailedAt"`
	HandlerName   string          `json:"handlerName"`
	Reason        string          `json:"reason"`
	ErrorType     string          `json:"errorType"`
	Raw           json.RawMessage `json:"raw"`
}

// summarize reads the summary of a dead-letter entry, as streamLetter
// reads the whole of it.
func summarize(src source, e redisstream.Entry) Letter {
	var typ, data string
	rawFields, truncated := false, false
	for i := 0; i+1 < len(e.Fields); i += 2 {
		switch name := e.Fields[i]; {
		case name == redisstream.FieldType:
			typ = e.Fields[i+1]
		case name == redisstream.FieldData:
			data = e.Fields[i+1]
		case name == redisstream.RawFieldPrefix+redisstream.RawTruncatedField:
			truncated = true
		case strings.HasPrefix(name, redisstream.RawFieldPrefix):
			rawFields = true
		}
	}
	l := Letter{Source: src.key(), ID: e.ID, Type: typ}
	for i := 0; i+1 < len(e.Fields); i += 2 {
		switch e.Fields[i] {
		case redisstream.FieldOriginalStream:
			l.OriginalStream = e.Fields[i+1]
		case redisstream.FieldGroup:
			l.Group = e.Fields[i+1]
		}
	}
	var env envelopeSummary
	var readErr error
	if data == "" {
		readErr = fmt.Errorf("redisstream: dead-letter entry %s has no data", e.ID)
	} else if err := json.Unmarshal([]byte(data), &env); err != nil {
		readErr = fmt.Errorf("redisstream: dead-letter entry %s: %w", e.ID, err)
	}
	if l.Type == "" {
		l.Type = env.Event.Type
	}
	l.EventID, l.Reason, l.Error, l.ErrorType = env.Event.Meta.ID, env.Reason, env.Error.Message, env.ErrorType
	l.CorrelationID, l.CausationID = env.Event.Meta.CorrelationID, env.Event.Meta.CausationID
	l.Handler, l.Attempts = env.HandlerName, env.Attempts
	l.FirstFailedAt, l.LastFailedAt = failureTime(env.FirstFailedAt), failureTime(env.LastFailedAt)
	if readErr != nil {
		l.Unreadable = readErr.Error()
		l.Type, l.Error = "(unreadable)", readErr.Error()
	}
	if l.FirstFailedAt.IsZero() {
		l.FirstFailedAt = entryTime(e.ID)
	}
	if l.LastFailedAt.IsZero() {
		l.LastFailedAt = entryTime(e.ID)
	}
	hasRaw := len(env.Raw) > 0 && string(env.Raw) != "null"
	l.Redrivable, l.NoRedrive = redrivability(src, l.OriginalStream, truncated,
		rawFields || readErr == nil && !hasRaw && env.Event.Type != "")
	l.Cause = causeOf(l.Type, l.Reason, l.Error)
	return l
}

// failureTime reads firstFailedAt / lastFailedAt as the envelope's own
// decoder does: Arc's …sssZ, else any string Node reads as a date, else
// zero.
func failureTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	if t, err := arc.ParseTimestamp(s); err == nil {
		return t
	}
	t, _ := arc.NodeDate(s)
	return t
}
