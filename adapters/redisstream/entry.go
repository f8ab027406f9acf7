package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Entry is a stream entry with its fields in their stored order, values
// byte for byte (go-redis' XMessage keeps them in a map, which loses the
// order and all but one of repeated fields).
type Entry struct {
	ID string
	// Fields alternates names and values.
	Fields []string

	// truncated is, for an entry over MaxEntryBytes that a bounded read cut
	// on the server, its size in bytes: Fields are then excerpts.
	truncated int
	// deferred marks an entry a bounded read left on the server to keep
	// within MaxBatchBytes: it is pending to the consumer, Fields not yet
	// fetched.
	deferred bool
	// msg and event are the entry decoded ahead of its delivery (see
	// consumer.decodeAhead); Fields are then nil.
	msg   *message.Message
	event *decodedEvent
}

// Map returns the fields as go-redis gives them (the last of a repeated
// name wins, as in Arc's reader).
func (e Entry) Map() map[string]any {
	m := make(map[string]any, len(e.Fields)/2)
	for i := 0; i+1 < len(e.Fields); i += 2 {
		m[e.Fields[i]] = e.Fields[i+1]
	}
	return m
}

// size is the bytes of the entry's names and values, as stored.
func (e Entry) size() int {
	if e.truncated > 0 {
		return e.truncated
	}
	n := 0
	for _, f := range e.Fields {
		n += len(f)
	}
	return n
}

// count returns how many fields are named name.
func (e Entry) count(name string) int {
	n := 0
	for i := 0; i < len(e.Fields); i += 2 {
		if e.Fields[i] == name {
			n++
		}
	}
	return n
}

// RangeEntries runs XRANGE stream start end COUNT count (count ≤ 0: all)
// and returns the entries with their fields in order.
func RangeEntries(ctx context.Context, client redis.UniversalClient, stream, start, end string, count int64) ([]Entry, error) {
	args := []any{"XRANGE", stream, start, end}
	if count > 0 {
		args = append(args, "COUNT", count)
	}
	res, err := client.Do(ctx, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("redisstream: XRANGE %s: %w", stream, err)
	}
	return parseEntries(res)
}

// readGroup runs XREADGROUP GROUP group consumer COUNT count [BLOCK block]
// STREAMS stream id and returns the entries in order, fields as stored;
// block < 0 sends no BLOCK.
func readGroup(ctx context.Context, client redis.UniversalClient, group, consumer, stream, id string, count int,
	block int64) ([]Entry, error) {
	args := make([]any, 0, 12)
	args = append(args, "XREADGROUP", "GROUP", group, consumer, "COUNT", count)
	if block >= 0 {
		args = append(args, "BLOCK", block)
	}
	args = append(args, "STREAMS", stream, id)
	res, err := client.Do(ctx, args...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case map[any]any: // RESP3: stream → entries
		for _, v := range r {
			list, _ := v.([]any)
			return parseEntries(list)
		}
		return nil, nil
	case []any: // RESP2: [[stream, entries]]
		for _, s := range r {
			pair, ok := s.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("redisstream: XREADGROUP: unexpected reply %T", s)
			}
			list, _ := pair[1].([]any)
			return parseEntries(list)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("redisstream: XREADGROUP: unexpected reply %T", res)
}

// parseEntries reads [[id, [name, value, …]], …]. A deleted entry still
// pending comes with no fields.
func parseEntries(list []any) ([]Entry, error) {
	out := make([]Entry, 0, len(list))
	for _, r := range list {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("redisstream: unexpected stream entry %T", r)
		}
		id, _ := pair[0].(string)
		raw, _ := pair[1].([]any)
		e := Entry{ID: id, Fields: make([]string, 0, len(raw))}
		for _, f := range raw {
			switch v := f.(type) {
			case string:
				e.Fields = append(e.Fields, v)
			case int64: // a RESP3 server may send numbers as such
				e.Fields = append(e.Fields, strconv.FormatInt(v, 10))
			default:
				e.Fields = append(e.Fields, fmt.Sprint(v))
			}
		}
		out = append(out, e)
	}
	return out, nil
}
