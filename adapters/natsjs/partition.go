package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// MaxRawKeyToken bounds a key that is used as its own subject token (see
// KeyToken).
const MaxRawKeyToken = 128

// PartitionKey returns the key that places msg in a partition: Arc's
// meta.partitionKey, else the aggregate's id, else meta.resourceId, else
// the event id (the message UUID, for arc.ToMessage). The same rule as
// the Redis partitioned streams'.
func PartitionKey(msg *message.Message) string {
	for _, k := range []string{arc.MetadataPartitionKey, arc.MetadataAggregateID, arc.MetadataResourceID} {
		if v := msg.Metadata.Get(k); v != "" {
			return v
		}
	}
	return msg.UUID
}

// KeyToken returns key as one subject token: the key itself when it is 1
// to MaxRawKeyToken printable ASCII characters other than '.', '*', '>'
// and '~'; else "~" and the first 32 hex digits of its SHA-256, so that
// any key (dots, spaces, non-ASCII, a kilobyte of it) gets a token of its
// own.
func KeyToken(key string) string {
	if rawToken(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "~" + hex.EncodeToString(sum[:16])
}

func rawToken(key string) bool {
	if key == "" || len(key) > MaxRawKeyToken {
		return false
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c <= ' ', c >= 0x7f, c == '.', c == '*', c == '>', c == '~':
			return false
		}
	}
	return true
}

// Partition returns the partition, of n, that the server's mapping
// (PartitionMapping) gives an event of key: FNV-1a 32 of KeyToken(key),
// modulo n.
func Partition(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(KeyToken(key)))
	return int(h.Sum32() % uint32(n))
}

// PartitionMapping returns the subject mapping that partitions, for n
// partitions, the events published on <ingress>.<key token>.<type> onto
// <prefix>.<partition>.<key token>.<type>: the source and the destination
// of an entry of the server's mappings block. PartitionMappingConfig
// writes the block.
//
// Partitions spread one stream's events over N subjects by a key, so that
// N consumers (one per partition) share the load while each keeps the
// events of one key in order. The partition is chosen by the server's
// subject mapping, not by the publisher: every publisher (an arcmill one,
// or any NATS client writing Arc JSON) sends an event to
//
//	<ingress>.<key token>.<type>
//
// and every node of the cluster maps it, before any stream sees it, to
//
//	<prefix>.<partition>.<key token>.<type>
//
// with the mapping PartitionMapping returns, in each server's
// configuration (tested on nats-server 2.9.10; the mapping is a server
// setting, the same on every node). Changing N moves keys to other
// partitions: let the partitions drain (publishers paused, every consumer
// caught up), change the mapping on every node and reload, then start the
// consumers of the new partitions. Without the drain, a key whose
// partition changed has events in two partitions at once, and its order
// across the switch is lost.
// The stream holds <prefix>.> (EnsureStreamConfig with Prefix prefix); the
// consumer of partition p subscribes to PartitionSubject(prefix, p) with
// SubscriberConfig.MaxAckPending 1, so that the next event of the
// partition is delivered only once the one before it is acknowledged (or
// dead-lettered): per-key order holds across retries, redeliveries and
// group members. The ingress prefix lies outside every stream: without the
// mapping a publish finds no stream and fails (no responders), instead of
// storing events where no partition consumer reads them.
//
// The partition is the server's: FNV-1a 32 of the key token, modulo N
// (Partition computes it). The key token is the key itself when it is a
// plain subject token (KeyToken), so the partition of such a key is the
// one the Redis partitioned streams give it (the same hash of the same
// key, modulo the same N).
func PartitionMapping(ingress, prefix string, n int) (source, destination string) {
	return ingress + ".*.>", prefix + ".{{partition(" + strconv.Itoa(n) + ",1)}}.{{wildcard(1)}}.>"
}

// PartitionMappingConfig returns the mappings block, in nats-server's
// configuration syntax, that PartitionMapping describes: put it in every
// node's configuration file.
//
//	mappings = {
//	  "arcin.*.>": "arcp.{{partition(4,1)}}.{{wildcard(1)}}.>"
//	}
func PartitionMappingConfig(ingress, prefix string, n int) string {
	src, dst := PartitionMapping(ingress, prefix, n)
	return fmt.Sprintf("mappings = {\n  %q: %q\n}\n", src, dst)
}

// PartitionSubject returns the subject of partition p under prefix,
// <prefix>.<p>.>: what the consumer of that partition subscribes to.
func PartitionSubject(prefix string, p int) string {
	return prefix + "." + strconv.Itoa(p) + ".>"
}
