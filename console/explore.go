package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/arcmill/arcmill/adapters/redisstream"
)

// DefaultExploreLimit bounds the stream entries, and the outbox rows, the
// event explorer reads (newest first, per stream and per outbox) to build
// a causation tree.
const DefaultExploreLimit = 10_000

// Node is one event in a causation tree.
type Node struct {
	// EventID, Type, Time, Source, CorrelationID and CausationID come
	// from the event's meta.
	EventID       string    `json:"eventId"`
	Type          string    `json:"type"`
	Time          time.Time `json:"time,omitzero"`
	Source        string    `json:"source,omitempty"`
	CorrelationID string    `json:"correlationId,omitempty"`
	CausationID   string    `json:"causationId,omitempty"`
	// Stream and EntryID locate it on a stream, when found there.
	Stream  string `json:"stream,omitempty"`
	EntryID string `json:"entryId,omitempty"`
	// Outbox, Row and RowStatus locate it in an outbox, when its row was
	// read there (Outbox.DB set): the outbox's Name, the row's sequence
	// number, and RowPending, RowDelivered or RowDead.
	Outbox    string `json:"outbox,omitempty"`
	Row       int64  `json:"row,omitempty"`
	RowStatus string `json:"rowStatus,omitempty"`
	// Outcome is what is known of its handling: "dead-lettered (reason):
	// error" when a dead letter holds it; else, for an outbox row,
	// "delivered by the relay at …", "pending in outbox …" (with its
	// failed attempts) or "dead in outbox …: error"; "" when nothing is
	// known (a stream does not record successes).
	Outcome string `json:"outcome,omitempty"`
	// Letter is its dead letter, when it has one.
	Letter *LetterRef `json:"letter,omitempty"`
	// Children are the events it caused.
	Children []*Node `json:"children,omitempty"`
}

// Exploration is the causation tree of an event or a correlation id.
type Exploration struct {
	// Query is the event id or correlation id asked for.
	Query string `json:"query"`
	// Roots are the trees' roots, oldest first.
	Roots []*Node `json:"roots"`
	// Count counts the nodes.
	Count int `json:"count"`
	// Scanned counts the stream entries read; Limit is the bound, and
	// Limited is true when a stream held more (older events may be missing).
	Scanned int  `json:"scanned"`
	Limit   int  `json:"limit"`
	Limited bool `json:"limited"`
	// OutboxScanned counts the outbox rows read (Limit per outbox);
	// OutboxLimited is true when an outbox held more.
	OutboxScanned int  `json:"outboxScanned"`
	OutboxLimited bool `json:"outboxLimited"`
	// DeadOnly names the outboxes configured without a DB: only their dead
	// letters were read (the outbox package lists no other rows).
	DeadOnly []string `json:"deadOnly,omitempty"`
}

// eventHead is the part of an event the explorer reads.
type eventHead struct {
	Type string `json:"type"`
	Meta struct {
		ID            string `json:"id"`
		Timestamp     string `json:"timestamp"`
		Source        string `json:"source"`
		CorrelationID string `json:"correlationId"`
		CausationID   string `json:"causationId"`
	} `json:"meta"`
}

// explore builds the causation tree around q: the events whose id or
// correlation id is q, every event sharing their correlation id, and
// their dead letters, from the newest ExploreLimit entries of each stream,
// the newest ExploreLimit rows of each outbox with a DB, and every
// dead-letter source. An event found on a stream and in an outbox is one
// node that says both.
func (c *Console) explore(ctx context.Context, q string) (Exploration, error) {
	x := Exploration{Query: q, Roots: []*Node{}, Limit: DefaultExploreLimit}
	var all []*Node
	for _, s := range c.cfg.Streams {
		nodes, n, limited, err := c.exploreStream(ctx, s.Name, x.Limit)
		if err != nil {
			return x, err
		}
		x.Scanned += n
		x.Limited = x.Limited || limited
		all = append(all, nodes...)
	}
	type placed struct {
		row  outboxRow
		name string
	}
	var rows []placed
	for _, ob := range c.cfg.Outboxes {
		if ob.DB == nil {
			x.DeadOnly = append(x.DeadOnly, ob.Name)
			continue
		}
		rs, n, limited, err := c.exploreOutbox(ctx, ob, x.Limit)
		if err != nil {
			return x, err
		}
		x.OutboxScanned += n
		x.OutboxLimited = x.OutboxLimited || limited
		for _, r := range rs {
			rows = append(rows, placed{r, ob.Name})
		}
	}
	// Dead letters: their events, and what happened to them.
	letters := map[string]Letter{}
	if _, err := c.each(ctx, Filter{}, func(l letter) bool {
		if l.EventID != "" {
			letters[l.EventID] = l.Letter
		}
		return true
	}); err != nil {
		return x, err
	}
	byID := map[string]*Node{}
	for _, n := range all {
		if _, dup := byID[n.EventID]; !dup {
			byID[n.EventID] = n
		}
	}
	// Outbox rows: an event already on a stream (the relay delivered it
	// there) keeps its stream node, which learns of the row.
	rowOf := map[string]placed{}
	for _, r := range rows {
		if _, dup := rowOf[r.row.node.EventID]; dup {
			continue // the newest row stands for an event written twice
		}
		rowOf[r.row.node.EventID] = r
		if _, ok := byID[r.row.node.EventID]; !ok {
			byID[r.row.node.EventID] = r.row.node
			all = append(all, r.row.node)
		}
	}
	for id, l := range letters {
		if _, ok := byID[id]; !ok {
			n := &Node{EventID: id, Type: l.Type, Time: l.FirstFailedAt, CorrelationID: l.CorrelationID,
				CausationID: l.CausationID}
			byID[id] = n
			all = append(all, n)
		}
	}
	// The chains asked for: q as an event id or a correlation id, widened
	// to the correlation ids of the events found.
	corr := map[string]bool{q: true}
	if n, ok := byID[q]; ok && n.CorrelationID != "" {
		corr[n.CorrelationID] = true
	}
	var picked []*Node
	for _, n := range all {
		if byID[n.EventID] != n {
			continue // a second copy of an event (a redrive): the first stands for it
		}
		if n.EventID == q || corr[n.CorrelationID] {
			picked = append(picked, n)
		}
	}
	inTree := map[string]bool{}
	for _, n := range picked {
		inTree[n.EventID] = true
		if l, ok := letters[n.EventID]; ok {
			reason := l.Reason
			if reason == "" {
				reason = "dead-lettered"
			}
			n.Outcome = fmt.Sprintf("dead-lettered (%s): %s", reason, l.Error)
			n.Letter = &LetterRef{Source: l.Source, ID: l.ID}
		}
		if r, ok := rowOf[n.EventID]; ok {
			r.row.place(n, r.name)
		}
	}
	slices.SortFunc(picked, func(a, b *Node) int { return a.Time.Compare(b.Time) })
	for _, n := range picked {
		if p := byID[n.CausationID]; n.CausationID != "" && inTree[n.CausationID] && p != n {
			p.Children = append(p.Children, n)
		} else {
			x.Roots = append(x.Roots, n)
		}
	}
	x.Count = len(picked)
	return x, nil
}

// exploreStream reads up to limit entries of stream, newest first, as
// nodes.
func (c *Console) exploreStream(ctx context.Context, stream string, limit int) ([]*Node, int, bool, error) {
	var out []*Node
	end, read := "+", 0
	for read < limit {
		want := min(scanPage, limit-read)
		msgs, err := c.cfg.Redis.XRevRangeN(ctx, stream, end, "-", int64(want)).Result()
		if err != nil {
			return nil, read, false, fmt.Errorf("console: reading %s: %w", stream, err)
		}
		for _, m := range msgs {
			read++
			data, _ := m.Values[redisstream.FieldData].(string)
			var h eventHead
			if json.Unmarshal([]byte(data), &h) != nil || h.Meta.ID == "" {
				continue
			}
			if typ, _ := m.Values[redisstream.FieldType].(string); h.Type == "" {
				h.Type = typ
			}
			out = append(out, &Node{EventID: h.Meta.ID, Type: h.Type, Time: failureTime(h.Meta.Timestamp),
				Source: h.Meta.Source, CorrelationID: h.Meta.CorrelationID, CausationID: h.Meta.CausationID,
				Stream: stream, EntryID: m.ID})
		}
		if len(msgs) < want {
			return out, read, false, nil // the whole stream was read
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	n, err := c.cfg.Redis.XLen(ctx, stream).Result()
	return out, read, err == nil && n > int64(read), nil
}

func (c *Console) apiExplore(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		c.fail(w, r, fmt.Errorf("%w: q (an event id or correlation id) is required", ErrInvalidConfig))
		return
	}
	x, err := c.explore(r.Context(), q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func (c *Console) explorePage(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var x *Exploration
	if q != "" {
		e, err := c.explore(r.Context(), q)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		x = &e
	}
	c.render(w, r, "explore.html", "Event explorer", "explore", struct {
		Query string
		X     *Exploration
	}{q, x})
}
