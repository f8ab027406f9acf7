package reliability

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/arcmill/arcmill/middleware"
)

// foreignWrite is one entry of foreign bytes written straight to the stream
// by the producer.
type foreignWrite struct {
	id string
	at time.Time // when XADD returned
	// confirmed: Redis promised to keep it (appendfsync always, or WAIT
	// with a replica).
	confirmed bool
	// mayVanish: the mode's promise allows a crash to lose it (set by the
	// runner once the run is over).
	mayVanish bool
}

// tally is everything the end of a fault run is judged on, read once the
// run is quiet.
type tally struct {
	want    map[string]string // event id → the dead-letter reason it must end with ("" = handled)
	guard   guardResults
	dead    map[string][]string // deadLetters: event id (or "malformed:<entry id>") → reasons, one per dead letter
	foreign []foreignWrite
	// foreignUnknown counts foreign XADDs that returned an error: each may
	// still have been written (the reply lost), with an id never learnt.
	foreignUnknown int
	// mayVanish reports whether the broker's promise allowed it to lose
	// event id: it acknowledged the event's publish and then crashed, in a
	// mode that keeps nothing through a crash.
	mayVanish func(id string) bool
}

// verdict is how every event and foreign entry ended. Each event is in
// exactly one class: handled, dead-lettered, lost by the broker (allowed
// by its mode), or lost (a failure).
type verdict struct {
	sent, good, poison, invalid int
	handled, applied            int
	deadLettered                int            // events that ended as dead letters
	deadByReason                map[string]int // dead letters, repeats included
	deadRepeats                 int            // dead letters written again for the same event or entry
	lostByBroker                int            // events (good or poison) gone with a crashed server its mode allowed to lose them
	lostPoisonByBroker          int            // of lostByBroker, poison events (their dead letter, or the entry, gone)
	lost                        int            // events that ended nowhere, not allowed by the mode: each is a problem
	foreignInjected             int
	foreignDeadLettered         int
	foreignGone                 int // foreign entries gone with the crashed server (allowed by the mode)
	foreignUnmatched            int // malformed dead letters of XADDs whose reply was lost
	problems                    []string
}

// account judges a tally. Every event and foreign entry is classified
// once; every dead letter must belong to one of them, with the reason it
// must have.
func account(in tally) verdict {
	v := verdict{deadByReason: map[string]int{}}
	problem := func(format string, args ...any) { v.problems = append(v.problems, fmt.Sprintf(format, args...)) }
	malformed := middleware.ReasonMalformed
	for id, reasons := range in.dead {
		for _, r := range reasons {
			v.deadByReason[r]++
		}
		v.deadRepeats += len(reasons) - 1
		if _, known := in.want[id]; !known && !strings.HasPrefix(id, "malformed:") {
			problem("dead letter(s) %v for %q, which is no event the producer wrote", reasons, id)
		}
	}
	for id := range in.guard.handled {
		if _, known := in.want[id]; !known {
			problem("an effect was applied for %q, which is no event the producer wrote", id)
		}
	}
	for _, id := range sortedKeys(in.want) {
		reason, got, handled := in.want[id], in.dead[id], in.guard.handled[id]
		v.sent++
		switch reason {
		case "":
			v.good++
		case middleware.ReasonRetryExhausted:
			v.poison++
		default:
			v.invalid++
		}
		for _, r := range got {
			if reason == "" {
				problem("good event %s was dead-lettered (%s)", id, r)
			} else if r != reason {
				problem("poison event %s: dead letter with reason %s, want %s", id, r, reason)
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
		case in.mayVanish != nil && in.mayVanish(id):
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
	v.applied = in.guard.applied
	if v.applied != len(in.guard.handled) {
		problem("%d effects applied for %d events handled: the guard let a duplicate through", v.applied, len(in.guard.handled))
	}
	written := map[string]bool{}
	for _, w := range in.foreign {
		v.foreignInjected++
		written["malformed:"+w.id] = true
		got := in.dead["malformed:"+w.id]
		for _, r := range got {
			if r != malformed {
				problem("foreign entry %s dead-lettered as %s, want %s", w.id, r, malformed)
			}
		}
		switch {
		case len(got) > 0:
			v.foreignDeadLettered++
		case w.mayVanish:
			v.foreignGone++
		default:
			problem("foreign entry %s (confirmed %v) was never dead-lettered", w.id, w.confirmed)
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
	return v
}

func sortedKeys(m map[string]string) []string {
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
	duplicates     int  // deliveries beyond the first, absorbed by the guard
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

const reportHeader = "| Redis | events written | good / poison / invalid | effects applied | dead letters: retry_exhausted / validation_failed / malformed (repeats) | lost by the broker (of them poison or invalid) | lost | foreign entries: injected / dead-lettered / gone with the crash | duplicate deliveries (absorbed by the guard) | published twice by a relay | outbox rows dead-lettered | SIGKILLs | Redis crash: down (replica lag; promotion) | PostgreSQL restarts | time |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"

func (r report) row() string {
	twice := fmt.Sprint(r.publishedTwice)
	if r.streamLost {
		twice = "n/a (stream lost)"
	}
	down := r.redisDown.String()
	if r.promoted > 0 {
		down += fmt.Sprintf(" (replica %d entries behind; promoted after %s)", r.lagged, r.promoted.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("| %s | %d | %d / %d / %d | %d | %d / %d / %d (%d) | %d (%d) | %d | %d / %d / %d | %d | %s | %d | %d | %s | %d | %s |\n",
		r.mode, r.sent, r.good, r.poison, r.invalid, r.applied,
		r.deadByReason[middleware.ReasonRetryExhausted], r.deadByReason[middleware.ReasonValidationFailed],
		r.deadByReason[middleware.ReasonMalformed], r.deadRepeats, r.lostByBroker, r.lostPoisonByBroker, r.lost,
		r.foreignInjected, r.foreignDeadLettered, r.foreignGone, r.duplicates, twice, r.outboxDead, r.kills, down,
		r.pgRestarts, r.elapsed.Round(100*time.Millisecond))
}
