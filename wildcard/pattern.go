package wildcard

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPattern is wrapped by every error that refuses a pattern.
var ErrInvalidPattern = errors.New("wildcard: invalid pattern")

// Mode selects what a pattern means.
type Mode int

const (
	// ArcMode is the default, the rule every Arc matcher agrees on plus the
	// colon prefix: "*" matches every type ($-prefixed ones included); a
	// pattern ending in ".*" matches every type that starts with the text
	// before the '*' (so "order.*" matches "order.created" and
	// "order.item.added", not "order"); a pattern ending in ":*" likewise
	// matches every type starting with the text before the '*', as Arc's
	// Pub/Sub (a Redis glob) and Arc ≥ 2.12's shared matcher read it;
	// anything else matches one type exactly, case-sensitively. Arc
	// 2.11–2.14's Redis Streams transport reads "order:*" as a literal type
	// instead: see ArcStreamsMode.
	ArcMode Mode = iota
	// SegmentMode is NATS-style, for users who want more: the pattern and the
	// type are split on '.'; "*" stands for exactly one token anywhere
	// ("*.created", "order.*.shipped") and ">" for one or more trailing
	// tokens ("order.>"). A token holding '*' or '>' beside other characters
	// is invalid, as is an empty token.
	SegmentMode
	// ArcStreamsMode is Arc 2.11–2.14's RedisStreamTransport matcher: as
	// ArcMode, except that a pattern ending in ":*" is a literal type, so
	// "order:*" matches only the type "order:*". Use it (or
	// Config.ColonStarLiteral) where Arc Streams consumers of those versions
	// share a consumer group with this router, so that an event lands on the
	// same handlers whichever member of the group reads it.
	ArcStreamsMode
)

func (m Mode) String() string {
	switch m {
	case ArcMode:
		return "arc"
	case SegmentMode:
		return "segment"
	case ArcStreamsMode:
		return "arc-streams"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

type kind uint8

const (
	kindExact  kind = iota // matches one type
	kindAll                // "*" in ArcMode
	kindPrefix             // "x.*" (or "x:*" in ArcMode): prefix holds "x." or "x:"
	kindTokens             // SegmentMode with a wildcard token
)

// Pattern is a parsed, valid subscription pattern.
type Pattern struct {
	raw    string
	mode   Mode
	kind   kind
	prefix string   // kindPrefix
	tokens []string // kindTokens
}

// Parse parses an ArcMode pattern. Only the empty pattern is invalid: in
// Arc every other string means something, if only itself.
func Parse(pattern string) (Pattern, error) { return ParseMode(pattern, ArcMode) }

// ParseMode parses a pattern in the given mode.
func ParseMode(pattern string, mode Mode) (Pattern, error) {
	if pattern == "" {
		return Pattern{}, fmt.Errorf("%w: empty", ErrInvalidPattern)
	}
	switch mode {
	case ArcMode, ArcStreamsMode:
		p := Pattern{raw: pattern, mode: mode}
		switch {
		case pattern == "*":
			p.kind = kindAll
		case strings.HasSuffix(pattern, ".*") || mode == ArcMode && strings.HasSuffix(pattern, ":*"):
			p.kind, p.prefix = kindPrefix, pattern[:len(pattern)-1]
		}
		return p, nil
	case SegmentMode:
		return parseSegment(pattern)
	}
	return Pattern{}, fmt.Errorf("%w: unknown mode %v", ErrInvalidPattern, mode)
}

func parseSegment(pattern string) (Pattern, error) {
	tokens := strings.Split(pattern, ".")
	wild := false
	for i, t := range tokens {
		switch {
		case t == "":
			return Pattern{}, fmt.Errorf("%w: %q has an empty token at position %d", ErrInvalidPattern, pattern, i+1)
		case t == ">":
			if i != len(tokens)-1 {
				return Pattern{}, fmt.Errorf("%w: %q: '>' must be the last token", ErrInvalidPattern, pattern)
			}
			wild = true
		case t == "*":
			wild = true
		case strings.ContainsAny(t, "*>"):
			return Pattern{}, fmt.Errorf("%w: %q: '*' and '>' must stand alone as a token, not in %q",
				ErrInvalidPattern, pattern, t)
		}
	}
	p := Pattern{raw: pattern, mode: SegmentMode}
	if wild {
		p.kind, p.tokens = kindTokens, tokens
	}
	return p, nil
}

// MustParse is Parse for patterns known to be valid; it panics otherwise.
func MustParse(pattern string) Pattern {
	p, err := Parse(pattern)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// Mode returns the pattern's mode.
func (p Pattern) Mode() Mode { return p.mode }

// Match reports whether the pattern matches eventType.
func (p Pattern) Match(eventType string) bool {
	switch p.kind {
	case kindAll:
		return true
	case kindPrefix:
		return strings.HasPrefix(eventType, p.prefix)
	case kindTokens:
		return matchTokens(p.tokens, eventType)
	}
	return eventType == p.raw
}

func matchTokens(tokens []string, eventType string) bool {
	rest := eventType
	for i, t := range tokens {
		if t == ">" {
			return true // at least one token remains: checked below
		}
		tok, after, more := strings.Cut(rest, ".")
		if t != "*" && t != tok {
			return false
		}
		if i == len(tokens)-1 {
			return !more
		}
		if !more {
			return false
		}
		rest = after
		if tokens[i+1] == ">" {
			return true // ">" needs one or more tokens, and rest holds at least one (possibly empty)
		}
	}
	return false
}

// Match reports whether pattern, read in ArcMode, matches eventType. It is
// the reference the Index and the Router agree with.
func Match(pattern, eventType string) bool {
	switch {
	case pattern == "*":
		return true
	case pattern == eventType:
		return true
	case strings.HasSuffix(pattern, ".*") || strings.HasSuffix(pattern, ":*"):
		return strings.HasPrefix(eventType, pattern[:len(pattern)-1])
	}
	return false
}
