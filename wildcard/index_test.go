package wildcard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexDeduplicatesAValueUnderTwoPatterns(t *testing.T) {
	t.Parallel()
	idx := NewIndex[string]()
	idx.Add(MustParse("order.created"), "h1")
	idx.Add(MustParse("order.*"), "h1")
	idx.Add(MustParse("*"), "h1")
	idx.Add(MustParse("*"), "h2")
	idx.Add(MustParse("order.*"), "h3")
	assert.Equal(t, []string{"h1", "h2", "h3"}, idx.AppendMatches(nil, "order.created"))
	assert.Equal(t, []string{"h1", "h2"}, idx.AppendMatches(nil, "payment.created"))
	assert.Equal(t, 5, idx.Len())

	assert.True(t, idx.Remove(MustParse("*"), "h1"))
	assert.False(t, idx.Remove(MustParse("*"), "h1"), "only once")
	assert.False(t, idx.Remove(MustParse("nope"), "h1"))
	assert.Equal(t, []string{"h2"}, idx.AppendMatches(nil, "payment.created"))
	assert.Equal(t, []string{"h1", "h2", "h3"}, idx.AppendMatches(nil, "order.created"))
	assert.Equal(t, 4, idx.Len())
}

func TestIndexAppendsToTheBuffer(t *testing.T) {
	t.Parallel()
	idx := NewIndex[int]()
	idx.Add(MustParse("*"), 2)
	buf := []int{1}
	assert.Equal(t, []int{1, 2}, idx.AppendMatches(buf, "x"))
	// A value already in the caller's prefix is not taken for a duplicate.
	idx.Add(MustParse("x"), 1)
	assert.Equal(t, []int{1, 1, 2}, idx.AppendMatches([]int{1}, "x"))
}

func TestIndexRemovePrunesSegments(t *testing.T) {
	t.Parallel()
	idx := NewIndex[int]()
	p, err := ParseMode("a.*.c", SegmentMode)
	require.NoError(t, err)
	q, err := ParseMode("a.>", SegmentMode)
	require.NoError(t, err)
	idx.Add(p, 1)
	idx.Add(q, 2)
	assert.Equal(t, []int{2, 1}, idx.AppendMatches(nil, "a.b.c"))
	assert.True(t, idx.Remove(p, 1))
	assert.True(t, idx.Remove(q, 2))
	assert.True(t, idx.segments.empty())
	assert.Empty(t, idx.AppendMatches(nil, "a.b.c"))
}

var alphabet = []string{"order", "item", "created", "a", "", "$deadLetter", "x:y", "order:placed"}

func randomType(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = alphabet[r.IntN(len(alphabet))]
	}
	sep := "."
	if r.IntN(5) == 0 {
		sep = ":"
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s += sep + p
	}
	return s
}

func randomPattern(r *rand.Rand) (Pattern, bool) {
	s := randomType(r)
	mode := ArcMode
	switch r.IntN(6) {
	case 0:
		s = "*"
	case 1:
		s += ".*"
	case 2:
		s += ":*"
	case 3:
		mode = SegmentMode
		s = map[int]string{0: "*." + s, 1: s + ".>", 2: s + ".*.x", 3: "*", 4: ">"}[r.IntN(5)]
	}
	p, err := ParseMode(s, mode)
	return p, err == nil
}

// Property: the index returns exactly the values whose pattern matches, and
// for ArcMode, Pattern.Match agrees with Match.
func TestIndexAgreesWithMatch(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		idx := NewIndex[int]()
		var patterns []Pattern
		for v := 0; v < 60; v++ {
			p, ok := randomPattern(r)
			if !ok {
				continue
			}
			patterns = append(patterns, p)
			idx.Add(p, len(patterns)-1)
		}
		for range 200 {
			typ := randomType(r)
			var want []int
			for v, p := range patterns {
				if p.Match(typ) {
					want = append(want, v)
				}
				if p.Mode() == ArcMode {
					require.Equal(t, Match(p.String(), typ), p.Match(typ), "%q ~ %q", p, typ)
				}
			}
			got := idx.AppendMatches(nil, typ)
			slices.Sort(got)
			require.Equal(t, want, got, "type %q", typ)
		}
	}
}

// Add and Remove while lookups run: the race detector checks the locking,
// and every lookup sees a value that is registered throughout.
func TestIndexConcurrentUse(t *testing.T) {
	t.Parallel()
	idx := NewIndex[int]()
	idx.Add(MustParse("order.*"), -1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]int, 0, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				buf = idx.AppendMatches(buf[:0], "order.created")
				if !slices.Contains(buf, -1) {
					t.Error("a permanent registration went missing")
					return
				}
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		p := MustParse(fmt.Sprintf("order.%d.*", i%50))
		idx.Add(p, i)
		idx.Add(MustParse("*"), i)
		idx.Remove(p, i)
		idx.Remove(MustParse("*"), i)
	}
	close(stop)
	wg.Wait()
	assert.Equal(t, 1, idx.Len())
}

// hostileType is a type of n bytes with a '.' every other byte: the worst
// case for prefix probing, one probe per separator.
func hostileType(n int) string { return strings.Repeat("a.", n/2) }

// A lookup costs time linear in the type's length: a 10 MB type of dots,
// which took more than 90 s when every cut of it was hashed, is looked up
// well inside a second, and prefixes still match at every length
// registered, including after the longest is removed.
func TestIndexLookupLinearInTypeLength(t *testing.T) {
	t.Parallel()
	idx := NewIndex[string]()
	idx.Add(MustParse("a.*"), "short")
	idx.Add(MustParse("a.a.a.*"), "long")
	idx.Add(MustParse("a.a.a.a.a.a.a.a.*"), "longest")
	idx.Add(MustParse("b.*"), "other")
	typ := hostileType(10 << 20)
	start := time.Now()
	got := idx.AppendMatches(nil, typ)
	elapsed := time.Since(start)
	assert.Equal(t, []string{"short", "long", "longest"}, got)
	assert.Less(t, elapsed, 2*time.Second, "a 10 MB type took %v", elapsed)

	require.True(t, idx.Remove(MustParse("a.a.a.a.a.a.a.a.*"), "longest"))
	assert.Equal(t, []string{"short", "long"}, idx.AppendMatches(nil, typ))
	assert.Equal(t, []string{"short", "long"}, idx.AppendMatches(nil, "a.a.a.x"))
	assert.Equal(t, []string{"short"}, idx.AppendMatches(nil, "a.a"))
}
