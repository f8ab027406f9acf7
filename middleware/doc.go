// Package middleware gives Arc's recoverability and event chaining to
// Watermill handlers: retry with Arc's backoff, dead letters in Arc's
// DeadLetteredEvent shape (with the facts Arc leaves out), an optional
// delayed retry tier, causation and correlation stamping of child events,
// and schema validation on publish and on consume.
//
// The parts are ordinary message.HandlerMiddleware and publisher
// decorators, but their order matters, and the wrong one loses messages
// (watermill issues #580 and #645: a poison queue inside Retry swallows the
// first error). NewStack assembles them in the only order that works:
//
//	Causation → DeadLetter → Validation → Retry → [Breaker] → Timeout → Recoverer → handler
//
// so that a panic or a timeout is retried and then dead-lettered, an invalid
// payload is dead-lettered at once with reason validation_failed, a shutdown
// during a backoff nacks the message instead of dead-lettering it, and a
// dead letter that cannot be stored nacks the message instead of losing it.
//
// With the wildcard router, give the Stack's Middleware to each
// wildcard.HandlerConfig (one handler's failure then retries and
// dead-letters that handler alone) and its DeadLetter.Malformed to
// wildcard.Config.OnMalformed (foreign or corrupt messages are dead-lettered
// with reason malformed, never dropped).
//
// # Shutdown is no failure
//
// A transport that closes while a handler still works cancels the
// message's context with a cause matching ErrShutdown (arcmill's
// redispubsub does so with its ErrClosed after Config.CloseTimeout;
// context.WithCancelCause(ctx)(cause)). IsShutdown(ctx) recognises it.
// A handler error returned while the context IsShutdown is not counted as
// an attempt: Retry returns an error wrapping ErrShutdown at once, without
// retrying, and DeadLetter nacks the message, so the next delivery starts
// from the attempts that really failed. A context that ends without that
// cause (an ack deadline, a plain cancel) still counts the attempt.
//
// # An outage is no failure of the event
//
// A handler that fails because a transport or a dependency is down (its
// Redis refuses connections, a replica is READONLY, NATS reconnects; see
// IsTransportError, and mark your own dependency's outages with
// Transient) has done nothing wrong with the event. Retry does not count
// such a failure as an attempt: it waits (OutageBackoff doubling to
// OutageMaxBackoff, with jitter), logs the first failure at Error, counts
// the waits (Retry.OutageWaits, RetryConfig.OnOutage) and calls the
// handler again, until it succeeds, fails for the event's own reasons, or
// the message's context ends (then it nacks with ErrShutdown, uncounted).
// DeadLetter never dead-letters such a failure nor sends it to the delayed
// tier: it nacks after a wait that grows with each nack of the same
// message, so the redelivery is no hot loop (DeadLetterStats.
// TransportFailures). A dead letter that cannot be published is nacked
// after the same wait. A bare context deadline is not an outage: it is
// the attempt's own (StackConfig.Timeout), and counts.
//
// # A kill switch per subscription
//
// Retry and DeadLetter deal with one message at a time: during a
// downstream outage every message would still be tried, and every one
// whose failure is not a recognised transport error would burn its
// attempts and be dead-lettered. A Breaker (MassTransit's kill switch)
// watches the failure rate of a handler's calls over a sliding window and,
// past a threshold (by default 15 % of at least 10 calls within a minute),
// opens: the subscription stops taking messages (Breaker.Subscriber), the
// messages in hand wait at its gate (Breaker.Middleware, inside Retry in
// the Stack) instead of running, and a failure while it is open is held,
// not returned, so it costs no attempt and is never dead-lettered (a
// poison event excepted, below). Nothing is nacked, so there is no hot
// redelivery loop. After a cool-down (a minute by default) one probe
// message runs: its success closes the breaker, its failure opens it for
// another cool-down. Failures before the
// trip are ordinary ones: Retry counts them and DeadLetter may take a
// message whose attempts run out before the breaker has seen enough calls
// (a transport failure costs no attempt there either).
//
// A poison event cannot hold the subscription: a held message that fails
// BreakerConfig.ProbeAttempts probes in a row (3 by default) with no other
// message's probe failing in between and no transport failure is taken to
// fail on its own fault, and its failure is returned (Retry counts an
// attempt; DeadLetter takes it in the end) while the breaker stays open
// for the others. During an outage every message fails, so the probes of
// the messages in hand alternate and no row grows; a transport failure
// never counts towards one. Only an outage reported as ordinary errors,
// with a single message in hand, looks like a poison event: mark such
// errors Transient, or use NoProbeLimit.
//
// What counts: the handler's failures, and the outages of the handler's
// own dependencies (its database or Redis down: IsTransportError), which
// are exactly what a kill switch is for; not the event's own unrecoverable
// faults (arc.ErrUnrecoverable, ErrValidation, malformed events), which
// DeadLetter takes at once, nor a shutdown (BreakerConfig.Counts). The
// subscription's own broker being down is no failure of the handler and
// never reaches the breaker: reads, acks and claims fail inside the
// subscriber, and the window simply sees no calls.
//
// With BreakerConfig.Redis, the window, the open state (a key whose TTL is
// the cool-down) and the probe (SET NX) are shared by every instance of
// the same Name, so a fleet trips, probes once and closes together; when
// that Redis cannot be reached, each instance goes on with its own state.
// State, Stats and Health report it; metrics.WatchBreaker exports it, and
// console.Config.Breakers shows it on the overview.
//
// # Dead letters
//
// Each dead letter is logged at Error with its reason (Watermill's logger
// has no Warn level). Dead letters are Watermill messages, not Arc
// events: their payload is the DeadLetteredEvent JSON, their metadata the
// same facts under dlq_* keys
// (plus Watermill's PoisonQueue keys), with the failed event's correlation
// id and its id as causation id, so a dead letter stays in its chain.
//
// Dead-lettering always succeeds, or the message would come back forever:
// an event that cannot be written into the envelope (or would make it more
// than encoding/json reads back) is replaced by Arc's placeholder, with the
// message's raw bytes and, in encodeError, why. Raw payloads are bounded by
// DeadLetterConfig.MaxRawBytes.
//
// # A dead letter is written once
//
// A consumer that dies after writing a dead letter and before
// acknowledging its message gets the message back, and would write the
// dead letter again. DeadLetter guards against that (DeadLetterGuard):
// before publishing it claims a key naming the delivery (consumer group,
// dead-letter topic, source topic, handler, the transport's id of the
// message, MetadataOriginalID, and its UUID), marks it done after the publish, and
// releases it if the publish fails. A redelivery that finds the key done
// is acknowledged without a second dead letter. A claim left by a
// consumer killed before its publish lasts its lease
// (DeadLetterConfig.GuardLease, PublishTimeout plus 5 s by default):
// meanwhile redeliveries are nacked (ErrDeadLetterBusy), then one writes
// the dead letter, late but never lost. A written dead letter is
// remembered for GuardTTL (24 h by default); a redelivery later than that
// writes a second one. A crash (or a guard outage outlasting the lease)
// between the publish and the done mark leaves a claim too: after the
// lease, the delivery that takes it over asks the Publisher whether the
// dead letter is stored (DeadLetterFinder: arcmill's redisstream
// DeadLetterPublisher reads back the dead letters written since the
// claim), and acknowledges if so; a Publisher that cannot tell writes it
// again. A failed publish releases the claim; the next delivery asks the
// same question (the publish may have been stored, its reply lost), then
// publishes: late, never lost.
//
// The guard is on by default wherever it can be: when
// DeadLetterConfig.ConsumerGroup is set and a Redis client is at hand (the
// Publisher shares its own, as arcmill's redisstream Publisher and
// DeadLetterPublisher do; or GuardClient, or StackConfig.Redis), for each
// message that carries a transport id (arcmill's Redis Streams and
// JetStream subscribers set it). The guard is as durable as its Redis: a
// crash or failover that loses a done mark (no persistence, or a replica
// that had not received it) lets a redelivery write the dead letter again. Otherwise dead letters are at least once:
// never lost, sometimes written twice. The message UUID alone would not do:
// a redriven dead letter comes back with the same UUID and must be
// dead-lettered again if it fails again. Nor would the transport id alone:
// a JetStream stream deleted and recreated restarts its sequences, and a
// distinct event under a reused id must still get its dead letter. The key store is pluggable
// (DeadLetterConfig.Guard); a guard that cannot be reached nacks the
// message, after the outage wait.
//
// # Sequenced dead letters
//
// With StackConfig.Sequence (a Sequencer, opt-in per handler, outermost),
// a dead letter of an event with partition key K (meta.partitionKey, else
// its aggregate id; events with neither are not sequenced) parks the
// handler's later events of K in Redis, in source order, instead of
// running them before it: order.cancelled never runs before a failed
// order.created. They run, in order, once the dead letter (the head) is
// redriven and succeeds, or an operator releases them (SequenceAdmin,
// `arcmill dlq release`, the console's Parked page); an operator may also
// discard them. New events of K join the sequence until it has drained.
package middleware
