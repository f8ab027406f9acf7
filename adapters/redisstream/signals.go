package redisstream

import (
	"testing"

	"github.com/arcmill/arcmill/internal/testsignal"
)

// subscriberSignals tell tests what the subscriber's goroutines did. They
// cost nothing unless a test calls Init.
type subscriberSignals struct {
	// Claimed carries the result of each claim round.
	Claimed testsignal.Signal[claimResult]
	// Flushed carries the size of each successful XACK.
	Flushed testsignal.Signal[int]
	// DeadLettered carries the id of each entry a claim dead-lettered.
	DeadLettered testsignal.Signal[string]
	// Heartbeat carries how many held entries each heartbeat refreshed.
	Heartbeat testsignal.Signal[int]
}

// Init turns every signal on for t.
func (s *subscriberSignals) Init(t testing.TB) {
	s.Claimed.Init(t)
	s.Flushed.Init(t)
	s.DeadLettered.Init(t)
	s.Heartbeat.Init(t)
}
