package middleware

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// attempts is a failure history: the attempts so far, when the first
// failed, and how many tries of the current retry budget are spent.
type attempts struct {
	attempts int
	first    time.Time
	tries    int
}

// attemptMemory is a bounded LRU of failure histories by key.
type attemptMemory = memory[attempts]

func newAttemptMemory(max int) *attemptMemory { return newMemory[attempts](max) }

// memory is a bounded LRU of values by key: what a middleware remembers of
// a message between its deliveries, bounded so that a flood of distinct
// failing messages cannot grow it without end.
type memory[V any] struct {
	mu   sync.Mutex
	max  int
	ll   *list.List
	m    map[string]*list.Element
	size atomic.Int64 // len(m), read without the lock on the hot path
}

type memoryItem[V any] struct {
	key string
	val V
}

func newMemory[V any](max int) *memory[V] {
	return &memory[V]{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (m *memory[V]) get(key string) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		return el.Value.(*memoryItem[V]).val, true
	}
	var zero V
	return zero, false
}

func (m *memory[V]) put(key string, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		el.Value.(*memoryItem[V]).val = v
		m.ll.MoveToFront(el)
		return
	}
	m.m[key] = m.ll.PushFront(&memoryItem[V]{key, v})
	for m.ll.Len() > m.max {
		old := m.ll.Back()
		m.ll.Remove(old)
		delete(m.m, old.Value.(*memoryItem[V]).key)
	}
	m.size.Store(int64(len(m.m)))
}

func (m *memory[V]) forget(key string) {
	if m.size.Load() == 0 {
		return // the common case, a message that never failed: no lock
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		m.ll.Remove(el)
		delete(m.m, key)
		m.size.Store(int64(len(m.m)))
	}
}
