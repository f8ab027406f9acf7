package reliability

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/arcmill/arcmill/middleware"
)

// foreignWrite is one entry of foreign bytes written straight to the stream
// by the producer.
type foreignWrite struct {
	id   string
	kind string    // the foreignKinds entry it is
	at   time.Time // when XADD returned
	// confirmed: Redis promised to keep it (appendfsync always, or WAIT
	// with a replica).
	confirmed bool
	// mayVanish: the mode's promise allows a crash to lose it (set by the
	// runner once the run is over).
	mayVanish bool
}

// deadLetter is what the accounting reads of one dead letter.
type deadLetter struct {
	reason  string // the envelope's reason
	message string // its error message
	// entry is the stream entry it was written for (originalId): one
	// event published twice by a relay has two entries, and may have a
	// dead letter for each; one entry must have at most one.
	entry string
	at    time.Time // its lastFailedAt: when the consumer gave up
}

// tally is everything the end of a fault run is judged on, read once the
// run is quiet.
type tally struct {
	want    map[string]string // event id → the dead-letter reason it must end with ("" = handled)
	effects effectsResults
	dead    map[string][]deadLetter // deadLetters: event id (or "malformed:<entry id>") → its dead letters
	foreign []foreignWrite
	// foreignUnknown counts foreign XADDs that returned an error: each may
	// still have been written (the reply lost), with an id never learnt.
	foreignUnknown int
	// mayVanish reports whether the broker's promise allowed it to lose
	// the entry of event id (a producer's event or a consumer's child):
	// it acknowledged the publish and then crashed, in a mode that keeps
	// nothing through a crash.
	mayVanish func(id string) bool
}

// vanishes reports whether the mode allowed the crash to lose the entry
// of event id.
func (in tally) vanishes(id string) bool { return in.mayVanish != nil && in.mayVanish(id) }

// verdict is how every event and foreign entry ended. Each event is in
// exactly one class: handled, dead-lettered, lost by the broker (allowed
// by its mode), or lost (a failure). Each handled event's child is
// published once, or gone with the broker (allowed by its mode).
type verdict struct {
	sent, good, poison, invalid int
	handled, applied            int
	deadLettered                int            // events that ended as dead letters
	deadByReason                map[string]int // dead letters, repeats included
	deadRepeats                 int            // dead letters beyond one per event: one per entry of an event a relay published twice
	lostByBroker                int            // events (good or poison) gone with a crashed server its mode allowed to lose them
	lostPoisonByBroker          int            // of lostByBroker, poison events (their dead letter, or the entry, gone)
	lost                        int            // events that ended nowhere, not allowed by the mode: each is a problem
	// childrenPublished counts handled events whose one emitted child is
	// on the emitted stream; childrenGone, those whose child went with a
	// crashed server allowed to lose it; republished, the child entries
	// beyond one per child (a relay killed between publishing and
	// settling), which a consumer's inbox would skip by meta.id.
	childrenPublished, childrenGone, republished int
	foreignInjected                              int
	foreignDeadLettered                          int
	foreignGone                                  int // foreign entries gone with the crashed server (allowed by the mode)
	foreignUnmatched                             int // malformed dead letters of XADDs whose reply was lost
	foreignByKind                                map[string]*foreignCount
	problems                                     []string
}

// account judges a tally. Every event, child and foreign entry is
// classified once; every dead letter must belong to one of them, with the
// reason it must have.
func account(in tally) verdict {
	v := verdict{deadByReason: map[string]int{}}
	problem := func(format string, args ...any) { v.problems = append(v.problems, fmt.Sprintf(format, args...)) }
	for id, dls := range in.dead {
		for _, dl := range dls {
			v.deadByReason[dl.reason]++
		}
		v.deadRepeats += len(dls) - 1
		perEntry := map[string][]string{}
		for _, dl := range dls {
			perEntry[dl.entry] = append(perEntry[dl.entry], dl.at.UTC().Format("15:04:05.000"))
		}
		for _, entry := range sortedKeys(perEntry) {
			if at := perEntry[entry]; len(at) > 1 {
				problem("%d dead letters of %q for one stream entry %s, want 1: written again on redelivery (given up at %v)",
					len(at), id, entry, at)
			}
		}
		if _, known := in.want[id]; !known && !strings.HasPrefix(id, "malformed:") {
			problem("dead letter(s) %v for %q, which is no event the producer wrote", dls, id)
		}
	}
	for id := range in.effects.handled {
		if _, known := in.want[id]; !known {
			problem("an effect was applied for %q, which is no event the producer wrote", id)
		}
	}
	for _, id := range sortedKeys(in.want) {
		reason, got, handled := in.want[id], in.dead[id], in.effects.handled[id]
		v.sent++
		switch reason {
		case "":
			v.good++
		case middleware.ReasonRetryExhausted:
			v.poison++
		default:
			v.invalid++
		}
		for _, dl := range got {
			if reason == "" {
				problem("good event %s was dead-lettered (%s)", id, dl.reason)
			} else if dl.reason != reason {
				problem("poison event %s: dead letter with reason %s, want %s", id, dl.reason, reason)
			}
		}
		if reason != "" && handled {
			problem("poison event %s had an effect", id)
		}
		switch {
		case reason == "" && handled:
			v.handled++
		case reason != "" && len(got) > 0:
			v.deadLettered++
		case in.vanishes(id):
			v.lostByBroker++
			if reason != "" {
				v.lostPoisonByBroker++
			}
		default:
			v.lost++
			if reason == "" {
				problem("event %s was never handled", id)
			} else {
				problem("poison event %s: no dead letter (want reason %s)", id, reason)
			}
		}
	}
	v.accountEffects(in, problem)
	v.accountForeign(in, problem)
	return v
}

// accountEffects checks the inbox's promise: each handled event's effect
// applied once, and one child emitted and published for it.
func (v *verdict) accountEffects(in tally, problem func(string, ...any)) {
	fx := in.effects
	v.applied = fx.applied
	if v.applied != len(fx.handled) {
		problem("%d effects applied for %d events handled: the inbox let a duplicate through", v.applied, len(fx.handled))
	}
	for _, id := range sortedKeys(fx.ledger) {
		if n := fx.ledger[id]; n > 1 {
			problem("effect of %s applied %d times", id, n)
		}
		if !fx.handled[id] {
			problem("effect of %s applied without its inbox record", id)
		}
	}
	for _, id := range sortedKeys(fx.handled) {
		if fx.ledger[id] == 0 {
			problem("event %s recorded by the inbox without its effect", id)
		}
		rows, pub := fx.emitted[id], fx.published[id]
		if len(rows) != 1 {
			problem("%d children of handled event %s committed to the outbox, want 1", len(rows), id)
		}
		if len(pub) > 1 {
			problem("%d distinct children of handled event %s published, want 1: the handler's effect ran %d times",
				len(pub), id, len(pub))
		}
		for child, n := range pub {
			if !slices.Contains(rows, child) {
				problem("child %s of %s published, but no committed transaction wrote it", child, id)
			}
			v.republished += n - 1
		}
		switch {
		case len(pub) > 0:
			v.childrenPublished++
		case len(rows) == 1 && in.vanishes(rows[0]):
			v.childrenGone++
		case len(rows) == 1:
			problem("the child %s of handled event %s was never published", rows[0], id)
		}
	}
	for _, id := range sortedKeys(fx.emitted) {
		if !fx.handled[id] {
			problem("children %v of %s committed to the outbox, which the inbox has not recorded as handled", fx.emitted[id], id)
		}
	}
	for _, id := range sortedKeys(fx.published) {
		if !fx.handled[id] {
			problem("children of %s published, which the inbox has not recorded as handled", id)
		}
	}
	if len(fx.strayChildren) > 0 {
		problem("%d entries of the emitted stream are no child of a handled event: %v", len(fx.strayChildren), fx.strayChildren)
	}
}

// foreignCount is how one kind of foreign entry ended.
type foreignCount struct{ injected, deadLettered, gone int }

func (c foreignCount) String() string {
	return fmt.Sprintf("%d injected, %d dead-lettered, %d gone", c.injected, c.deadLettered, c.gone)
}

// accountForeign checks that each foreign entry was dead-lettered once as
// malformed, with the reason of its kind, or went with the crash where
// the mode allows it.
func (v *verdict) accountForeign(in tally, problem func(string, ...any)) {
	written := map[string]bool{}
	v.foreignByKind = map[string]*foreignCount{}
	for _, w := range in.foreign {
		v.foreignInjected++
		count := v.foreignByKind[w.kind]
		if count == nil {
			count = &foreignCount{}
			v.foreignByKind[w.kind] = count
		}
		count.injected++
		written["malformed:"+w.id] = true
		got := in.dead["malformed:"+w.id]
		why := foreignReason(w.kind)
		for _, dl := range got {
			if dl.reason != middleware.ReasonMalformed || !strings.Contains(dl.message, why) {
				problem("foreign entry %s (%s) dead-lettered as %s (%q), want %s (%q)", w.id, w.kind, dl.reason, dl.message,
					middleware.ReasonMalformed, why)
			}
		}
		if len(got) > 1 {
			problem("foreign entry %s (%s) dead-lettered %d times, want once", w.id, w.kind, len(got))
		}
		switch {
		case len(got) > 0:
			v.foreignDeadLettered++
			count.deadLettered++
		case w.mayVanish:
			v.foreignGone++
			count.gone++
		default:
			problem("foreign entry %s (%s, confirmed %v) was never dead-lettered", w.id, w.kind, w.confirmed)
		}
	}
	for id := range in.dead {
		if strings.HasPrefix(id, "malformed:") && !written[id] {
			v.foreignUnmatched++
		}
	}
	if v.foreignUnmatched > in.foreignUnknown {
		problem("%d malformed dead letters match no foreign entry written (%d XADDs had no reply)", v.foreignUnmatched, in.foreignUnknown)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// report is one fault run's row of the results table.
type report struct {
	verdict
	mode           redisMode
	duplicates     int  // deliveries beyond the first, skipped by the inbox
	publishedTwice int  // entries beyond one per event and foreign entry
	streamLost     bool // the crash emptied the stream: publishedTwice unknown
	outboxDead     int
	kills          int
	redisDown      time.Duration
	promoted       time.Duration // replica: the crash to Sentinel's promotion
	lagged         int64         // replica: entries the primary had and the replica lacked at the crash
	pgRestarts     int
	elapsed        time.Duration
}

const reportHeader = "| Redis | events written | good / poison / invalid | effects applied (inbox) | emitted children: published once / gone with the crash (re-published by a relay) | dead letters: retry_exhausted / validation_failed / malformed (repeats) | lost by the broker (of them poison or invalid) | lost | foreign entries: injected / dead-lettered / gone with the crash | duplicate deliveries (skipped by the inbox) | published twice by a relay | outbox rows dead-lettered | SIGKILLs | Redis crash: down (replica lag; promotion) | PostgreSQL restarts | time |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"

func (r report) row() string {
	twice := fmt.Sprint(r.publishedTwice)
	if r.streamLost {
		twice = "n/a (stream lost)"
	}
	down := r.redisDown.String()
	if r.promoted > 0 {
		down += fmt.Sprintf(" (replica %d entries behind; promoted after %s)", r.lagged, r.promoted.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("| %s | %d | %d / %d / %d | %d | %d / %d (%d) | %d / %d / %d (%d) | %d (%d) | %d | %d / %d / %d | %d | %s | %d | %d | %s | %d | %s |\n",
		r.mode, r.sent, r.good, r.poison, r.invalid, r.applied, r.childrenPublished, r.childrenGone, r.republished,
		r.deadByReason[middleware.ReasonRetryExhausted], r.deadByReason[middleware.ReasonValidationFailed],
		r.deadByReason[middleware.ReasonMalformed], r.deadRepeats, r.lostByBroker, r.lostPoisonByBroker, r.lost,
		r.foreignInjected, r.foreignDeadLettered, r.foreignGone, r.duplicates, twice, r.outboxDead, r.kills, down,
		r.pgRestarts, r.elapsed.Round(100*time.Millisecond))
}
