package wildcard

import (
	"slices"
	"strings"
	"sync"
)

// Index maps patterns to values and finds every value whose pattern matches
// an event type. The cost of a lookup is linear in the type's length (and
// in the values that match), never dependent on how many patterns do not:
// exact patterns are one map probe, Arc prefix patterns one probe per '.' or
// ':' within the longest registered prefix (a hostile type of any length
// costs no more than that), SegmentMode patterns a walk of a token trie. Lookups allocate nothing
// once the caller's buffer is large enough. Safe for concurrent use: Add and
// Remove may run while lookups do.
type Index[V comparable] struct {
	mu     sync.RWMutex
	exact  map[string][]V
	all    []V
	prefix map[string][]V
	// prefixLens counts the prefix patterns of each length; maxPrefix is
	// the longest, past which no prefix can match.
	prefixLens map[int]int
	maxPrefix  int
	segments   *segmentNode[V]
	// patterns counts each value's patterns: a value with one pattern cannot
	// be matched twice, so only values with more need deduplicating.
	patterns map[V]int
	size     int
}

type segmentNode[V comparable] struct {
	children map[string]*segmentNode[V]
	star     *segmentNode[V]
	values   []V // patterns ending here
	rest     []V // patterns ending in ">" here
}

func newSegmentNode[V comparable]() *segmentNode[V] {
	return &segmentNode[V]{children: map[string]*segmentNode[V]{}}
}

// NewIndex returns an empty index.
func NewIndex[V comparable]() *Index[V] {
	return &Index[V]{
		exact:      map[string][]V{},
		prefix:     map[string][]V{},
		prefixLens: map[int]int{},
		segments:   newSegmentNode[V](),
		patterns:   map[V]int{},
	}
}

// Add registers v under p. Adding the same (p, v) twice registers it twice;
// lookups still return v once.
func (x *Index[V]) Add(p Pattern, v V) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch p.kind {
	case kindAll:
		x.all = append(x.all, v)
	case kindPrefix:
		x.prefix[p.prefix] = append(x.prefix[p.prefix], v)
		x.prefixLens[len(p.prefix)]++
		x.maxPrefix = max(x.maxPrefix, len(p.prefix))
	case kindTokens:
		n := x.segments
		for _, t := range p.tokens {
			switch t {
			case ">":
				n.rest = append(n.rest, v)
				goto added
			case "*":
				if n.star == nil {
					n.star = newSegmentNode[V]()
				}
				n = n.star
			default:
				c := n.children[t]
				if c == nil {
					c = newSegmentNode[V]()
					n.children[t] = c
				}
				n = c
			}
		}
		n.values = append(n.values, v)
	default:
		x.exact[p.raw] = append(x.exact[p.raw], v)
	}
added:
	x.patterns[v]++
	x.size++
}

// Remove unregisters one registration of v under p and reports whether
// there was one.
func (x *Index[V]) Remove(p Pattern, v V) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	removed := false
	switch p.kind {
	case kindAll:
		x.all, removed = removeOne(x.all, v)
	case kindPrefix:
		if removed = removeFromMap(x.prefix, p.prefix, v); removed {
			x.forgetPrefixLen(len(p.prefix))
		}
	case kindTokens:
		removed = x.removeSegment(x.segments, p.tokens, v)
	default:
		removed = removeFromMap(x.exact, p.raw, v)
	}
	if removed {
		if x.patterns[v]--; x.patterns[v] == 0 {
			delete(x.patterns, v)
		}
		x.size--
	}
	return removed
}

// forgetPrefixLen uncounts a prefix of length n, finding the new longest
// when it was the last of the longest.
func (x *Index[V]) forgetPrefixLen(n int) {
	if x.prefixLens[n]--; x.prefixLens[n] > 0 {
		return
	}
	delete(x.prefixLens, n)
	if n == x.maxPrefix {
		x.maxPrefix = 0
		for l := range x.prefixLens {
			x.maxPrefix = max(x.maxPrefix, l)
		}
	}
}

// removeSegment removes v below n and prunes nodes left empty.
func (x *Index[V]) removeSegment(n *segmentNode[V], tokens []string, v V) bool {
	if len(tokens) == 0 {
		var ok bool
		n.values, ok = removeOne(n.values, v)
		return ok
	}
	var ok bool
	switch t := tokens[0]; t {
	case ">":
		n.rest, ok = removeOne(n.rest, v)
	case "*":
		if n.star != nil {
			if ok = x.removeSegment(n.star, tokens[1:], v); ok && n.star.empty() {
				n.star = nil
			}
		}
	default:
		if c := n.children[t]; c != nil {
			if ok = x.removeSegment(c, tokens[1:], v); ok && c.empty() {
				delete(n.children, t)
			}
		}
	}
	return ok
}

func (n *segmentNode[V]) empty() bool {
	return len(n.children) == 0 && n.star == nil && len(n.values) == 0 && len(n.rest) == 0
}

func removeOne[V comparable](s []V, v V) ([]V, bool) {
	i := slices.Index(s, v)
	if i < 0 {
		return s, false
	}
	// Copy, never shift in place: a lookup may still hold the old slice.
	out := make([]V, 0, len(s)-1)
	out = append(out, s[:i]...)
	return append(out, s[i+1:]...), true
}

func removeFromMap[V comparable](m map[string][]V, key string, v V) bool {
	s, ok := removeOne(m[key], v)
	if !ok {
		return false
	}
	if len(s) == 0 {
		delete(m, key)
	} else {
		m[key] = s
	}
	return true
}

// Len returns the number of registrations.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.size
}

// AppendMatches appends to dst every value with a pattern that matches
// eventType, each value once, and returns the extended slice. The order is:
// exact matches, then "*", then prefixes from the shortest, then segment
// patterns (Arc Memory's order: exact, "*", then the ".*" patterns).
func (x *Index[V]) AppendMatches(dst []V, eventType string) []V {
	x.mu.RLock()
	defer x.mu.RUnlock()
	start := len(dst)
	dst = x.appendUnique(dst, start, x.exact[eventType])
	dst = x.appendUnique(dst, start, x.all)
	if len(x.prefix) > 0 {
		// A prefix pattern "p.*" matches when the type starts with "p.": look
		// the type up cut after each '.' and ':', up to the longest prefix
		// (each probe hashes its cut, so past that the cost would grow with
		// the square of the type's length).
		for i := 0; i < min(len(eventType), x.maxPrefix); i++ {
			if c := eventType[i]; c == '.' || c == ':' {
				dst = x.appendUnique(dst, start, x.prefix[eventType[:i+1]])
			}
		}
	}
	if !x.segments.empty() {
		dst = x.matchSegments(dst, start, x.segments, eventType, false)
	}
	return dst
}

// matchSegments walks the trie with the tokens of rest. consumed says
// whether at least one token has been matched on the way here.
func (x *Index[V]) matchSegments(dst []V, start int, n *segmentNode[V], rest string, done bool) []V {
	if done {
		return x.appendUnique(dst, start, n.values)
	}
	// ">" here matches the remaining tokens, of which there is at least one.
	dst = x.appendUnique(dst, start, n.rest)
	tok, after, more := strings.Cut(rest, ".")
	if c := n.children[tok]; c != nil {
		dst = x.matchSegments(dst, start, c, after, !more)
	}
	if n.star != nil {
		dst = x.matchSegments(dst, start, n.star, after, !more)
	}
	return dst
}

// appendUnique appends vs to dst, skipping values already in dst[start:]
// that can have been matched through another pattern.
func (x *Index[V]) appendUnique(dst []V, start int, vs []V) []V {
	for _, v := range vs {
		if x.patterns[v] > 1 && slices.Contains(dst[start:], v) {
			continue
		}
		dst = append(dst, v)
	}
	return dst
}
