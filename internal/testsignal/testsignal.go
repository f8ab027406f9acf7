// Package testsignal lets a component tell its tests that something
// happened (a claim pass ran, acks were flushed, an entry was dead-lettered)
// at no cost in production, in the manner of River's testsignal: a Signal
// does nothing until a test calls Init, and then becomes a buffered channel
// the test waits on with WaitOrTimeout. Tests wait on the event itself
// instead of sleeping for a time that is usually, but not always, enough.
package testsignal

import (
	"testing"
	"time"
)

// buffer is how many signals a test may leave unread before later ones are
// dropped (a component never blocks on its tests).
const buffer = 1000

// DefaultTimeout is how long WaitOrTimeout waits.
const DefaultTimeout = 10 * time.Second

// Signal carries values of type T from a component to its test. The zero
// value is inert: Signal does nothing, so production code pays one nil check.
type Signal[T any] struct {
	ch chan T
	t  testing.TB
}

// Init turns the signal on for the test t. Call it before the component
// starts.
func (s *Signal[T]) Init(t testing.TB) {
	s.ch = make(chan T, buffer)
	s.t = t
}

// Signal sends v to the test, if one is listening; it never blocks.
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
	}
}

// WaitOrTimeout returns the next value, failing the test after
// DefaultTimeout.
func (s *Signal[T]) WaitOrTimeout() T {
	s.t.Helper()
	return s.WaitFor(DefaultTimeout)
}

// WaitFor returns the next value, failing the test after d.
func (s *Signal[T]) WaitFor(d time.Duration) T {
	s.t.Helper()
	if s.ch == nil {
		s.t.Fatal("testsignal: Init was not called")
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-s.ch:
		return v
	case <-timer.C:
		s.t.Fatalf("testsignal: no signal within %s", d)
	}
	var zero T
	return zero
}

// WaitUntil reads values until ok reports true for one, which it returns,
// failing the test after d.
func (s *Signal[T]) WaitUntil(d time.Duration, ok func(T) bool) T {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			s.t.Fatalf("testsignal: the awaited signal did not come within %s", d)
		}
		if v := s.WaitFor(left); ok(v) {
			return v
		}
	}
}
