package reliability

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/arcmill/arcmill/middleware"
)

// The verdict classifies every event once and names each way a run can go
// wrong: it is what TestFaults fails on, so it is checked here without
// servers, case by case.
func TestAccount_EveryEventInOneClassAndEveryFailureNamed(t *testing.T) {
	t.Parallel()
	exhausted, invalid, malformed := middleware.ReasonRetryExhausted, middleware.ReasonValidationFailed, middleware.ReasonMalformed
	dl := func(reason, entry string) deadLetter {
		return deadLetter{reason: reason, message: "handler failed", entry: entry}
	}
	clean := func() tally {
		return tally{
			want: map[string]string{"g1": "", "g2": "", "p1": exhausted, "v1": invalid},
			effects: effectsResults{handled: map[string]bool{"g1": true, "g2": true}, ledger: map[string]int{"g1": 1, "g2": 1},
				applied: 2, duplicates: 3, emitted: map[string][]string{"g1": {"c1"}, "g2": {"c2"}},
				published: map[string]map[string]int{"g1": {"c1": 2}, "g2": {"c2": 1}}},
			// p1 was published twice by a relay: one dead letter per entry.
			dead: map[string][]deadLetter{"p1": {dl(exhausted, "5-0"), dl(exhausted, "6-0")}, "v1": {dl(invalid, "7-0")},
				"malformed:1-0": {{reason: malformed, message: "stream entry data: arc: malformed event: not JSON: invalid JSON at byte 0",
					entry: "1-0"}}},
			foreign: []foreignWrite{{id: "1-0", kind: "not-json", confirmed: true}},
		}
	}
	// unhandle removes every trace of good event id's handling.
	unhandle := func(in *tally, id string) {
		fx := &in.effects
		delete(fx.handled, id)
		fx.applied -= fx.ledger[id]
		delete(fx.ledger, id)
		delete(fx.emitted, id)
		delete(fx.published, id)
	}
	v := account(clean())
	assert.Empty(t, v.problems)
	assert.Equal(t, 4, v.sent)
	assert.Equal(t, 2, v.handled)
	assert.Equal(t, 2, v.applied)
	assert.Equal(t, 2, v.deadLettered)
	assert.Equal(t, 1, v.deadRepeats)
	assert.Equal(t, 2, v.childrenPublished)
	assert.Equal(t, 1, v.republished, "c1 published twice: one re-publication")
	assert.Equal(t, map[string]int{exhausted: 2, invalid: 1, malformed: 1}, v.deadByReason)
	assert.Equal(t, 1, v.foreignDeadLettered)

	for name, tc := range map[string]struct {
		spoil func(*tally)
		want  []string
	}{
		"a good event lost": {func(in *tally) { unhandle(in, "g2") }, []string{"event g2 was never handled"}},
		"a poison event without its dead letter": {func(in *tally) { delete(in.dead, "p1") },
			[]string{"poison event p1: no dead letter"}},
		"a good event dead-lettered": {func(in *tally) { in.dead["g1"] = []deadLetter{dl(exhausted, "8-0")} },
			[]string{"good event g1 was dead-lettered"}},
		"a poison event with the wrong reason": {func(in *tally) { in.dead["v1"] = []deadLetter{dl(exhausted, "8-0")} },
			[]string{"dead letter with reason retry_exhausted, want validation_failed"}},
		"a poison event that had an effect": {func(in *tally) {
			in.effects.handled["p1"], in.effects.ledger["p1"], in.effects.applied = true, 1, 3
			in.effects.emitted["p1"], in.effects.published["p1"] = []string{"c3"}, map[string]int{"c3": 1}
		}, []string{"poison event p1 had an effect"}},
		"the inbox letting a duplicate through": {func(in *tally) {
			in.effects.ledger["g1"], in.effects.applied = 2, 3
			in.effects.emitted["g1"] = []string{"c1", "c1b"}
			in.effects.published["g1"]["c1b"] = 1
		}, []string{"3 effects applied for 2 events handled", "effect of g1 applied 2 times",
			"2 children of handled event g1 committed to the outbox, want 1", "2 distinct children of handled event g1 published"}},
		"a second child committed, not yet published": {func(in *tally) { in.effects.emitted["g1"] = []string{"c1", "c9"} },
			[]string{"2 children of handled event g1 committed to the outbox, want 1"}},
		"a child never published": {func(in *tally) { delete(in.effects.published, "g2") },
			[]string{"the child c2 of handled event g2 was never published"}},
		"a child no committed transaction wrote": {func(in *tally) { in.effects.published["g2"] = map[string]int{"cX": 1} },
			[]string{"child cX of g2 published, but no committed transaction wrote it"}},
		"a child of an event not handled": {func(in *tally) { in.effects.published["p1"] = map[string]int{"c3": 1} },
			[]string{"children of p1 published, which the inbox has not recorded as handled"}},
		"an effect without its inbox record": {func(in *tally) { in.effects.ledger["g3"], in.effects.applied = 1, 3 },
			[]string{"3 effects applied for 2 events handled", "effect of g3 applied without its inbox record"}},
		"an inbox record without its effect": {func(in *tally) { delete(in.effects.ledger, "g2"); in.effects.applied = 1 },
			[]string{"1 effects applied for 2 events handled", "event g2 recorded by the inbox without its effect"}},
		"a stray entry on the emitted stream": {func(in *tally) { in.effects.strayChildren = []string{"9-0"} },
			[]string{"1 entries of the emitted stream are no child of a handled event"}},
		"a dead letter of nothing written": {func(in *tally) { in.dead["x"] = []deadLetter{dl(exhausted, "8-0")} },
			[]string{"no event the producer wrote"}},
		"a dead letter written again for one entry": {func(in *tally) { in.dead["v1"] = append(in.dead["v1"], dl(invalid, "7-0")) },
			[]string{`2 dead letters of "v1" for one stream entry 7-0, want 1`}},
		"a foreign entry dead-lettered twice": {func(in *tally) {
			in.dead["malformed:1-0"] = append(in.dead["malformed:1-0"], in.dead["malformed:1-0"][0])
		}, []string{"foreign entry 1-0 (not-json) dead-lettered 2 times, want once",
			`2 dead letters of "malformed:1-0" for one stream entry 1-0, want 1`}},
		"a confirmed foreign entry lost": {func(in *tally) { delete(in.dead, "malformed:1-0") },
			[]string{"foreign entry 1-0 (not-json, confirmed true) was never dead-lettered"}},
		"a foreign entry dead-lettered for another reason": {func(in *tally) {
			in.dead["malformed:1-0"] = []deadLetter{{reason: malformed, message: "entry has 2 type and 2 data fields"}}
		}, []string{"foreign entry 1-0 (not-json) dead-lettered as malformed"}},
		"a malformed dead letter of nothing written": {func(in *tally) {
			in.dead["malformed:2-0"] = []deadLetter{{reason: malformed, message: "stream entry data: x"}}
		}, []string{"1 malformed dead letters match no foreign entry written"}},
		"a loss where the mode allows none": {func(in *tally) {
			unhandle(in, "g2")
			in.mayVanish = func(id string) bool { return id == "g1" || id == "c1" } // acknowledged by the crashed server
		}, []string{"event g2 was never handled"}},
	} {
		in := clean()
		tc.spoil(&in)
		v := account(in)
		assert.Len(t, v.problems, len(tc.want), "%s: %v", name, v.problems)
		for _, w := range tc.want {
			assert.Contains(t, strings.Join(v.problems, "\n"), w, name)
		}
		assert.Equal(t, v.sent, v.handled+v.deadLettered+v.lostByBroker+v.lost, name)
	}

	// What a crashed server without persistence had acknowledged may be
	// gone: counted, not failed on. That includes a handled event's child.
	in := clean()
	unhandle(&in, "g2")
	delete(in.dead, "p1")
	delete(in.dead, "malformed:1-0")
	delete(in.effects.published, "g1")
	in.foreign[0].mayVanish = true
	in.mayVanish = func(id string) bool { return id == "g2" || id == "p1" || id == "c1" }
	v = account(in)
	assert.Empty(t, v.problems)
	assert.Equal(t, 2, v.lostByBroker)
	assert.Equal(t, 1, v.lostPoisonByBroker)
	assert.Equal(t, 1, v.childrenGone)
	assert.Zero(t, v.childrenPublished)
	assert.Equal(t, 1, v.foreignGone)
	assert.Zero(t, v.lost)
}
