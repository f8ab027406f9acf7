// Package redisstream carries Arc events on Redis Streams in Arc's own
// layout, so Go services and Arc (Node) services share one stream: entries
// with the fields type and data (the event's Arc JSON), written by XADD
// with MAXLEN ~ 10000 to arc:events, read by consumer groups.
//
// Subscriber and Publisher are arcmill's own Pub/Sub for streams, built
// for throughput (batched reads and acks, pipelined writes, claims by
// delivery count, a dead-letter stream in Arc's layout); ArcSubscriber and
// ArcPublisher preset them as Arc's transport. Marshaller plugs Arc's
// layout into watermill-redisstream's publisher and subscriber too
// (WatermillArcPublisherConfig, WatermillArcSubscriberConfig), and
// DeadLetterPublisher writes middleware.DeadLetter's dead letters in Arc's
// dead-letter layout. SafeTrim trims only what every group is done with. Reading is total, stricter than Arc about never losing
// an event: where Arc acknowledges and drops a malformed entry, arcmill
// hands it on flagged (arc.MetadataMalformed) for the wildcard router to
// dead-letter with the reason and the raw fields.
//
// Differences from Arc's reader, on purpose: an entry whose inner type is
// empty, or whose meta.id is a number, is malformed here (Arc routes the
// first to "*" only and hands the second to handlers as a number).
package redisstream
