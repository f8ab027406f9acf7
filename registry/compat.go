package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Compatibility is a schema evolution rule, with Confluent Schema
// Registry's names and meanings. A reader is a consumer decoding with a
// schema; a writer is a producer whose payloads are valid under one.
type Compatibility string

// The compatibility modes. The transitive forms check a new version
// against every earlier version of the event; the others against the
// latest earlier version only.
const (
	// CompatNone checks nothing (Arc's behaviour, and the default).
	CompatNone Compatibility = "NONE"
	// CompatBackward: consumers on the new schema read data written with
	// the previous one. Upgrade consumers first.
	CompatBackward Compatibility = "BACKWARD"
	// CompatBackwardTransitive is CompatBackward against every earlier version.
	CompatBackwardTransitive Compatibility = "BACKWARD_TRANSITIVE"
	// CompatForward: consumers on the previous schema read data written
	// with the new one. Upgrade producers first.
	CompatForward Compatibility = "FORWARD"
	// CompatForwardTransitive is CompatForward against every earlier version.
	CompatForwardTransitive Compatibility = "FORWARD_TRANSITIVE"
	// CompatFull is CompatBackward and CompatForward.
	CompatFull Compatibility = "FULL"
	// CompatFullTransitive is CompatFull against every earlier version.
	CompatFullTransitive Compatibility = "FULL_TRANSITIVE"
)

var compatModes = []Compatibility{CompatNone, CompatBackward, CompatBackwardTransitive, CompatForward,
	CompatForwardTransitive, CompatFull, CompatFullTransitive}

// ErrUnknownCompatibility is wrapped by ParseCompatibility's and
// Compatibility.Validate's errors.
var ErrUnknownCompatibility = errors.New("registry: unknown compatibility mode")

// ParseCompatibility reads a mode as Confluent writes it ("BACKWARD",
// "full_transitive"); case and dashes do not matter.
func ParseCompatibility(s string) (Compatibility, error) {
	c := Compatibility(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")))
	if err := c.Validate(); err != nil {
		return "", err
	}
	return c, nil
}

// Validate reports a mode that is not one of the constants (the empty
// mode is valid and means "not set").
func (c Compatibility) Validate() error {
	if c == "" || slices.Contains(compatModes, c) {
		return nil
	}
	return fmt.Errorf("%w %q: want one of %v", ErrUnknownCompatibility, string(c), compatModes)
}

func (c Compatibility) backward() bool {
	return c == CompatBackward || c == CompatBackwardTransitive || c == CompatFull || c == CompatFullTransitive
}

func (c Compatibility) forward() bool {
	return c == CompatForward || c == CompatForwardTransitive || c == CompatFull || c == CompatFullTransitive
}

func (c Compatibility) transitive() bool {
	return strings.HasSuffix(string(c), "_TRANSITIVE")
}

// Direction says which side of a compatibility check a change breaks.
type Direction string

// The directions.
const (
	// NewReadsOld: a consumer on the new schema cannot read some data
	// written with the earlier one (a BACKWARD failure).
	NewReadsOld Direction = "new schema reading old data"
	// OldReadsNew: a consumer on the earlier schema cannot read some data
	// written with the new one (a FORWARD failure).
	OldReadsNew Direction = "old schema reading new data"
)

// Change is one breaking change between two versions of an event's schema.
type Change struct {
	// Rule names the change as Confluent's JSON Schema checker does
	// (io.confluent.kafka.schemaregistry.json.diff.Difference.Type), from
	// the writer's schema to the reader's: "REQUIRED_ATTRIBUTE_ADDED",
	// "TYPE_NARROWED", "ENUM_ARRAY_NARROWED"… Rules arcmill adds where it
	// cannot decide are "UNCHECKED_KEYWORD_CHANGED" and, where it stopped
	// at its bound on work, "UNCHECKED_TOO_COMPLEX".
	Rule string
	// Pointer is the JSON Pointer (RFC 6901) of the keyword or subschema
	// that changed, in the reader's schema ("/properties/total/minimum").
	Pointer string
	// Detail says what changed, in words.
	Detail string
	// Direction says which reader breaks.
	Direction Direction
	// Against is the earlier version the new one was checked against.
	Against int
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s: %s (%s, against v%d)", c.Pointer, c.Rule, c.Detail, c.Direction, c.Against)
}

// ErrIncompatible is wrapped by the error of a registration (or Check)
// refused by the compatibility mode; errors.As gives the
// *IncompatibleError with the list of changes.
var ErrIncompatible = errors.New("registry: incompatible schema")

// IncompatibleError lists the breaking changes of a new version.
type IncompatibleError struct {
	// Event and Version name the version refused.
	Event   string
	Version int
	// Mode is the compatibility mode it was checked under.
	Mode Compatibility
	// Changes are the breaking changes, in schema order per earlier version.
	Changes []Change
}

func (e *IncompatibleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: event %q v%d breaks %s compatibility (%d change", ErrIncompatible, e.Event, e.Version, e.Mode, len(e.Changes))
	if len(e.Changes) != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, c := range e.Changes {
		b.WriteString("; ")
		b.WriteString(c.String())
	}
	return b.String()
}

// Unwrap returns ErrIncompatible.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }

// Check checks next against the earlier versions of its event under mode,
// as Register does: earlier are the definitions of the same event with
// lower versions (in any order; others are ignored). The non-transitive
// modes check against the highest of them only. The result is nil or an
// error wrapping ErrIncompatible (an *IncompatibleError), or
// ErrInvalidSchema for a schema that is not JSON, or
// ErrUnknownCompatibility.
func Check(mode Compatibility, next Definition, earlier []Definition) error {
	if err := mode.Validate(); err != nil {
		return err
	}
	next.setDefaults()
	if mode == "" || mode == CompatNone {
		return nil
	}
	var prev []Definition
	for _, d := range earlier {
		d.setDefaults()
		if d.Name == next.Name && d.Version < next.Version {
			prev = append(prev, d)
		}
	}
	slices.SortFunc(prev, func(a, b Definition) int { return b.Version - a.Version }) // latest first
	if len(prev) == 0 {
		return nil
	}
	if !mode.transitive() {
		prev = prev[:1]
	}
	newDoc, err := decodeSchema(next)
	if err != nil {
		return err
	}
	var changes []Change
	for _, p := range prev {
		oldDoc, err := decodeSchema(p)
		if err != nil {
			return err
		}
		if mode.backward() {
			changes = append(changes, compare(oldDoc, newDoc, NewReadsOld, p.Version)...)
		}
		if mode.forward() {
			changes = append(changes, compare(newDoc, oldDoc, OldReadsNew, p.Version)...)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return &IncompatibleError{Event: next.Name, Version: next.Version, Mode: mode, Changes: changes}
}

// decodeSchema decodes a definition's schema; no schema is the schema
// true, which every payload satisfies.
func decodeSchema(d Definition) (any, error) {
	if len(d.Schema) == 0 {
		return true, nil
	}
	var doc any
	if err := json.Unmarshal(d.Schema, &doc); err != nil {
		return nil, fmt.Errorf("%w: event %q v%d: not JSON: %v", ErrInvalidSchema, d.Name, d.Version, err)
	}
	return doc, nil
}

// sides names the writer ({w}) and the reader ({r}) of a detail.
var sides = map[Direction]*strings.Replacer{
	NewReadsOld: strings.NewReplacer("{w}", "old", "{r}", "new"),
	OldReadsNew: strings.NewReplacer("{w}", "new", "{r}", "old"),
}

// compare returns the changes that keep a reader on the reader schema
// from accepting some payload valid under the writer schema. Identical
// documents accept the same payloads, however deep or large.
func compare(writer, reader any, dir Direction, against int) []Change {
	if reflect.DeepEqual(writer, reader) {
		return nil
	}
	return compareRules(writer, reader, dir, against)
}

// compareRules is compare by the rules alone.
func compareRules(writer, reader any, dir Direction, against int) []Change {
	c := &comparer{wRoot: writer, rRoot: reader, seen: map[[2]string]bool{}}
	c.schema(writer, reader, "")
	if c.exhausted {
		c.out = append(c.out, Change{Rule: "UNCHECKED_TOO_COMPLEX", Pointer: c.stoppedAt,
			Detail: fmt.Sprintf("the comparison stopped after %d steps or %d changes (schemas too large, or too many paths through $refs or anyOf branches); the rest is not compared", maxWork, maxChanges)})
	}
	for i := range c.out {
		c.out[i].Direction = dir
		c.out[i].Against = against
		c.out[i].Detail = sides[dir].Replace(c.out[i].Detail)
	}
	return c.out
}
