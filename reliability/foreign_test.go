package reliability

import (
	"strings"
)

// foreignKind is one kind of entry a non-Arc producer (or an attacker) can
// write straight to the stream: each must end as one dead letter with
// reason malformed and an error message naming what is wrong, and hold no
// lane.
type foreignKind struct {
	name   string
	fields []string // XADD field/value pairs, in order
	// why is a part of the dead letter's error message that only this
	// kind's reason has.
	why string
}

// foreignKinds are the kinds the fault scenario injects, foreignPerKind
// of each.
var foreignKinds = []foreignKind{
	{name: "not-json", fields: []string{"type", "foreign.bytes", "data", "\x00{not json"},
		why: "not JSON: invalid JSON at byte 0"},
	{name: "no-data", fields: []string{"type", "foreign.nodata"},
		why: "stream entry has no data field"},
	// Arc would read only the last pair; arcmill refuses the entry.
	{name: "two-events", fields: []string{
		"type", "order.created", "data", `{"type":"order.created","payload":{"n":1,"total":1},"meta":{"id":"foreign-a"}}`,
		"type", "order.created", "data", `{"type":"order.created","payload":{"n":2,"total":2},"meta":{"id":"foreign-b"}}`},
		why: "2 type and 2 data fields"},
	// Over the consumers' MaxEntryBytes: dead-lettered with an excerpt.
	{name: "oversized", fields: []string{"type", "foreign.big", "data", strings.Repeat("x", consumerMaxEntryBytes+1024)},
		why: "is over MaxEntryBytes"},
	// An Arc event nested deeper than arc.DefaultMaxDepth (1,000 levels).
	{name: "too-deep", fields: []string{"type", "foreign.deep", "data",
		`{"type":"foreign.deep","payload":` + strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + `,"meta":{"id":"foreign-deep"}}`},
		why: "nested deeper than"},
}

// foreignReason is the part of the dead letter's message that kind's
// entries must have; for an unknown kind, a text no message has.
func foreignReason(kind string) string {
	for _, k := range foreignKinds {
		if k.name == kind {
			return k.why
		}
	}
	return "(unknown foreign kind " + kind + ")"
}
