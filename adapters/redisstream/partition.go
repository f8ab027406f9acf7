package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// ErrCrossSlot is returned, wrapped with the keys and the reason, where an
// operation needs two keys in one script or transaction and they hash to
// different slots of a Redis Cluster: Redis refuses such a command
// (CROSSSLOT), because one node must run it atomically.
var ErrCrossSlot = errors.New("redisstream: keys in different Redis Cluster hash slots")

// Partitions names the stream keys of one partitioned stream: N streams
// that together carry what one stream would, each event in the partition
// its routing key (RoutingKey) hashes to, so that one key's events stay in
// one stream, in order.
//
// Partition i of Stream is the key Stream + ":{" + i + "}"
// (arc:events:{0} … arc:events:{N-1}): the braces make i the key's hash
// tag, so on a Redis Cluster each partition sits in a slot of its own and
// the partitions spread over the primaries (CLUSTER KEYSLOT: {0} 13907,
// {1} 9842, {2} 5649, {3} 1584, {4} 14039, {5} 9974, {6} 5781, {7} 1716;
// with the three even ranges redis-cli --cluster create gives three
// primaries, partitions 0–5 fall 1, 3 and 2 on them; PartitionNodes says
// where they are, and `redis-cli --cluster reshard` moves a slot). Its
// dead-letter stream is the key + ":dlq" (arc:events:{3}:dlq), in the same
// slot, so a redrive from it is one atomic script.
//
// With N = 1 there is no tag: the one partition is Stream itself, and its
// dead letters Stream + ":dlq", which is Arc's layout (arc:events,
// arc:events:dlq) byte for byte. On a Cluster those two sit in different
// slots; give Stream a tag of its own ({arc}:events) to redrive there.
type Partitions struct {
	// Stream is the name the partitions share, e.g. "arc:events". With N
	// over 1 it must hold no brace: a tag in it would put every partition in
	// one slot.
	Stream string
	// N is how many partitions. At least 1.
	N int
}

// Validate reports partitions that cannot work.
func (p Partitions) Validate() error {
	switch {
	case p.Stream == "":
		return fmt.Errorf("%w: Partitions.Stream is required", ErrInvalidConfig)
	case p.N < 1:
		return fmt.Errorf("%w: Partitions.N is %d: must be at least 1", ErrInvalidConfig, p.N)
	case p.N > 1 && strings.ContainsAny(p.Stream, "{}"):
		return fmt.Errorf("%w: Partitions.Stream %q holds a brace: its hash tag would put all %d partitions in one "+
			"Redis Cluster slot (the partition number is the tag)", ErrInvalidConfig, p.Stream, p.N)
	}
	return nil
}

// Key is the stream key of partition i: Stream + ":{i}", or Stream itself
// when N is 1.
func (p Partitions) Key(i int) string {
	if p.N == 1 {
		return p.Stream
	}
	return p.Stream + ":{" + strconv.Itoa(i) + "}"
}

// DeadLetterKey is the dead-letter stream of partition i: its key + ":dlq",
// in the partition's slot (Arc's arc:events:dlq when N is 1).
func (p Partitions) DeadLetterKey(i int) string { return p.Key(i) + ":dlq" }

// Keys are the stream keys of every partition, in order.
func (p Partitions) Keys() []string {
	keys := make([]string, p.N)
	for i := range keys {
		keys[i] = p.Key(i)
	}
	return keys
}

// Of is the partition of routing key key: PartitionOf(key, N).
func (p Partitions) Of(key string) int { return PartitionOf(key, p.N) }

// OfMessage is the partition msg is published to: Of(RoutingKey(msg)).
func (p Partitions) OfMessage(msg *message.Message) int { return p.Of(RoutingKey(msg)) }

// Slot is the Redis Cluster hash slot of partition i.
func (p Partitions) Slot(i int) int { return KeySlot(p.Key(i)) }

// RoutingKey is what places an event in a partition: its meta.partitionKey,
// else its aggregate id, else its meta.resourceId, else its id (the message
// UUID, so that unrelated events spread).
func RoutingKey(msg *message.Message) string {
	for _, k := range []string{arc.MetadataPartitionKey, arc.MetadataAggregateID, arc.MetadataResourceID} {
		if v := msg.Metadata.Get(k); v != "" {
			return v
		}
	}
	return msg.UUID
}

// EventRoutingKey is RoutingKey for an event: what an Arc (Node) service
// computes to write the partition arcmill would.
func EventRoutingKey(ev arc.Event) string {
	switch {
	case ev.Meta.PartitionKey != "":
		return ev.Meta.PartitionKey
	case ev.Meta.Aggregate != nil && ev.Meta.Aggregate.ID != "":
		return ev.Meta.Aggregate.ID
	case ev.Meta.ResourceID != "":
		return ev.Meta.ResourceID
	}
	return ev.Meta.ID
}

// PartitionOf is the partition of key among n: the 32-bit FNV-1a hash of
// the key's UTF-8 bytes (offset basis 2166136261, prime 16777619), modulo n
// as an unsigned 32-bit number. Any language reproduces it; in JavaScript:
//
//	function partitionOf(key, n) {
//	  let h = 0x811c9dc5;
//	  for (const b of Buffer.from(key, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
//	  return h % n;
//	}
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// KeySlot is the Redis Cluster hash slot of key (CLUSTER KEYSLOT): CRC16
// (XMODEM) of its hash tag, the part between the first "{" and the next
// "}" when that is not empty, else of the whole key, modulo 16384.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// sameSlot returns an ErrCrossSlot naming why when client is a Cluster
// client and keys do not share a slot; nil otherwise (one server holds
// every key).
func sameSlot(client redis.UniversalClient, why string, keys ...string) error {
	if _, ok := client.(*redis.ClusterClient); !ok || len(keys) < 2 {
		return nil
	}
	for _, k := range keys[1:] {
		if KeySlot(k) != KeySlot(keys[0]) {
			return fmt.Errorf("%w: %q (slot %d) and %q (slot %d): %s; give both one hash tag, as partitions do "+
				"({orders}:events and {orders}:events:dlq, arc:events:{3} and arc:events:{3}:dlq)",
				ErrCrossSlot, keys[0], KeySlot(keys[0]), k, KeySlot(k), why)
		}
	}
	return nil
}

// PartitionNodes returns the address of the primary that holds each
// partition on a Redis Cluster, in partition order, to check how the
// partitions spread over the nodes.
func PartitionNodes(ctx context.Context, client *redis.ClusterClient, p Partitions) ([]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	out := make([]string, p.N)
	for i := range out {
		node, err := client.MasterForKey(ctx, p.Key(i))
		if err != nil {
			return nil, fmt.Errorf("redisstream: finding the primary of %q: %w", p.Key(i), err)
		}
		out[i] = node.Options().Addr
	}
	return out, nil
}

// Drained reports whether group has handled everything in every partition
// of p: in each, no entry pending and none after the last one delivered to
// the group. It is the check of a drain before N changes (stop the
// publishers, wait for Drained, switch every publisher and subscriber to
// the new N, start them). A partition without the group is not drained
// unless it is empty.
func Drained(ctx context.Context, client redis.UniversalClient, p Partitions, group string) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	for _, key := range p.Keys() {
		last, err := client.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil {
			return false, fmt.Errorf("redisstream: reading the last entry of %q: %w", key, err)
		}
		if len(last) == 0 {
			continue // empty, or no stream at all
		}
		groups, err := client.XInfoGroups(ctx, key).Result()
		if err != nil {
			return false, fmt.Errorf("redisstream: XINFO GROUPS %s: %w", key, err)
		}
		found := false
		for _, g := range groups {
			if g.Name != group {
				continue
			}
			found = true
			if g.Pending > 0 || lessID(g.LastDeliveredID, last[0].ID) {
				return false, nil
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}
