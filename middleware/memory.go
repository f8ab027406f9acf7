package middleware

import (
	"container/list"
	"sync"
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
type attemptMemory struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[string]*list.Element
}

type memoryItem struct {
	key string
	val attempts
}

func newAttemptMemory(max int) *attemptMemory {
	return &attemptMemory{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (m *attemptMemory) get(key string) (attempts, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		return el.Value.(*memoryItem).val, true
	}
	return attempts{}, false
}

func (m *attemptMemory) put(key string, a attempts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		el.Value.(*memoryItem).val = a
		m.ll.MoveToFront(el)
		return
	}
	m.m[key] = m.ll.PushFront(&memoryItem{key, a})
	for m.ll.Len() > m.max {
		old := m.ll.Back()
		m.ll.Remove(old)
		delete(m.m, old.Value.(*memoryItem).key)
	}
}

func (m *attemptMemory) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.m[key]; ok {
		m.ll.Remove(el)
		delete(m.m, key)
	}
}
