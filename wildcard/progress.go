package wildcard

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// progress remembers, for events some of whose handlers failed, which
// handlers (by identity, not name: a new handler of an old name is new)
// succeeded, so that a redelivery runs only the others. It holds
// at most max events, forgetting the least recently failed first.
type progress struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *progressItem, most recent first
	m   map[string]*list.Element
	n   atomic.Int32 // len(m), so the common case (nothing failed) takes no lock
}

type progressItem struct {
	id   string
	done map[*entry]struct{}
}

func newProgress(max int) *progress {
	return &progress{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

// done returns a copy of the handlers that already succeeded for id, or nil.
func (p *progress) done(id string) map[*entry]struct{} {
	if p.n.Load() == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	el, ok := p.m[id]
	if !ok {
		return nil
	}
	src := el.Value.(*progressItem).done
	out := make(map[*entry]struct{}, len(src))
	for k := range src {
		out[k] = struct{}{}
	}
	return out
}

// add records handlers that succeeded for id; nothing when none did.
func (p *progress) add(id string, handlers []*entry) {
	if len(handlers) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	el, ok := p.m[id]
	if !ok {
		el = p.ll.PushFront(&progressItem{id: id, done: map[*entry]struct{}{}})
		p.m[id] = el
		for p.ll.Len() > p.max {
			oldest := p.ll.Back()
			p.ll.Remove(oldest)
			delete(p.m, oldest.Value.(*progressItem).id)
		}
		p.n.Store(int32(len(p.m)))
	} else {
		p.ll.MoveToFront(el)
	}
	for _, h := range handlers {
		el.Value.(*progressItem).done[h] = struct{}{}
	}
}

// forget drops id once every handler has succeeded.
func (p *progress) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.m[id]; ok {
		p.ll.Remove(el)
		delete(p.m, id)
		p.n.Store(int32(len(p.m)))
	}
}

func (p *progress) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ll.Len()
}
