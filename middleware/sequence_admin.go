package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
}

// SequenceAdmin reads and changes parked sequences for operators (the
// arcmill CLI and console). Its Prefix must be the Sequencers'.
type SequenceAdmin struct {
	// Client is the Redis of the Sequencers. Required.
	Client redis.UniversalClient
	// Prefix is the Sequencers' SequenceConfig.Prefix. Defaults to
	// DefaultSequencePrefix.
	Prefix string
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

// List returns the parked sequences f matches, oldest first per handler.
func (a SequenceAdmin) List(ctx context.Context, f ParkedFilter) ([]ParkedSequence, error) {
	hs, err := a.handlers(ctx)
	if err != nil {
		return nil, err
	}
	var out []ParkedSequence
	for _, gh := range hs {
		if (f.Group != "" && gh[0] != f.Group) || (f.Handler != "" && gh[1] != f.Handler) {
			continue
		}
		st := newSequenceStore(a.Client, a.prefix(), gh[0], gh[1])
		var keys []string
		if f.Key != "" {
			keys = []string{f.Key}
		} else if keys, err = a.Client.ZRange(ctx, st.base+"index", 0, -1).Result(); err != nil {
			return nil, fmt.Errorf("middleware: listing parked sequences: %w", err)
		}
		for _, k := range keys {
			seq, ok, err := a.read(ctx, st, gh, k)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, seq)
			}
		}
	}
	return out, nil
}

func (a SequenceAdmin) read(ctx context.Context, st *sequenceStore, gh [2]string, key string) (ParkedSequence, bool, error) {
	ks := st.keys(key)
	pipe := a.Client.Pipeline()
	h := pipe.HGetAll(ctx, ks[0])
	n := pipe.ZCard(ctx, ks[1])
	if _, err := pipe.Exec(ctx); err != nil {
		return ParkedSequence{}, false, fmt.Errorf("middleware: reading parked sequence %q: %w", key, err)
	}
	m := h.Val()
	if m["status"] == "" {
		return ParkedSequence{}, false, nil
	}
	seq := ParkedSequence{Group: gh[0], Handler: gh[1], Key: key, Status: m["status"], Parked: n.Val(),
		Since: parseMillis(m["since"])}
	_ = json.Unmarshal([]byte(m["info"]), &seq.Head) // best effort: the head's record is informative
	return seq, true, nil
}

// resolve finds the one handler that has key parked, given the filter's
// group and handler where set.
func (a SequenceAdmin) resolve(ctx context.Context, f ParkedFilter) (*sequenceStore, error) {
	if f.Key == "" {
		return nil, fmt.Errorf("%w: no key given", ErrNotParked)
	}
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
