package middleware

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// ErrNotParked is returned for a sequence key that is not parked (or, to
// release, parked no more: already released).
var ErrNotParked = errors.New("middleware: no parked sequence of that key")

// ErrAmbiguousSequence is returned when a key is parked for several
// handlers and the operation named none.
var ErrAmbiguousSequence = errors.New("middleware: that key is parked for several handlers; name one")

// ParkedSequence is one key's parked sequence, for operators.
type ParkedSequence struct {
	// Group and Handler own the sequence.
	Group   string `json:"group"`
	Handler string `json:"handler"`
	// Key is the sequence key (partition key or aggregate id).
	Key string `json:"key"`
	// Status is "parked" (waiting behind Head) or "released" (draining).
	Status string `json:"status"`
	// Parked counts the events held.
	Parked int64 `json:"parked"`
	// Since is when the head was dead-lettered.
	Since time.Time `json:"since"`
	// Head is the dead letter the sequence waits behind (also kept, for
	// the record, while it drains after a release).
	Head ParkedHead `json:"head"`
}

// ParkedFilter narrows SequenceAdmin.List; empty fields match all.
type ParkedFilter struct {
	Group, Handler, Key string
	// Offset skips that many of the matching keys, in List's order, and
	// Limit caps how many are returned (0: no cap): a page. Only the
	// page's keys are read; negative values count as 0.
	Offset, Limit int
}

// ParkedPage is a page of parked sequences (SequenceAdmin.ListPage).
type ParkedPage struct {
	Sequences []ParkedSequence `json:"sequences"`
	// Total counts the keys the filter matches, on every page: each
	// handler's index, counted (ZCARD) when the page was read.
	Total int64 `json:"total"`
}

// SequenceAdmin reads and changes parked sequences for operators (the
// arcmill CLI and console). Its Prefix must be the Sequencers'.
type SequenceAdmin struct {
	// Client is the Redis of the Sequencers. Required.
	Client redis.UniversalClient
	// Prefix is the Sequencers' SequenceConfig.Prefix. Defaults to
	// DefaultSequencePrefix.
	Prefix string

	chunk int // parkedChunk, or a test's
}

func (a SequenceAdmin) prefix() string {
	if a.Prefix == "" {
		return DefaultSequencePrefix
	}
	return a.Prefix
}

// handlers returns the (group, handler) pairs that have parked keys, from
// their index keys (a SCAN: on a cluster, every master's).
func (a SequenceAdmin) handlers(ctx context.Context) ([][2]string, error) {
	pattern := escapeGlob(a.prefix()) + "{*}:index"
	var names []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			names = append(names, it.Val())
		}
		return it.Err()
	}
	var err error
	if cc, ok := a.Client.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster runs its callbacks at once
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, c)
		})
	} else {
		err = scan(ctx, a.Client)
	}
	if err != nil {
		return nil, fmt.Errorf("middleware: listing parked sequences: %w", err)
	}
	var out [][2]string
	for _, n := range names {
		tag := strings.TrimSuffix(strings.TrimPrefix(n, a.prefix()+"{"), "}:index")
		group, handler, ok := strings.Cut(tag, "|")
		if !ok || strings.Contains(tag, "}") {
			continue // a sequence's own key whose name ends so; escaped names hold no "}"
		}
		out = append(out, [2]string{tagUnescaper.Replace(group), tagUnescaper.Replace(handler)})
	}
	slices.SortFunc(out, func(x, y [2]string) int { return strings.Compare(x[0]+"\x00"+x[1], y[0]+"\x00"+y[1]) })
	return slices.Compact(out), nil
}

// escapeGlob escapes SCAN MATCH's special characters.
func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(s)
}

// parkedChunk is how many index entries one read of Each fetches.
const parkedChunk = 500

// List returns the parked sequences f matches, handlers sorted by group
// then handler, each handler's keys oldest first; f.Offset and f.Limit
// page them (ListPage also counts them all).
func (a SequenceAdmin) List(ctx context.Context, f ParkedFilter) ([]ParkedSequence, error) {
	p, err := a.ListPage(ctx, f)
	return p.Sequences, err
}

// ListPage returns the page of parked sequences f.Offset and f.Limit
// select, in List's order, and the total the filter matches. It counts
// each handler's keys from its index (ZCARD) and reads the page's keys
// only (ZRANGE over the page's window), however many keys are parked;
// finding the handlers still SCANs the keyspace for their indexes, as
// List always did.
func (a SequenceAdmin) ListPage(ctx context.Context, f ParkedFilter) (ParkedPage, error) {
	var p ParkedPage
	total, err := a.Each(ctx, f, func(s ParkedSequence) error {
		p.Sequences = append(p.Sequences, s)
		return nil
	})
	p.Total = total
	return p, err
}

// Each calls fn for each parked sequence of the page f selects, in List's
// order, reading the index a chunk at a time so that memory stays bounded
// however many keys are parked; an error of fn stops it and is returned.
// It returns the total the filter matches, as ListPage does.
//
// A walk is not a snapshot: a key released, discarded or parked while it
// runs may be left out or shown as it is by then. Past the first chunk of
// a handler it goes on from the last key's parking time, not its rank, so
// that keys leaving the index behind it do not make it skip others.
func (a SequenceAdmin) Each(ctx context.Context, f ParkedFilter, fn func(ParkedSequence) error) (int64, error) {
	hs, err := a.handlers(ctx)
	if err != nil {
		return 0, err
	}
	hs = slices.DeleteFunc(hs, func(gh [2]string) bool {
		return (f.Group != "" && gh[0] != f.Group) || (f.Handler != "" && gh[1] != f.Handler)
	})
	if f.Key != "" {
		return a.eachOfKey(ctx, hs, f, fn)
	}
	// Count every handler's keys in one round trip (on a cluster, one per
	// node: go-redis splits the pipeline by slot).
	counts := make([]*redis.IntCmd, len(hs))
	pipe := a.Client.Pipeline()
	for i, gh := range hs {
		counts[i] = pipe.ZCard(ctx, sequenceBase(a.prefix(), gh[0], gh[1])+"index")
	}
	if len(hs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("middleware: counting parked sequences: %w", err)
		}
	}
	var total int64
	for _, c := range counts {
		total += c.Val()
	}
	skip, left := int64(max(f.Offset, 0)), int64(f.Limit)
	if left <= 0 {
		left = -1 // no cap
	}
	for i, gh := range hs {
		n := counts[i].Val()
		if skip >= n {
			skip -= n
			continue
		}
		if left == 0 {
			break
		}
		st := newSequenceStore(a.Client, a.prefix(), gh[0], gh[1])
		took, err := a.eachOfHandler(ctx, st, gh, skip, left, fn)
		if err != nil {
			return total, err
		}
		skip = 0
		if left > 0 {
			left -= took
		}
	}
	return total, nil
}

// formatScore writes a score (a time in ms) for a range.
func formatScore(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// eachOfHandler walks one handler's index from rank skip, at most left
// entries (-1: to its end), and returns how many entries it took.
//
// The first chunk is read by rank; the next ones from after the last entry
// taken: its time, then its key (the index orders keys of one time by
// name), so that entries leaving the index behind the walk shift nothing.
func (a SequenceAdmin) eachOfHandler(ctx context.Context, st *sequenceStore, gh [2]string, skip, left int64,
	fn func(ParkedSequence) error) (int64, error) {
	index := st.base + "index"
	var took int64
	var last redis.Z // the last entry taken,
	var ties int64   // and at most how many taken share its time
	for left != 0 {
		n := int64(cmp.Or(a.chunk, parkedChunk))
		if left > 0 {
			n = min(n, left)
		}
		var zs []redis.Z
		var err error
		want := n
		if took == 0 {
			zs, err = a.Client.ZRangeWithScores(ctx, index, skip, skip+n-1).Result()
		} else {
			// Those sharing the last one's time come first: read past them.
			want = n + ties
			zs, err = a.Client.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: index, ByScore: true,
				Start: formatScore(last.Score), Stop: "+inf", Count: want}).Result()
		}
		if err != nil {
			return took, fmt.Errorf("middleware: listing parked sequences: %w", err)
		}
		end := int64(len(zs)) < want
		if took > 0 {
			lastKey, _ := last.Member.(string)
			i := 0
			for i < len(zs) && zs[i].Score == last.Score {
				if m, _ := zs[i].Member.(string); m > lastKey {
					break
				}
				i++
			}
			zs = zs[i:min(len(zs), i+int(n))]
		}
		if took == 0 && len(zs) > 0 && !end && left != n {
			// Going on from a rank: count the entries up to the last one
			// that share its time, before the rank too.
			at := zs[len(zs)-1].Score
			below, err := a.Client.ZCount(ctx, index, "-inf", "("+formatScore(at)).Result()
			if err != nil {
				return took, fmt.Errorf("middleware: listing parked sequences: %w", err)
			}
			ties = max(skip+int64(len(zs))-below, 1)
		} else {
			for _, z := range zs {
				if z.Score == last.Score {
					ties++
				} else {
					ties = 1
				}
				last = z
			}
		}
		if len(zs) > 0 {
			last = zs[len(zs)-1]
		}
		keys := make([]string, len(zs))
		for i, z := range zs {
			keys[i], _ = z.Member.(string)
		}
		seqs, err := a.readAll(ctx, st, gh, keys)
		if err != nil {
			return took, err
		}
		for _, s := range seqs {
			if err := fn(s); err != nil {
				return took, err
			}
		}
		took += int64(len(zs))
		if left > 0 {
			left -= int64(len(zs))
		}
		if end || len(zs) == 0 {
			break
		}
	}
	return took, nil
}

// eachOfKey is Each for one key: at most one sequence a handler.
func (a SequenceAdmin) eachOfKey(ctx context.Context, hs [][2]string, f ParkedFilter, fn func(ParkedSequence) error) (int64, error) {
	var seqs []ParkedSequence
	for _, gh := range hs {
		s, err := a.readAll(ctx, newSequenceStore(a.Client, a.prefix(), gh[0], gh[1]), gh, []string{f.Key})
		if err != nil {
			return 0, err
		}
		seqs = append(seqs, s...)
	}
	page := seqs[min(max(f.Offset, 0), len(seqs)):]
	if f.Limit > 0 {
		page = page[:min(f.Limit, len(page))]
	}
	for _, s := range page {
		if err := fn(s); err != nil {
			return int64(len(seqs)), err
		}
	}
	return int64(len(seqs)), nil
}

// readAll reads keys of one handler in one round trip (one slot: they
// share the handler's hash tag), leaving out those no longer parked.
func (a SequenceAdmin) readAll(ctx context.Context, st *sequenceStore, gh [2]string, keys []string) ([]ParkedSequence, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := a.Client.Pipeline()
	hs := make([]*redis.MapStringStringCmd, len(keys))
	ns := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		ks := st.keys(k)
		hs[i] = pipe.HGetAll(ctx, ks[0])
		ns[i] = pipe.ZCard(ctx, ks[1])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("middleware: reading parked sequences of handler %q: %w", gh[1], err)
	}
	out := make([]ParkedSequence, 0, len(keys))
	for i, k := range keys {
		m := hs[i].Val()
		if m["status"] == "" {
			continue // released and drained, or discarded, since the index was read
		}
		seq := ParkedSequence{Group: gh[0], Handler: gh[1], Key: k, Status: m["status"], Parked: ns[i].Val(),
			Since: parseMillis(m["since"])}
		_ = json.Unmarshal([]byte(m["info"]), &seq.Head) // best effort: the head's record is informative
		out = append(out, seq)
	}
	return out, nil
}

// resolve finds the one handler that has key parked, given the filter's
// group and handler where set.
func (a SequenceAdmin) resolve(ctx context.Context, f ParkedFilter) (*sequenceStore, error) {
	if f.Key == "" {
		return nil, fmt.Errorf("%w: no key given", ErrNotParked)
	}
	f.Offset, f.Limit = 0, 0 // every handler that has it
	seqs, err := a.List(ctx, f)
	if err != nil {
		return nil, err
	}
	switch len(seqs) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrNotParked, f.Key)
	case 1:
		return newSequenceStore(a.Client, a.prefix(), seqs[0].Group, seqs[0].Handler), nil
	}
	var names []string
	for _, s := range seqs {
		names = append(names, fmt.Sprintf("%q (group %q)", s.Handler, s.Group))
	}
	return nil, fmt.Errorf("%w: %q is parked for %s", ErrAmbiguousSequence, f.Key, strings.Join(names, ", "))
}

// Release lets f.Key's parked events run in order without their head: the
// head's dead letter stays where it is (redrive it later and it runs after
// them, or purge it). It returns how many events were parked. Redriving
// the head instead releases the sequence after the head succeeds.
func (a SequenceAdmin) Release(ctx context.Context, f ParkedFilter) (int64, error) {
	st, err := a.resolve(ctx, f)
	if err != nil {
		return 0, err
	}
	n, err := st.release(ctx, f.Key)
	if err != nil {
		return 0, fmt.Errorf("middleware: releasing %q: %w", f.Key, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %q is releasing already", ErrNotParked, f.Key)
	}
	return n, nil
}

// Discard drops f.Key's sequence and its parked events for good: they
// never run. New events of the key run again. It returns how many were
// dropped; the head's dead letter stays where it is.
func (a SequenceAdmin) Discard(ctx context.Context, f ParkedFilter) (int64, error) {
	st, err := a.resolve(ctx, f)
	if err != nil {
		return 0, err
	}
	n, err := st.discard(ctx, f.Key)
	if err != nil {
		return 0, fmt.Errorf("middleware: discarding %q: %w", f.Key, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %q", ErrNotParked, f.Key)
	}
	return n, nil
}

// Events returns up to limit of f.Key's parked events, oldest first (all
// with limit 0).
func (a SequenceAdmin) Events(ctx context.Context, f ParkedFilter, limit int) ([]*message.Message, error) {
	st, err := a.resolve(ctx, f)
	if err != nil {
		return nil, err
	}
	raw, err := a.Client.ZRange(ctx, st.keys(f.Key)[1], 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("middleware: reading parked events of %q: %w", f.Key, err)
	}
	out := make([]*message.Message, 0, len(raw))
	for _, r := range raw {
		_, msg, err := decodeParked([]byte(r))
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, nil
}
