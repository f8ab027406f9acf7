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
// Patterns mean what they mean in Arc (ArcMode, the default): "*" matches
// every type, "order.*" every type starting with "order." at any depth,
// "order:*" every type starting with "order:", anything else itself. Match is
// the reference for that. SegmentMode, chosen per handler, adds NATS-style
// "*.created" (one token) and "order.>" (one or more trailing tokens).
//
// Delivery rules, stricter than Arc's: a handler runs once per event even
// under several matching patterns; one handler's failure nacks the message
// and its redelivery runs only the handlers that have not yet succeeded; an
// event no handler matches is acknowledged and counted; a subscription whose
// handlers have all unsubscribed holds what it receives, unacknowledged,
// until a handler subscribes again or the router closes. Config.Workers lanes
// keep one partition key in order. Every handler has its own middleware chain, and reads the
// matched pattern, its name and the topic with InfoFromContext or from its
// message's metadata.
package wildcard
