// Package metrics exports arcmill's Prometheus metrics beside Watermill's
// own (AddWatermillRouterMetrics): events handled, retried and
// dead-lettered per handler and pattern; waits out of transport outages;
// unmatched and dropped malformed events per wildcard router; a dead-letter
// middleware's outcomes; the outbox relay's pass counters and the outbox's backlog and
// lag (age of the oldest undelivered row); and a Redis consumer group's
// pending entries. Per-event counters are fed by hooks (Middleware,
// OnRetry, OnDeadLetter, OnRelayPass); states are read at scrape time
// (WatchRouter, WatchDeadLetter, WatchOutbox, WatchStream). Label values are handler names,
// patterns, reasons, topics and stream names: low cardinality, never event
// ids.
//
// # Metric names and labels
//
// Every name starts with Config.Namespace (DefaultNamespace, "arcmill");
// the table shows the default. Counters end in _total.
//
//	metric                                 type       labels                          fed by
//	arcmill_events_handled_total           counter    handler, pattern, result        Middleware, Handler
//	arcmill_handler_seconds                histogram  handler, pattern                Middleware, Handler
//	arcmill_events_retried_total           counter    handler, pattern                OnRetry
//	arcmill_outage_waits_total             counter    handler, pattern                OnOutage
//	arcmill_events_dead_lettered_total     counter    handler, pattern, reason        OnDeadLetter
//	arcmill_messages_malformed_total       counter    topic                           OnDeadLetter
//	arcmill_outbox_relay_rows_total        counter    outcome                         OnRelayPass
//	arcmill_router_events_total            counter    router, outcome                 WatchRouter
//	arcmill_dead_letter_messages_total     counter    dead_letter, outcome            WatchDeadLetter
//	arcmill_outbox_rows                    gauge      table, state                    WatchOutbox
//	arcmill_outbox_oldest_pending_seconds  gauge      table                           WatchOutbox
//	arcmill_outbox_status_up               gauge      table                           WatchOutbox
//	arcmill_consumer_pending               gauge      stream, group                   WatchStream
//	arcmill_consumer_lag                   gauge      stream, group                   WatchStream
//	arcmill_breaker_state                  gauge      handler                         WatchBreaker
//	arcmill_breaker_transitions_total      counter    handler, to                     WatchBreaker
//	arcmill_breaker_held_total             counter    handler                         WatchBreaker
//	arcmill_breaker_waiting                gauge      handler                         WatchBreaker
//	arcmill_breaker_returned_total         counter    handler                         WatchBreaker
//
// The label values:
//
//   - handler, pattern: the wildcard handler's name and pattern
//     (wildcard.InfoFromContext); on a plain router handler, its name and
//     an empty pattern. A malformed message's dead letter has both empty.
//   - result: "ok" or "error".
//   - reason: the dead letter's middleware.DeadLetteredEvent.Reason
//     (middleware.ReasonRetryExhausted, ReasonMalformed...).
//   - topic: the topic a malformed message was read from.
//   - outcome of outbox_relay_rows_total: relayed, attempted,
//     publish_failed, ack_failed, ownership_mismatch, malformed,
//     fail_failed, dead_lettered, transport_failed (the fields of
//     outbox.RelayResult; a pass adds only the non-zero ones, so a series
//     appears at its first count). transport_failed counts publish calls
//     that failed on the broker's transport: their rows were given back
//     with no attempt counted, and the relay paused.
//   - router: WatchRouter's name; outcome of router_events_total:
//     handled, unmatched, unrouted_failed, failed, malformed, malformed_dropped
//     (wildcard.Router.Stats). malformed_dropped is the part of malformed
//     acknowledged without being kept anywhere (no Config.OnMalformed):
//     alert on it.
//   - dead_letter: WatchDeadLetter's name; outcome of
//     dead_letter_messages_total: dead_lettered, delayed_retry,
//     publish_failed, ignored (a dead letter read back as input),
//     transport_failed (nacked, not dead-lettered, because the failure was
//     a transport's outage) (middleware.DeadLetterStats).
//   - outage_waits_total counts the waits of middleware.Retry after a
//     transport or dependency failure (middleware.IsTransportError): each
//     cost the event no attempt. It grows during an outage, while
//     events_retried_total does not.
//   - table: the outbox's table; state: pending, delayed, in_flight, dead,
//     delivered (outbox.Status).
//   - stream, group: WatchStream's arguments. consumer_lag is missing where
//     Redis does not report it (before Redis 7, or after entries were
//     deleted).
//   - handler of breaker_*: the middleware.BreakerConfig.Name. state: 0
//     closed, 1 open, 2 half-open (alert on > 0: the subscription takes no
//     message); to: open, half_open, closed; held_total counts the failures
//     an open breaker held (no attempt counted, nothing dead-lettered);
//     waiting counts the messages in hand waiting for the breaker;
//     returned_total the held messages handed back as poison events
//     (BreakerConfig.ProbeAttempts).
//
// handler_seconds has 14 buckets from 0.5 ms, doubling (0.0005 s to about
// 4 s). outbox_status_up is 0 when a scrape could not read the outbox
// (then its other two gauges are missing); a consumer group that cannot be
// read has no series at all in that scrape, so alert on absent() too.
//
// AddWatermillRouterMetrics adds Watermill's own, under the subsystem
// "watermill": arcmill_watermill_handler_execution_time_seconds
// (handler_name, success), arcmill_watermill_publish_time_seconds
// (handler_name, publisher_name, success) and
// arcmill_watermill_subscriber_messages_received_total (handler_name,
// subscriber_name, acked).
//
// # What events_handled_total counts
//
// Middleware counts calls of what it wraps, so its place decides what a
// count is:
//
//   - Outside the recovery stack (before stack.Middleware in
//     HandlerConfig.Middleware, the first being the outermost), it counts
//     deliveries: one per delivery of an event to the handler. result is
//     "error" only when the delivery is nacked (a shutdown, a failed
//     dead-letter write); an event that was retried and then
//     dead-lettered counts "ok", since its delivery was settled, and
//     shows in events_retried_total and events_dead_lettered_total.
//   - Inside it (after stack.Middleware), it counts attempts: each retry is
//     a call, and result is each attempt's.
//
// Handler counts attempts, like Middleware inside the stack; it is the way
// to measure handlers added with wildcard.Router.Subscribe, which takes no
// middleware.
//
// # Malformed messages
//
// A message that is not an Arc event reaches no handler: its dead letter
// counts in events_dead_lettered_total with an empty handler and pattern
// (never the router's internal handler name), and in
// messages_malformed_total under the topic it was read from.
package metrics
