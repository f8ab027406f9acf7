package wildcard

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every edge case of Arc's matchesPattern (see Match; and :* from primitives 0.14).
func TestArcSemantics(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, typ string
		want         bool
	}{
		{"*", "order.created", true},
		{"*", "$deadLetter", true},
		{"*", "arc.ready", true},
		{"*", "arc.resource.registered", true},
		{"*", "", true},
		{"order.created", "order.created", true},
		{"order.created", "order.updated", false},
		{"order.created", "Order.created", false}, // case-sensitive
		{"order.*", "order.created", true},
		{"order.*", "order.item.created", true}, // any depth
		{"order.*", "order", false},
		{"order.*", "order.", true}, // empty remainder: "order." starts with "order."
		{"order.*", "orders.created", false},
		{"order.*", "order:created", false},
		{"order.*", "product.created", false},
		{"order.*", "ORDER.created", false},
		{"order:*", "order:placed", true},
		{"order:*", "order:item:added", true},
		{"order:*", "order.placed", false},
		{"order:*", "order", false},
		{"*.created", "order.created", false}, // literal: never matches a real type
		{"*.created", "*.created", true},
		{"order.*.shipped", "order.x.shipped", false},
		{"order.*.shipped", "order.*.shipped", true}, // ends in "shipped", not ".*": exact
		{"**", "order.created", false},
		{"**", "**", true},
		{"order.?", "order.a", false},
		{"order.[ab]", "order.a", false},
		{"order*", "order.created", false},
		{"order*", "order*", true},
		{"*.*", "order.created", false}, // prefix "*."
		{"*.*", "*.x", true},
		{".*", ".hidden", true},
		{".*", "x.y", false},
		{"a.b.*", "a.b.c.d", true},
		{"a.b.*", "a.bc", false},
		{"$deadLetter", "$deadLetter", true},
		{"arc.*", "arc.ready", true},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Match(c.pattern, c.typ), "Match(%q, %q)", c.pattern, c.typ)
		p, err := Parse(c.pattern)
		require.NoError(t, err)
		assert.Equal(t, c.want, p.Match(c.typ), "Parse(%q).Match(%q)", c.pattern, c.typ)
		idx := NewIndex[int]()
		idx.Add(p, 1)
		assert.Equal(t, c.want, len(idx.AppendMatches(nil, c.typ)) == 1, "index: %q ~ %q", c.pattern, c.typ)
	}
}

// ArcStreamsMode is Arc 2.11–2.14's Streams matcher: ArcMode with ":*"
// read literally.
func TestArcStreamsModeReadsColonStarLiterally(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, typ string
		want         bool
	}{
		{"order:*", "order:placed", false},
		{"order:*", "order:item:added", false},
		{"order:*", "order:*", true},
		{"order.*", "order.created", true},
		{"order.*", "order.item.created", true},
		{"order.*", "order", false},
		{"*", "order:placed", true},
		{"*", "$deadLetter", true},
		{"order:placed", "order:placed", true},
		{"a:b.*", "a:b.c", true}, // ends in ".*": a prefix in every mode
	}
	for _, c := range cases {
		p, err := ParseMode(c.pattern, ArcStreamsMode)
		require.NoError(t, err, c.pattern)
		assert.Equal(t, ArcStreamsMode, p.Mode())
		assert.Equal(t, c.want, p.Match(c.typ), "%q ~ %q", c.pattern, c.typ)
		idx := NewIndex[int]()
		idx.Add(p, 1)
		assert.Equal(t, c.want, len(idx.AppendMatches(nil, c.typ)) == 1, "index: %q ~ %q", c.pattern, c.typ)
	}
	assert.Equal(t, "arc-streams", ArcStreamsMode.String())
	_, err := ParseMode("", ArcStreamsMode)
	assert.ErrorIs(t, err, ErrInvalidPattern)
}

func TestSegmentSemantics(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, typ string
		want         bool
	}{
		{"*.created", "order.created", true},
		{"*.created", "order.item.created", false},
		{"*.created", "created", false},
		{"order.*.shipped", "order.eu.shipped", true},
		{"order.*.shipped", "order.shipped", false},
		{"order.*.shipped", "order.eu.west.shipped", false},
		{"order.*", "order.created", true},
		{"order.*", "order.item.created", false}, // one token, unlike ArcMode
		{"order.*", "order", false},
		{"order.>", "order.created", true},
		{"order.>", "order.item.created", true},
		{"order.>", "order", false},
		{">", "order", true},
		{">", "a.b.c", true},
		{"*", "order", true},
		{"*", "order.created", false},
		{"*.*", "a.b", true},
		{"*.*", "a", false},
		{"*.>", "a.b.c", true},
		{"*.>", "a", false},
		{"order.created", "order.created", true}, // no wildcard: exact
		{"order:placed", "order:placed", true},   // ":" is no separator here
	}
	for _, c := range cases {
		p, err := ParseMode(c.pattern, SegmentMode)
		require.NoError(t, err, c.pattern)
		assert.Equal(t, c.want, p.Match(c.typ), "%q ~ %q", c.pattern, c.typ)
		idx := NewIndex[int]()
		idx.Add(p, 1)
		assert.Equal(t, c.want, len(idx.AppendMatches(nil, c.typ)) == 1, "index: %q ~ %q", c.pattern, c.typ)
	}
}

func TestInvalidPatterns(t *testing.T) {
	t.Parallel()
	_, err := Parse("")
	assert.ErrorIs(t, err, ErrInvalidPattern)
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.>.b", "a*", "a.b*", ">a", "a.*b", "*>", "a.>>", "order:*"} {
		_, err := ParseMode(bad, SegmentMode)
		assert.ErrorIs(t, err, ErrInvalidPattern, "%q", bad)
	}
	// The same strings are valid (literal) ArcMode patterns, except "".
	for _, ok := range []string{"a..b", "a*", ">a", "a.>"} {
		_, err := Parse(ok)
		assert.NoError(t, err, ok)
	}
	_, err = ParseMode("x", Mode(9))
	assert.ErrorIs(t, err, ErrInvalidPattern)
	assert.Panics(t, func() { MustParse("") })
}
