// Package wildcard adds pattern subscriptions ("order.*", "*") to the
// Watermill router, with Arc's semantics.
//
// Watermill subscribes one literal topic per handler. Arc's handlers
// subscribe by pattern, and Arc's Redis Streams transport carries every
// event type on one stream. Router gives Watermill users the same: handlers
// subscribe patterns on any Watermill subscriber and topic, each (subscriber,
// topic) is read by one Watermill handler, and events fan out in process to
// every handler whose pattern matches, through an Index whose cost does not
// grow with the number of patterns that do not match.
//
// # Patterns
//
// In ArcMode, the default, "*" matches every type, "order.*" every type
// starting with "order." at any depth, and a pattern without '*' the one
// type it names. Arc's Memory and Redis Streams transports read those
// patterns so in every version, and Arc's Pub/Sub transport (a Redis glob)
// matches the same types for them unless the pattern also holds '?' or '['.
//
// "order:*" matches every type starting with "order:". Here Arc's matchers
// differ: Arc's Pub/Sub transport and Arc ≥ 2.12's shared matcher (used by
// its Memory transport) treat "order:*" as a prefix, and arcmill follows
// them, but Arc 2.11–2.14's Redis Streams transport treats it as the literal
// type "order:*". Teams that run such Arc Streams consumers in the same
// consumer group as arcmill set Config.ColonStarLiteral (or choose
// ArcStreamsMode per handler), so that every member of the group routes
// "order:*" alike. Match is the reference for ArcMode.
//
// SegmentMode, chosen per handler, adds NATS-style "*.created" (one token)
// and "order.>" (one or more trailing tokens), which no Arc transport has
// in that form.
//
// # Delivery
//
// Delivery rules, stricter than Arc's: a handler runs once per event even
// under several matching patterns; one handler's failure nacks the message
// and its redelivery runs only the handlers that have not yet succeeded; an
// event no handler matches is counted and acknowledged, after
// Config.OnUnrouted, when set, has seen it (Arc 2.41's onUnroutedEvent; its
// error nacks the event); a message that is not
// an Arc event goes to Config.OnMalformed (give it middleware.DeadLetter's
// Malformed to dead-letter it), or, with none, is dropped once with an Error
// line and counted (Stats.MalformedDropped), never nacked into a loop; a
// subscription whose
// handlers have all unsubscribed holds what it receives, unacknowledged,
// until a handler subscribes again or the router closes. Config.Workers
// (64) lanes keep one partition key in order while keys run concurrently;
// a KeyOrderedSubscriber (the Redis Streams Subscriber) keeps that order
// itself and is read with no lane, and an event its transport already
// decoded (ContextWithEvent) is not decoded again. Every handler has its own
// middleware chain, and reads the matched pattern, its name and the topic
// with InfoFromContext or from its message's metadata.
//
// # Lifecycle
//
// Run runs the message.Router; Running closes once every subscription made
// so far reads its subscriber; Close, idempotent, stops them, and Closed
// closes once Run has returned. Handle and Subscribe work before Run,
// while it runs, and return ErrRouterClosed after Close. The Redis Pub/Sub
// adapter has the same shape (Running, Close, Closed).
package wildcard
