package wildcard

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/arc"
)

// entry is one subscribed handler.
type entry struct {
	name         string
	patterns     []Pattern
	fn           message.HandlerFunc // with its middleware
	publisher    message.Publisher
	publishTopic string
}

// source is the one Watermill handler of a (subscriber, topic). It is also
// the message.Subscriber that handler reads: the user's subscriber, split
// into lanes (partition.go).
type source struct {
	r        *Router
	key      sourceKey
	name     string
	wm       *message.Handler
	index    *Index[*entry]
	handlers map[string]*entry // guarded by r.mu
	progress *progress
	buffers  sync.Pool
	workers  int
	keyFunc  func(*message.Message) string
	logger   watermill.LoggerAdapter

	// startErr is a failed Subscribe of a source started at run time
	// (startedLate), reported by Handle instead of ending the router.
	startedLate bool
	startErr    error

	mu      sync.Mutex
	count   int           // len(handlers)
	wake    chan struct{} // closed when count leaves 0
	subDone <-chan struct{}
}

// setCount records how many handlers the source has, waking a paused
// dispatch when there are some again.
func (s *source) setCount(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == 0 && n > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
	}
	s.count = n
}

// empty returns whether the source has no handlers, and the channel that
// closes when it has some again.
func (s *source) empty() (bool, <-chan struct{}, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count == 0, s.wake, s.subDone
}

// dispatch is the source's Watermill handler: decode once, run every
// matching handler that has not yet succeeded for this event.
//
// It runs on a goroutine Watermill's router starts for each message, whose
// stack starts small: the event travels by pointer and the rare paths are
// functions of their own, so the common path's frames stay small and the
// stack is not grown (copied) for every message.
func (s *source) dispatch(msg *message.Message) error {
	ev, err := eventOf(msg, s.r.cfg.Limits)
	if err != nil {
		return s.malformedMessage(msg, err)
	}
	bufp := s.buffers.Get().(*[]*entry)
	var matches []*entry
	// A delayed retry of one handler's failure: that handler alone, and no
	// progress tracking (the copy shares the event's id with the original).
	target := msg.Metadata.Get(MetadataTargetHandler)
	defer func() {
		clear(matches)
		*bufp = matches[:0]
		s.buffers.Put(bufp)
	}()
	for {
		matches = s.index.AppendMatches((*bufp)[:0], ev.Type)
		if target != "" {
			matches = s.onlyHandler(msg, matches, target)
		}
		if len(matches) > 0 {
			break
		}
		if done, err := s.noMatch(msg, ev); done {
			return err
		}
	}

	var done map[*entry]struct{}
	if target == "" {
		done = s.progress.done(msg.UUID)
	}
	var errs []error
	var succeeded []*entry
	for _, e := range matches {
		if _, ok := done[e]; ok {
			continue
		}
		if err := s.run(e, msg, ev, len(matches) == 1); err != nil {
			errs = append(errs, fmt.Errorf("handler %q: %w", e.name, err))
			continue
		}
		succeeded = append(succeeded, e)
	}
	if len(errs) == 0 {
		if done != nil {
			s.progress.forget(msg.UUID)
		}
		s.r.handled.Add(1)
		return nil
	}
	if target == "" {
		s.progress.add(msg.UUID, succeeded)
	}
	s.r.failed.Add(1)
	return errors.Join(errs...)
}

// malformedMessage handles a message that holds no Arc event.
func (s *source) malformedMessage(msg *message.Message, err error) error {
	s.r.malformed.Add(1)
	err = fmt.Errorf("wildcard: message %q on %q: %w", msg.UUID, s.key.topic, err)
	if s.r.cfg.OnMalformed != nil {
		return s.r.cfg.OnMalformed(msg, err)
	}
	// No dead-letter publisher to keep it: drop it loudly. A nack would
	// bring it back at once, for ever, and hold its lane meanwhile.
	s.r.dropped.Add(1)
	s.logger.Error("Malformed message dropped (acknowledged); set Config.OnMalformed to dead-letter such messages", err,
		watermill.LogFields{"message_uuid": msg.UUID, "topic": s.key.topic, "payload_bytes": len(msg.Payload)})
	return nil
}

// noMatch handles an event no handler matched. When the source has
// handlers it is counted and given to Config.OnUnrouted (done, with its
// error: nil acknowledges). When it has none it is held until one
// subscribes (not done: match again) or the subscription ends (done,
// ErrNoHandlers), never acking what nobody processed.
func (s *source) noMatch(msg *message.Message, ev *arc.Event) (done bool, err error) {
	empty, wake, subDone := s.empty()
	if !empty {
		s.r.unmatched.Add(1)
		if s.r.cfg.OnUnrouted == nil {
			return true, nil
		}
		return true, s.unrouted(msg, ev)
	}
	select {
	case <-wake:
		return false, nil
	case <-subDone:
	case <-msg.Context().Done():
	}
	return true, ErrNoHandlers
}

// unrouted runs Config.OnUnrouted, turning a panic into an error as run
// does for handlers: the hook is user code on the router's goroutine.
func (s *source) unrouted(msg *message.Message, ev *arc.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: string(debug.Stack()), withStack: s.r.cfg.PanicStackInError}
		}
		if err != nil {
			s.r.unroutedFailed.Add(1)
			err = fmt.Errorf("wildcard: OnUnrouted for %q (id %s): %w", ev.Type, ev.Meta.ID, err)
		}
	}()
	return s.r.cfg.OnUnrouted(msg.Context(), msg, *ev)
}

// run gives one handler its own copy of the message (the message itself
// when it is the only handler: no sibling can see what its middleware
// changes) and turns a panic into an error, so one handler cannot take its
// siblings down.
func (s *source) run(e *entry, msg *message.Message, ev *arc.Event, only bool) (err error) {
	ic := &infoContext{Context: msg.Context(),
		info: Info{Handler: e.name, Pattern: firstMatch(e.patterns, ev.Type), Topic: s.key.topic, Event: *ev}}
	hm := msg
	if !only {
		hm = msg.Copy()
	}
	hm.Metadata[MetadataHandler] = ic.info.Handler
	hm.Metadata[MetadataPattern] = ic.info.Pattern
	hm.Metadata[MetadataTopic] = ic.info.Topic
	hm.SetContext(ic)
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: string(debug.Stack()), withStack: s.r.cfg.PanicStackInError}
		}
	}()
	out, err := e.fn(hm)
	if err != nil || len(out) == 0 {
		return err
	}
	if e.publisher == nil {
		return ErrOutputWithoutPublisher
	}
	return e.publisher.Publish(e.publishTopic, out...)
}

// onlyHandler keeps the entry named target. If none of that name matched
// (another instance named its handlers otherwise), every match runs: a
// duplicate for some, rather than a loss for the one that failed.
func (s *source) onlyHandler(msg *message.Message, matches []*entry, target string) []*entry {
	for _, e := range matches {
		if e.name == target {
			matches[0] = e
			return matches[:1]
		}
	}
	s.logger.Debug("Target handler of a delayed retry not found; running every match",
		watermill.LogFields{"message_uuid": msg.UUID, "topic": s.key.topic, "handler_name": target})
	return matches
}

func firstMatch(patterns []Pattern, eventType string) string {
	for _, p := range patterns {
		if p.Match(eventType) {
			return p.String()
		}
	}
	return ""
}
