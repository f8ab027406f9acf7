package console

import (
	"cmp"
	"context"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Filter narrows the dead letters listed or grouped. Empty fields select
// everything.
type Filter struct {
	// Source keeps one source ("stream:<dlq>" or "outbox:<name>").
	Source string `json:"source,omitempty"`
	// Type keeps one event type.
	Type string `json:"type,omitempty"`
	// Cause keeps one failure group.
	Cause string `json:"cause,omitempty"`
	// Query keeps letters whose type or error contain it, or whose id,
	// event id, correlation id or causation id it is.
	Query string `json:"q,omitempty"`
}

func filterFrom(q url.Values) Filter {
	return Filter{Source: q.Get("source"), Type: q.Get("type"), Cause: q.Get("cause"), Query: strings.TrimSpace(q.Get("q"))}
}

// Values is the filter as URL query values.
func (f Filter) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"source": f.Source, "type": f.Type, "cause": f.Cause, "q": f.Query} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

func (f Filter) match(l letter) bool {
	if f.Type != "" && l.Type != f.Type {
		return false
	}
	if f.Cause != "" && l.Cause != f.Cause {
		return false
	}
	if f.Query != "" {
		q := strings.ToLower(f.Query)
		if !strings.Contains(strings.ToLower(l.Type), q) && !strings.Contains(strings.ToLower(l.Error), q) &&
			l.EventID != f.Query && l.ID != f.Query && l.CorrelationID != f.Query && l.CausationID != f.Query {
			return false
		}
	}
	return true
}

// Group is a failure group: dead letters of one event type, reason and
// normalised error message.
type Group struct {
	// Cause identifies the group.
	Cause string `json:"cause"`
	// Type, Reason and Message are what the group's letters share;
	// Message is normalised (NormalizeError).
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Example is one letter's message as it was.
	Example string `json:"example"`
	// Count counts the group's letters.
	Count int `json:"count"`
	// FirstSeen and LastSeen bound their failures.
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Sources lists where they are.
	Sources []string `json:"sources"`
}

// Scan says how much of the dead letters a listing read.
type Scan struct {
	// Total counts every dead letter of the sources read.
	Total int64 `json:"total"`
	// Matched counts those read that matched the filter.
	Matched int `json:"matched"`
	// Limited is true when a source held more than ScanLimit letters:
	// those past it were counted in Total but not read.
	Limited bool `json:"limited"`
	// Errors name sources that could not be read.
	Errors []string `json:"errors,omitempty"`
}

// each calls fn for every dead letter matching f, source by source.
func (c *Console) each(ctx context.Context, f Filter, fn func(letter) bool) (Scan, error) {
	var s Scan
	stop := false
	for _, src := range c.sources(f.Source) {
		total, limited, err := c.scan(ctx, src, func(l letter) bool {
			if f.match(l) {
				s.Matched++
				if !fn(l) {
					stop = true
					return false
				}
			}
			return true
		})
		s.Total += total
		s.Limited = s.Limited || limited
		if err != nil {
			if ctx.Err() != nil {
				return s, ctx.Err()
			}
			c.cfg.Logger.Error("Console: reading dead letters", err, nil)
			s.Errors = append(s.Errors, src.key()+": "+err.Error())
		}
		if stop {
			break
		}
	}
	return s, nil
}

// groups returns the failure groups of the letters matching f, largest
// first.
func (c *Console) groups(ctx context.Context, f Filter) ([]Group, Scan, error) {
	byCause := map[string]*Group{}
	scan, err := c.each(ctx, f, func(l letter) bool {
		g := byCause[l.Cause]
		if g == nil {
			g = &Group{Cause: l.Cause, Type: l.Type, Reason: l.Reason, Message: NormalizeError(l.Error),
				Example: l.Error, FirstSeen: l.FirstFailedAt, LastSeen: l.LastFailedAt}
			byCause[l.Cause] = g
		}
		g.Count++
		if l.FirstFailedAt.Before(g.FirstSeen) {
			g.FirstSeen = l.FirstFailedAt
		}
		if l.LastFailedAt.After(g.LastSeen) {
			g.LastSeen = l.LastFailedAt
		}
		if !slices.Contains(g.Sources, l.Source) {
			g.Sources = append(g.Sources, l.Source)
		}
		return true
	})
	out := make([]Group, 0, len(byCause))
	for _, g := range byCause {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.Cause, b.Cause))
	})
	return out, scan, err
}

// letters returns the page of letters matching f that starts at offset,
// oldest first per source.
func (c *Console) letters(ctx context.Context, f Filter, offset, limit int) ([]Letter, Scan, error) {
	var out []Letter
	i := 0
	scan, err := c.each(ctx, f, func(l letter) bool {
		if i >= offset && len(out) < limit {
			out = append(out, l.Letter)
		}
		i++
		return true // go on: the matched count is the pager's total
	})
	return out, scan, err
}
