package wildcard

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

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

// source is the one Watermill handler of a (subscriber, topic).
type source struct {
	r        *Router
	key      sourceKey
	name     string
	wm       *message.Handler
	index    *Index[*entry]
	handlers map[string]*entry // guarded by r.mu
	count    atomic.Int32      // len(handlers), for dispatch
	progress *progress
	buffers  sync.Pool
	stopOnce sync.Once
}

func (s *source) stop() { s.stopOnce.Do(func() { go s.wm.Stop() }) }

// dispatch is the source's Watermill handler: decode once, run every
// matching handler that has not yet succeeded for this event.
func (s *source) dispatch(msg *message.Message) error {
	ev, err := arc.FromMessage(msg)
	if err != nil {
		s.r.malformed.Add(1)
		err = fmt.Errorf("wildcard: message %q on %q: %w", msg.UUID, s.key.topic, err)
		if s.r.cfg.OnMalformed != nil {
			return s.r.cfg.OnMalformed(msg, err)
		}
		return err
	}
	bufp := s.buffers.Get().(*[]*entry)
	matches := s.index.AppendMatches((*bufp)[:0], ev.Type)
	if target := msg.Metadata.Get(MetadataTargetHandler); target != "" {
		matches = onlyHandler(matches, target)
	}
	defer func() {
		clear(matches)
		*bufp = matches[:0]
		s.buffers.Put(bufp)
	}()

	if len(matches) == 0 {
		if s.count.Load() == 0 {
			s.stop()
			return ErrNoHandlers
		}
		s.r.unmatched.Add(1)
		return nil
	}

	done := s.progress.done(msg.UUID)
	var errs []error
	var succeeded []string
	for _, e := range matches {
		if _, ok := done[e.name]; ok {
			continue
		}
		if err := s.run(e, msg, ev, len(matches) == 1); err != nil {
			errs = append(errs, fmt.Errorf("handler %q: %w", e.name, err))
			continue
		}
		succeeded = append(succeeded, e.name)
	}
	if len(errs) == 0 {
		if done != nil {
			s.progress.forget(msg.UUID)
		}
		s.r.handled.Add(1)
		return nil
	}
	s.progress.add(msg.UUID, succeeded)
	s.r.failed.Add(1)
	return errors.Join(errs...)
}

// run gives one handler its own copy of the message (the message itself
// when it is the only handler: no sibling can see what its middleware
// changes) and turns a panic into an error, so one handler cannot take its
// siblings down.
func (s *source) run(e *entry, msg *message.Message, ev arc.Event, only bool) (err error) {
	info := &Info{Handler: e.name, Pattern: firstMatch(e.patterns, ev.Type), Topic: s.key.topic, Event: ev}
	hm := msg
	if !only {
		hm = msg.Copy()
	}
	hm.Metadata[MetadataHandler] = info.Handler
	hm.Metadata[MetadataPattern] = info.Pattern
	hm.Metadata[MetadataTopic] = info.Topic
	hm.SetContext(context.WithValue(msg.Context(), infoKey{}, info))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
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

// onlyHandler keeps the entry named target, if it matched.
func onlyHandler(matches []*entry, target string) []*entry {
	for _, e := range matches {
		if e.name == target {
			matches[0] = e
			return matches[:1]
		}
	}
	return matches[:0]
}

func firstMatch(patterns []Pattern, eventType string) string {
	for _, p := range patterns {
		if p.Match(eventType) {
			return p.String()
		}
	}
	return ""
}
