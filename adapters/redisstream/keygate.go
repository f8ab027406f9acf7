package redisstream

import (
	"context"
	"sync"
)

// keyGate holds back a message while an earlier one with the same
// partition key is unsettled, so that a consumer pipelining MaxInFlight
// messages still delivers each key's messages one at a time, in stream
// order (Arc's processingConcurrency: concurrent across keys, in order
// within one). The read loop acquires; settling goroutines release.
type keyGate struct {
	mu sync.Mutex
	// busy maps a key with a message in flight to a channel closed when
	// it is released: nil until the read loop waits for that key, so a key
	// nobody waits on costs no channel.
	busy map[string]chan struct{}
}

func newKeyGate() *keyGate { return &keyGate{busy: map[string]chan struct{}{}} }

// acquire waits until no message of key is in flight and marks one; false
// when ctx ended first.
func (g *keyGate) acquire(ctx context.Context, key string) bool {
	for {
		g.mu.Lock()
		ch, held := g.busy[key]
		if !held {
			g.busy[key] = nil
			g.mu.Unlock()
			return true
		}
		if ch == nil {
			ch = make(chan struct{})
			g.busy[key] = ch
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// release ends key's message in flight, waking the read loop if it waits.
func (g *keyGate) release(key string) {
	g.mu.Lock()
	ch := g.busy[key]
	delete(g.busy, key)
	g.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}
