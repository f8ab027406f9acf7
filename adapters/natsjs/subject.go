package natsjs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/arcmill/arcmill/wildcard"
)

// Limits on a subject, checked before anything reaches the server: one
// oversized SUB closes the connection, and with it every subscription on
// it (a 10,000-token pattern did so).
const (
	// MaxSubjectLength bounds a subject in bytes, well inside the server's
	// 4 KiB control line (which also carries the queue group and the sid).
	MaxSubjectLength = 1024
	// MaxSubjectTokens bounds the tokens of a subject.
	MaxSubjectTokens = 64
)

// ErrInvalidSubject is wrapped by every error that refuses a subject or an
// event type before it reaches the server.
var ErrInvalidSubject = errors.New("natsjs: invalid subject")

// ValidateSubject checks subject as NATS reads it: non-empty tokens
// separated by '.', none holding whitespace; with wildcards, a token may be
// "*" alone, or ">" alone as the last token; without, neither may appear.
// It also bounds the subject by MaxSubjectLength and MaxSubjectTokens.
func ValidateSubject(subject string, wildcards bool) error {
	if len(subject) > MaxSubjectLength {
		return fmt.Errorf("%w: %d bytes, more than MaxSubjectLength (%d)", ErrInvalidSubject, len(subject), MaxSubjectLength)
	}
	if n := strings.Count(subject, ".") + 1; n > MaxSubjectTokens {
		return fmt.Errorf("%w: %d tokens, more than MaxSubjectTokens (%d)", ErrInvalidSubject, n, MaxSubjectTokens)
	}
	tokens := strings.Split(subject, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return fmt.Errorf("%w: %q has an empty token at position %d", ErrInvalidSubject, subject, i+1)
		case wildcards && t == "*":
		case wildcards && t == ">":
			if i != len(tokens)-1 {
				return fmt.Errorf("%w: %q: '>' must be the last token", ErrInvalidSubject, subject)
			}
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("%w: %q: token %q holds a wildcard", ErrInvalidSubject, subject, t)
		case strings.ContainsAny(t, " \t\r\n\f\v\x00"):
			return fmt.Errorf("%w: %q: token %q holds whitespace", ErrInvalidSubject, subject, t)
		}
	}
	return nil
}

// validTokens reports whether s is a subject without wildcards.
func validTokens(s string) bool { return ValidateSubject(s, false) == nil }

// Subject maps an ArcMode pattern (the wildcard router's default) onto the
// NATS subject a subscription should use under prefix. It is
// SubjectMode(prefix, pattern, wildcard.ArcMode).
func Subject(prefix, pattern string) (subject string, exact bool) {
	return SubjectMode(prefix, pattern, wildcard.ArcMode)
}

// SubjectMode maps a pattern, read in mode as the wildcard router reads
// it, onto the NATS subject a subscription should use under prefix, and
// reports whether the server's matching is exact for it: the subject then
// carries exactly the types the pattern matches. When it is not (exact
// false), the subject is <prefix>.> and the wildcard router filters.
//
//	mode              pattern        subject            exact
//	ArcMode           order.*        <prefix>.order.>   true (Arc's ".*" takes any depth)
//	SegmentMode       order.*        <prefix>.order.*   true (one token)
//	SegmentMode       *.created      <prefix>.*.created true
//	SegmentMode       order.>        <prefix>.order.>   true
//	any               *              <prefix>.>         true in ArcMode
//	ArcMode           order:*        <prefix>.>         false
//
// A pattern whose subject would fail ValidateSubject (too long, a token
// with whitespace) is not exact either.
func SubjectMode(prefix, pattern string, mode wildcard.Mode) (subject string, exact bool) {
	all := prefix + ".>"
	switch mode {
	case wildcard.SegmentMode:
		if _, err := wildcard.ParseMode(pattern, mode); err != nil {
			return all, false
		}
		subject = prefix + "." + pattern
		if ValidateSubject(subject, true) != nil {
			return all, false
		}
		return subject, true
	case wildcard.ArcMode, wildcard.ArcStreamsMode:
		switch {
		case pattern == "*":
			return all, true
		case strings.HasSuffix(pattern, ".*"):
			subject = prefix + "." + strings.TrimSuffix(pattern, ".*")
			if !validTokens(subject) || ValidateSubject(subject+".>", true) != nil {
				return all, false
			}
			return subject + ".>", true
		case validTokens(prefix + "." + pattern):
			return prefix + "." + pattern, true
		}
	}
	return all, false
}
