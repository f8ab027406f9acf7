package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// Redis layout of one handler's parked sequences. Every key of a handler
// starts with Prefix{group|handler}: one hash tag, so that on Redis
// Cluster a sequence's keys and the handler's index share a slot and each
// script below changes them atomically (the cost: one handler's parked
// sequences live on one node; parked sequences are the exception).
//
//	<base>index       ZSET  key → ms it was parked (listing, oldest first)
//	<base>released    SET   keys released and not yet drained (the drainer's work)
//	<base>s:<key>     HASH  status (parked|released), head (event id), info (head JSON), since
//	<base>l:<key>     ZSET  parked events in source order: members "<position> <parkedEntry JSON>",
//	                        all scored 0, so that they sort by position (see parkedPosition)
//	<base>i:<key>     SET   ids of the parked events (a redelivery is not parked twice)
//	<base>lease:<key> STRING token of the instance draining the key
const (
	statusParked   = "parked"
	statusReleased = "released"
)

// sequenceStore runs the scripts on one handler's keys.
type sequenceStore struct {
	client redis.UniversalClient
	base   string
}

func newSequenceStore(client redis.UniversalClient, prefix, group, handler string) *sequenceStore {
	return &sequenceStore{client: client, base: sequenceBase(prefix, group, handler)}
}

// tagEscaper keeps group and handler names from ending the hash tag early
// (a "}") or splitting it ambiguously (a "|").
var tagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", "|", "%7C")

var tagUnescaper = strings.NewReplacer("%25", "%", "%7B", "{", "%7D", "}", "%7C", "|")

func sequenceBase(prefix, group, handler string) string {
	return prefix + "{" + tagEscaper.Replace(group) + "|" + tagEscaper.Replace(handler) + "}:"
}

// keys are a sequence's KEYS for every script: state, list, ids, index,
// released, lease.
func (s *sequenceStore) keys(key string) []string {
	return []string{s.base + "s:" + key, s.base + "l:" + key, s.base + "i:" + key, s.base + "index",
		s.base + "released", s.base + "lease:" + key}
}

// Verdicts of gateScript.
const (
	gateRun       = 0 // not parked: run it
	gateHead      = 1 // the parked key's head, redriven: run it, release after
	gateParked    = 2 // appended to the parked sequence: acknowledge
	gateDuplicate = 3 // parked already by an earlier delivery: acknowledge
)

// gateScript: is the key parked? Then append, in one step, so that no
// instance can run an event of a key another has just parked.
// ARGV: event id, parked id, entry, position ("" for arrival order).
var gateScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'parked' and redis.call('HGET', KEYS[1], 'head') == ARGV[1] then return 1 end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return 3 end
local pos = ARGV[4]
if pos == '' then pos = 'z' .. string.format('%020d', redis.call('HINCRBY', KEYS[1], 'n', 1)) end
redis.call('ZADD', KEYS[2], 0, pos .. ' ' .. ARGV[3])
return 2`)

// parkScript makes a dead-lettered event the head of its key's sequence:
// 1 when it is (or was already), 0 when the key is parked behind another.
// ARGV: key, event id, head info, ms.
var parkScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  redis.call('HSET', KEYS[1], 'status', 'parked', 'head', ARGV[2], 'info', ARGV[3], 'since', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
  return 1
end
if st == 'parked' and redis.call('HGET', KEYS[1], 'head') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'info', ARGV[3])
  return 1
end
return 0`)

// seqReleaseScript releases a parked key: its events drain in order. With
// ARGV[2] set, only if that event is still the head (a redriven head that
// succeeded). A sequence with nothing parked is removed at once. Returns
// the parked count, or -1 when the key is not parked (so).
// ARGV: key, head event id or "".
var seqReleaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'parked' then return -1 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'head') ~= ARGV[2] then return -1 end
local n = redis.call('ZCARD', KEYS[2])
if n == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'released')
redis.call('HDEL', KEYS[1], 'head')
redis.call('SADD', KEYS[5], ARGV[1])
return n`)

// popScript removes a parked event after its handler succeeded, and the
// sequence once it is empty, only while the drainer still holds the
// key's lease (ARGV[4], its token). Returns -1 (lease lost: another
// instance may be draining), 0 (gone already: discarded), 1 (removed), 2
// (removed, sequence done).
// ARGV: key, member, parked id, lease token.
var popScript = redis.NewScript(`
if redis.call('GET', KEYS[6]) ~= ARGV[4] then return -1 end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 and redis.call('HGET', KEYS[1], 'status') == 'released' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('SREM', KEYS[5], ARGV[1])
  return 2
end
return 1`)

// finishScript removes a released sequence left empty, and a released
// mark left without a sequence (discarded meanwhile).
// ARGV: key.
var finishScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'parked' then redis.call('SREM', KEYS[5], ARGV[1]) return 0 end
if st and redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return 1`)

// reparkScript makes a parked event, dead-lettered while draining, the
// new head: the rest stay parked behind it; only while the drainer still
// holds the key's lease (ARGV[7], its token). Returns -1 (lease lost), 0
// (not released, or the event gone), 1 (reparked).
// ARGV: key, member, parked id, event id, head info, ms, lease token.
var reparkScript = redis.NewScript(`
if redis.call('GET', KEYS[6]) ~= ARGV[7] then return -1 end
if redis.call('HGET', KEYS[1], 'status') ~= 'released' then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'parked', 'head', ARGV[4], 'info', ARGV[5], 'since', ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return 1`)

// discardScript drops a sequence and its parked events; their count, or
// -1 when there is none.
// ARGV: key.
var discardScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return n`)

// leaseScript takes (ARGV[3] "take") or renews ("renew") the drain lease
// of a key for ARGV[1]'s token, ARGV[2] ms; 1 when held.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[6])
if ARGV[3] == 'take' and not cur then
  redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2]) return 1
end
if cur == ARGV[1] then
  if ARGV[3] == 'drop' then redis.call('DEL', KEYS[6]) else redis.call('PEXPIRE', KEYS[6], ARGV[2]) end
  return 1
end
return 0`)

func (s *sequenceStore) gate(ctx context.Context, key, eventID, parkedID string, entry []byte, pos string) (int, error) {
	return gateScript.Run(ctx, s.client, s.keys(key), eventID, parkedID, entry, pos).Int()
}

// wait runs WAIT on the node that holds key (on a cluster, the key's
// master: WAIT has no key to be routed by) and returns how many replicas
// acknowledged.
func (s *sequenceStore) wait(ctx context.Context, key string, replicas int, timeout time.Duration) (int64, error) {
	type waiter interface {
		Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
	}
	var c any = s.client
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, s.keys(key)[0])
		if err != nil {
			return 0, err
		}
		c = node
	}
	w, ok := c.(waiter)
	if !ok {
		return 0, fmt.Errorf("%w: %T cannot WAIT", ErrInvalidConfig, c)
	}
	return w.Wait(ctx, replicas, timeout).Result()
}

// exists reports whether key has a sequence (parked or releasing).
func (s *sequenceStore) exists(ctx context.Context, key string) (bool, error) {
	n, err := s.client.Exists(ctx, s.keys(key)[0]).Result()
	return n == 1, err
}

func (s *sequenceStore) park(ctx context.Context, key, eventID string, info []byte, at time.Time) (bool, error) {
	n, err := parkScript.Run(ctx, s.client, s.keys(key), key, eventID, info, at.UnixMilli()).Int()
	return n == 1, err
}

// headDone releases key after its head eventID succeeded: the parked
// count, or -1 when eventID was not (or no longer) its head.
func (s *sequenceStore) headDone(ctx context.Context, key, eventID string) (int64, error) {
	return seqReleaseScript.Run(ctx, s.client, s.keys(key), key, eventID).Int64()
}

func (s *sequenceStore) release(ctx context.Context, key string) (int64, error) {
	return seqReleaseScript.Run(ctx, s.client, s.keys(key), key, "").Int64()
}

func (s *sequenceStore) discard(ctx context.Context, key string) (int64, error) {
	return discardScript.Run(ctx, s.client, s.keys(key), key).Int64()
}

// pop removes a drained event; errDrainLeaseLost when token no longer
// holds key's lease (the event stays: its next drainer runs it).
func (s *sequenceStore) pop(ctx context.Context, key, token string, entry []byte, parkedID string) (int, error) {
	n, err := popScript.Run(ctx, s.client, s.keys(key), key, entry, parkedID, token).Int()
	if err == nil && n < 0 {
		return 0, errDrainLeaseLost
	}
	return n, err
}

func (s *sequenceStore) finish(ctx context.Context, key string) error {
	return finishScript.Run(ctx, s.client, s.keys(key), key).Err()
}

// repark makes a drained event the new head; errDrainLeaseLost when token
// no longer holds key's lease.
func (s *sequenceStore) repark(ctx context.Context, key, token string, entry []byte, parkedID, eventID string, info []byte,
	at time.Time) (bool, error) {
	n, err := reparkScript.Run(ctx, s.client, s.keys(key), key, entry, parkedID, eventID, info, at.UnixMilli(), token).Int()
	if err == nil && n < 0 {
		return false, errDrainLeaseLost
	}
	return n == 1, err
}

func (s *sequenceStore) lease(ctx context.Context, key, token string, ttl time.Duration, op string) (bool, error) {
	n, err := leaseScript.Run(ctx, s.client, s.keys(key), token, ttl.Milliseconds(), op).Int()
	return n == 1, err
}

// first returns the first parked event of key (its member), nil when
// none.
func (s *sequenceStore) first(ctx context.Context, key string) ([]byte, error) {
	m, err := s.client.ZRange(ctx, s.keys(key)[1], 0, 0).Result()
	if err != nil || len(m) == 0 {
		return nil, err
	}
	return []byte(m[0]), nil
}

// releasedKeys returns about n keys waiting to be drained, from cursor on,
// and the cursor to go on from (0: the whole set was seen). The caller
// carries it from one look to the next: from 0 each time, a set larger
// than n would show its first keys only, and the others never drain.
func (s *sequenceStore) releasedKeys(ctx context.Context, cursor uint64, n int64) ([]string, uint64, error) {
	return s.client.SScan(ctx, s.base+"released", cursor, "", n).Result()
}

// parkedEntry is a parked message as stored: enough to run it again.
type parkedEntry struct {
	UUID     string            `json:"uuid"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Payload  []byte            `json:"payload"`
	ID       string            `json:"id"`
	At       int64             `json:"at"`
}

func encodeParked(msg *message.Message) ([]byte, error) {
	return json.Marshal(parkedEntry{UUID: msg.UUID, Metadata: msg.Metadata, Payload: msg.Payload, ID: parkedID(msg),
		At: time.Now().UnixMilli()})
}

// decodeParked reads a member back: "<position> <entry JSON>".
func decodeParked(b []byte) (parkedEntry, *message.Message, error) {
	var e parkedEntry
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		b = b[i+1:]
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, nil, fmt.Errorf("parked entry: %w", err)
	}
	msg := message.NewMessage(e.UUID, e.Payload)
	for k, v := range e.Metadata {
		msg.Metadata[k] = v
	}
	return e, msg, nil
}

// parkedPosition is where msg sorts among its key's parked events: its
// place in the source (a stream entry id "ms-seq", or a sequence number),
// so that events two consumers park at once keep the source's order; ""
// (arrival order) when the transport gives no position.
func parkedPosition(msg *message.Message) string {
	id := msg.Metadata.Get(MetadataOriginalID)
	msPart, seqPart, stream := strings.Cut(id, "-")
	if !stream {
		msPart, seqPart = "0", id
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if id == "" || err1 != nil || err2 != nil {
		return ""
	}
	return fmt.Sprintf("%020d-%020d", ms, seq)
}

// parkedID names one delivery's event among the parked ones: the
// transport's id (a redelivery repeats it) and the UUID.
func parkedID(msg *message.Message) string {
	return msg.Metadata.Get(MetadataOriginalID) + "/" + msg.UUID
}

// ParkedHead describes the dead letter a sequence waits behind.
type ParkedHead struct {
	// EventID is the dead-lettered event's id (its message UUID, without
	// the suffixes of a redrive: RedrivenEventID).
	EventID string `json:"eventId"`
	// Type is its event type.
	Type string `json:"type,omitempty"`
	// OriginalID is the transport's id of the delivery that was
	// dead-lettered (the dead letter's originalId).
	OriginalID string `json:"originalId,omitempty"`
	// Reason and Error are the dead letter's.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// At is when it was dead-lettered.
	At time.Time `json:"at"`
}

func headInfoOf(msg *message.Message, reason, errMsg string) []byte {
	b, _ := json.Marshal(ParkedHead{EventID: RedrivenEventID(msg.UUID), Type: msg.Metadata.Get(arc.MetadataType),
		OriginalID: msg.Metadata.Get(MetadataOriginalID), Reason: reason, Error: errMsg, At: time.Now().UTC()})
	return b
}

func parseMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
