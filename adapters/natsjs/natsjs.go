// Package natsjs runs Arc events on NATS JetStream, for teams that outgrow
// one Redis. Each event is published on its own subject, <prefix>.<type>,
// into one stream that holds <prefix>.>; a pattern subscription becomes a
// JetStream consumer filtered on the subject the pattern maps to, so the
// server, not the process, does the matching where the semantics allow
// (SubjectMode):
//
//	pattern (mode)            NATS subject            matching
//	order.created             <prefix>.order.created  by the server
//	order.* (ArcMode)         <prefix>.order.>        by the server (Arc's ".*" takes any depth, as ">")
//	order.* (SegmentMode)     <prefix>.order.*        by the server (one token)
//	*       (ArcMode)         <prefix>.>              by the server
//	order:*, order*           <prefix>.>              in the process, by the wildcard router
//
// Subjects are checked (ValidateSubject: syntax, MaxSubjectLength,
// MaxSubjectTokens) before anything reaches the server: an oversized
// subject would close the connection and every subscription on it. Types
// must be valid subject tokens (no spaces, '*' or '>'): Arc's dotted
// types are.
//
// # Durable consumers
//
// The Subscriber creates each durable consumer itself (AddConsumer with
// Durable, DeliverGroup, FilterSubject and AckExplicit) and then binds to
// it, so nats.go never owns, and never deletes, it: a Close, a SIGKILL or
// one instance of a group stopping leaves the consumer and its
// acknowledged position to the other instances and to the next start.
//
// # Deduplication
//
// The Publisher sets Nats-Msg-Id to MsgID(msg), the message UUID (the
// event id for arc.ToMessage), so JetStream drops a repeat within its
// duplicate window (2 minutes by default): an outbox relay's republish
// after a crash is stored once, and so is a deliberate republish of the
// same event id inside the window. A delayed-retry copy of a message
// (middleware.DelayedRetry) gets "<uuid>.retry.<n>", so it is stored.
//
// # Failures and dead letters
//
// A nacked message is redelivered after SubscriberConfig.BackOff's wait
// (NakWithDelay), never at once. JetStream delivers a message at most
// MaxDeliver times; then it sends its max-deliveries advisory, and the
// Subscriber stores a middleware.DeadLetteredEvent for the message on
// DeadLetterSubject, a subject outside <prefix>.> in a stream of its own,
// so that no "*" consumer of the events sees dead letters. The
// Publisher also stores middleware.DeadLetter's dead letters: give it
// as DeadLetterConfig.Publisher with the same subject as Topic.
// ReadDeadLetters reads them back.
//
// A handler that waits out a downstream outage (middleware.Retry on
// transport errors, an open middleware.Breaker) costs no event a
// delivery: the Subscriber reports every message it holds, the one in
// the handler and the ones the server pushed behind it (up to
// MaxAckPending), as in progress every half AckWaitTimeout, so none
// reaches its ack wait, is redelivered or is given up by MaxDeliver.
//
// The same wildcard router and handlers as on Redis run on top: give
// Subject's result as the handler's Topic and the pattern as its pattern.
//
// # Connections
//
// NewPublisher and NewSubscriber take a PublisherConfig and a
// SubscriberConfig holding either a connection the caller opened
// (Conn), or a URL and the nats.Options to open one with: credentials
// (nats.UserInfo, nats.UserCredentials), TLS (nats.RootCAs,
// nats.ClientCert), reconnection. A connection they open reconnects for
// ever unless an option says otherwise (DefaultConnOptions). Their Close
// drains the connection, so give each one a connection of its own.
//
// # Consumer settings
//
// SubscriberConfig sets the group's durable consumers: AckWaitTimeout
// (JetStream's AckWait), MaxDeliver, BackOff and MaxAckPending, each with
// its Default* constant. A consumer made with other settings (an earlier
// version, another config) is updated in place at Subscribe.
//
// # Clusters
//
// On a JetStream cluster, give the streams replicas (EnsureStreamConfig
// with StreamConfig.Replicas 3 on three nodes; the consumers inherit the
// stream's count) and give clients every node's URL, comma-separated, so
// that they reconnect to another node when theirs dies. When a node is
// lost, the streams and consumers it led elect new leaders within seconds;
// meanwhile a publish fails with nats.ErrNoStreamResponse, nats.ErrTimeout
// or a 503 API error, all of which middleware.IsTransportError counts as
// outages: a handler that publishes waits (middleware.Retry) instead of
// spending attempts, and nothing is dead-lettered for it. An ack lost in
// the election is redelivered after the ack wait (at least once).
//
// # Partitions
//
// Events can be spread by key over N partitions of one stream, each read
// by one consumer that holds one message at a time, keeping each key's
// order while N consumers share the load. The servers' subject mapping
// places them (PartitionMapping, PublisherConfig.PartitionIngress,
// PartitionSubject), with the same FNV-1a hash of the key as the Redis
// partitioned streams.
package natsjs

import (
	"github.com/nats-io/nats.go"
)

// EnsureStream creates the stream that holds <prefix>.> if it is missing,
// with one replica (DefaultReplicas), and leaves an existing one as it is:
// EnsureStreamConfig with Name and Prefix. Use it for the events (DefaultPrefix) and, with another name,
// for the dead letters (DefaultDeadLetterPrefix). On a cluster, use
// EnsureStreamConfig with Replicas 3.
func EnsureStream(js nats.JetStreamManager, name, prefix string) error {
	return EnsureStreamConfig(js, StreamConfig{Name: name, Prefix: prefix})
}
