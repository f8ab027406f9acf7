// Package redisstream carries Arc events on Redis Streams in Arc's own
// layout, so Go services and Arc (Node) services share one stream: entries
// with the fields type and data (the event's Arc JSON), written by XADD
// with MAXLEN ~ 10000 to arc:events, read by consumer groups.
//
// # Pub/Sub
//
// Subscriber and Publisher are arcmill's own Watermill Pub/Sub for
// streams, built for throughput: batched XREADGROUP and XACK, pipelined
// XADD, claims by delivery count, a dead-letter stream in Arc's layout.
// ArcSubscriber and ArcPublisher preset them as Arc's transport. Marshaller
// plugs Arc's layout into watermill-redisstream's publisher and subscriber
// too (WatermillArcPublisherConfig, WatermillArcSubscriberConfig).
//
// # Delivery
//
// At least once. A Subscriber's consumer reads a batch and delivers it
// pipelined, up to MaxInFlight (64) messages unsettled at once and one per
// partition key (meta.partitionKey, else the aggregate id, else the event
// id), so each key is handled in stream order and keys concurrently, as
// Arc's processingConcurrency; MaxInFlight 1 is Watermill's one at a time.
// It acknowledges each entry after its message is acked, in XACKs batched
// for at most AckFlushInterval (2 ms). A process killed mid-stream
// therefore has up to MaxInFlight entries, plus the acks of one flush,
// delivered again.
//
// The event a consumer decodes travels with its message to the wildcard
// router (wildcard.ContextWithEvent), which reads the Subscriber directly
// (wildcard.KeyOrderedSubscriber) and decodes nothing again.
// Entries left pending by a dead consumer are taken over after ClaimIdle
// (XPENDING … IDLE, then XCLAIM, so Redis's delivery counts are known), and
// after MaxDeliveries go to DeadLetterStream. A consumer's heartbeat keeps
// every entry it holds (read, in flight, or handled and awaiting its XACK)
// fresh, and no consumer of a process claims an entry that process holds, so
// a slow batch is never handed to another consumer and handled twice.
//
// # Shutdown
//
// Close stops reading at once. Handlers keep a live context for
// CloseTimeout; then their contexts are cancelled with ErrClosed as the
// cause, their entries stay pending for the group, and Close returns
// ErrCloseTimeout with the count. Nothing read is acknowledged unhandled
// (Arc acks entries read during shutdown without running them).
//
// # When Redis fails
//
// A consumer whose read fails pauses with full-jitter exponential backoff
// (SubscriberConfig.ReadErrorBackoff: base 1 s, cap 30 s, floor 100 ms, as
// Arc's consumers back off), starts over after the next successful read,
// and never spins; Close ends the pause at once. An outage costs no
// delivery attempt: nothing is read while Redis is away.
//
// # Reading and writing
//
// Reading is liberal: an event Arc's reader delivers is delivered, its
// payload bytes untouched, whatever its payload holds (a "timestamp" Node
// reads as Invalid Date included), and meta keeps nulls, lone surrogates
// and key order (see package arc for the exact rules). An entry that no
// Arc reader would deliver either (type or data missing or empty, data
// not an Arc event) is not dropped, as Arc drops it: it is handed on flagged
// (arc.MetadataMalformed) for the wildcard router to dead-letter with the
// reason, and its dead letter keeps the entry's fields in order, byte for
// byte (RawFieldPrefix), so `arcmill dlq redrive` can put it back as it was.
//
// Writing is Arc's layout: fields type then data, data being what Arc's
// JSON.stringify writes for the event. MaxPayloadBytes counts as Arc does,
// in JavaScript string length, except that escapes inside passed-through
// payload bytes are counted as written (JSON.stringify would rewrite them).
//
// # Dead letters and trimming
//
// DeadLetterPublisher writes middleware.DeadLetter's dead letters in Arc's
// dead-letter layout, envelopes in JSON.stringify's bytes; ReadDeadLetter
// and ReadDeadLetterEntry read Arc's and ours. SafeTrim trims only what
// every group is done with, where Arc's MAXLEN ~ 10000 loses what a slow
// group has not read.
//
// # Cluster, Sentinel and TLS
//
// Every type takes a redis.UniversalClient, so a Cluster client, a
// failover (Sentinel) client and TLS options work as they are; the
// universal Pub/Sub suite runs on a real Cluster. Each command and script
// touches one key (the read script, the entry read, the heartbeat and
// claims, XACK, SafeTrim's XINFO, XPENDING and XTRIM, the dead-letter
// guard's SET NX), except where two streams meet: RedriveEntry (`arcmill dlq
// redrive`) moves a dead letter with one script over the dead-letter stream
// and its target, which a Cluster runs only in one slot; across slots it is
// refused with ErrCrossSlot before anything runs. Give both a shared hash
// tag ({orders}:events and {orders}:events:dlq), or use Partitions, whose
// dead letters share each partition's slot. Durability's WAIT and WAITAOF
// confirm the writes of the connection they run on: on a Cluster the
// publisher pipelines the XADDs and WAIT to the primary serving the stream
// itself, following MOVED and ASK, since go-redis' cluster pipeline would
// route WAIT to another node; each primary has its own durability gate.
// After a failover (Sentinel, or a Cluster promoting a replica), what the
// old primary acknowledged but had not replicated is gone unless Durability
// asked for a replica; with one replica per primary, a durable publish is
// refused (ErrNotDurable, nothing written) from the promotion until the
// promoted primary has a replica again. A consumer finds the promoted
// primary by itself, once its client reloads the slot map (go-redis: on a
// MOVED reply, or when the map is 10 s old); entries whose XACK died with
// the primary are delivered again (at least once), and the tests see no
// dead letter from a failover or a reshard. The tests in
// cluster_failover_test.go and cluster_reshard_test.go kill primaries and
// move slots on a private cluster.
//
// # Partitioned streams
//
// One stream lives on one node, however large the cluster. Partitions
// split a stream into N (arc:events:{0} … arc:events:{N-1}, one hash tag
// each, so they spread over a Cluster's primaries); PartitionPublisher puts
// each event in the partition of its RoutingKey (FNV-1a, see PartitionOf,
// reproducible in any language), and PartitionSubscriber reads a group's
// partitions, all or an assigned share, into one channel, keeping each
// key's order end to end. An Arc service reads or writes one partition
// with a RedisStreamTransport whose stream is the partition's key. With N
// = 1 the layout is Arc's single stream.
//
// # Differences from Arc's reader, on purpose
//
// An entry whose inner type is empty, or whose meta.id is a number, is
// malformed here (Arc routes the first to "*" only and hands the second to
// handlers as a number): a Watermill message's UUID is a string. An entry
// with repeated type or data fields carries two events, of which Arc reads
// only the last: it is dead-lettered whole instead. An entry over
// MaxEntryBytes is dead-lettered with an excerpt; the default is the most
// bytes an event Arc's publish accepts can take, so nothing Arc publishes
// is refused. A dead letter keeps an entry of over 3 MB only as an excerpt,
// cut on the server (RawTruncatedField).
//
// # Memory
//
// What a consumer reads is bounded in bytes as well as in count: a script
// runs each XREADGROUP (and XCLAIM) on the server and sends entries whole
// up to MaxBatchBytes (8 MiB), an entry over MaxEntryBytes as an excerpt,
// and the rest of the batch as ids, fetched in order as the batch is
// delivered (see SubscriberConfig.MaxBatchBytes). Twenty entries of 10 MB
// grow a consumer's heap by about 1 MB (a plain XREADGROUP: about 500 MB).
// Only the entry that ends a blocking wait on an idle stream comes whole,
// as BLOCK cannot run in a script. Redis itself still holds a whole batch
// while the script runs, as it does to answer a plain XREADGROUP.
package redisstream
