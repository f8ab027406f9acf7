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
	clean := func() tally {
		return tally{
			want:  map[string]string{"g1": "", "g2": "", "p1": exhausted, "v1": invalid},
			guard: guardResults{handled: map[string]bool{"g1": true, "g2": true}, applied: 2, duplicates: 3},
			dead: map[string][]string{"p1": {exhausted, exhausted}, "v1": {invalid},
				"malformed:1-0": {malformed}},
			foreign: []foreignWrite{{id: "1-0", confirmed: true}},
		}
	}
	v := account(clean())
	assert.Empty(t, v.problems)
	assert.Equal(t, 4, v.sent)
	assert.Equal(t, 2, v.handled)
	assert.Equal(t, 2, v.deadLettered)
	assert.Equal(t, 1, v.deadRepeats)
	assert.Equal(t, map[string]int{exhausted: 2, invalid: 1, malformed: 1}, v.deadByReason)
	assert.Equal(t, 1, v.foreignDeadLettered)

	for name, tc := range map[string]struct {
		spoil func(*tally)
		want  string
	}{
		"a good event lost": {func(in *tally) { delete(in.guard.handled, "g2"); in.guard.applied = 1 },
			"event g2 was never handled"},
		"a poison event without its dead letter": {func(in *tally) { delete(in.dead, "p1") },
			"poison event p1: no dead letter"},
		"a good event dead-lettered": {func(in *tally) { in.dead["g1"] = []string{exhausted} },
			"good event g1 was dead-lettered"},
		"a poison event with the wrong reason": {func(in *tally) { in.dead["v1"] = []string{exhausted} },
			"dead letter with reason retry_exhausted, want validation_failed"},
		"a poison event that had an effect": {func(in *tally) { in.guard.handled["p1"] = true; in.guard.applied = 3 },
			"poison event p1 had an effect"},
		"the guard letting a duplicate through": {func(in *tally) { in.guard.applied = 3 },
			"3 effects applied for 2 events handled"},
		"a dead letter of nothing written": {func(in *tally) { in.dead["x"] = []string{exhausted} },
			"no event the producer wrote"},
		"a confirmed foreign entry lost": {func(in *tally) { delete(in.dead, "malformed:1-0") },
			"foreign entry 1-0 (confirmed true) was never dead-lettered"},
		"a malformed dead letter of nothing written": {func(in *tally) { in.dead["malformed:2-0"] = []string{malformed} },
			"1 malformed dead letters match no foreign entry written"},
		"a loss where the mode allows none": {func(in *tally) {
			delete(in.guard.handled, "g2")
			in.guard.applied = 1
			in.mayVanish = func(id string) bool { return id == "g1" } // acknowledged by the crashed server: g1 only
		}, "event g2 was never handled"},
	} {
		in := clean()
		tc.spoil(&in)
		v := account(in)
		assert.Len(t, v.problems, 1, name)
		assert.Contains(t, strings.Join(v.problems, "\n"), tc.want, name)
		assert.Equal(t, v.sent, v.handled+v.deadLettered+v.lostByBroker+v.lost, name)
	}

	// What a crashed server without persistence had acknowledged may be
	// gone: counted, not failed on.
	in := clean()
	delete(in.guard.handled, "g2")
	in.guard.applied = 1
	delete(in.dead, "p1")
	delete(in.dead, "malformed:1-0")
	in.foreign[0].mayVanish = true
	in.mayVanish = func(id string) bool { return id == "g2" || id == "p1" }
	v = account(in)
	assert.Empty(t, v.problems)
	assert.Equal(t, 2, v.lostByBroker)
	assert.Equal(t, 1, v.lostPoisonByBroker)
	assert.Equal(t, 1, v.foreignGone)
	assert.Zero(t, v.lost)
}
