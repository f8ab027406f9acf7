package arc

import (
	"errors"
	"fmt"
	"math"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Read-side bounds on foreign input (see Limits).
const (
	// DefaultMaxDepth is Limits.MaxDepth's default. Arc's readers (V8's
	// JSON.parse) take any depth, but every deep value costs a reader
	// somewhere: encoding/json refuses past 10,000, so a dead letter that
	// wraps a 10,000-deep event cannot be written, and recursive handlers
	// overflow long before. 1,000 levels is far deeper than any event
	// schema, and leaves the dead-letter envelope room to wrap the event.
	DefaultMaxDepth = 1000
	// DefaultMaxTypeBytes is Limits.MaxTypeBytes' default: 64 KiB. Arc's
	// publish refuses types over MaxTypeLength (256 UTF-16 units, at most
	// 768 bytes of UTF-8), but Arc's readers check no length, so a reader
	// must take more than a publisher writes. 64 KiB takes every type Arc
	// can publish with room to spare and keeps a hostile type from costing
	// the router more than a few microseconds.
	DefaultMaxTypeBytes = 64 << 10
	// NoLimit, as a Limits field, turns that bound off.
	NoLimit = -1
)

// hardMaxDepth bounds nesting where no Limits apply (writes, and reads
// with NoLimit use math.MaxInt): encoding/json's limit, so what arcmill
// writes encoding/json can read.
const hardMaxDepth = 10000

// ErrInvalidConfig is wrapped by every error that refuses a Limits value.
var ErrInvalidConfig = errors.New("arc: invalid config")

// Limits bounds what a reader accepts from the wire, so that a foreign
// entry can neither exhaust a consumer nor become a message that cannot be
// dead-lettered. An event over a limit is malformed (a *DecodeError
// wrapping ErrMalformedEvent, Field naming what is over), and so
// dead-lettered once with reason "malformed" and its raw bytes. The zero
// value holds the defaults; package-level Unmarshal, UnmarshalMessage and
// FromMessage use it.
type Limits struct {
	// MaxDepth bounds how deeply the event's JSON nests, the event object
	// itself counting as one level: a payload may nest MaxDepth-1 levels.
	// NoLimit takes any depth (the scanner is iterative: depth costs no
	// stack, only a few bytes of heap a level). Defaults to DefaultMaxDepth.
	MaxDepth int
	// MaxTypeBytes bounds the event type's length in bytes of UTF-8 (cheaper
	// to count than JavaScript's UTF-16 length, and never smaller).
	// NoLimit takes any length. Defaults to DefaultMaxTypeBytes.
	MaxTypeBytes int
}

// Validate reports, field by field, a value that cannot work: a negative
// value other than NoLimit. Errors wrap ErrInvalidConfig.
func (l Limits) Validate() error {
	switch {
	case l.MaxDepth < 0 && l.MaxDepth != NoLimit:
		return fmt.Errorf("%w: Limits.MaxDepth must be positive, 0 (default) or NoLimit, got %d",
			ErrInvalidConfig, l.MaxDepth)
	case l.MaxTypeBytes < 0 && l.MaxTypeBytes != NoLimit:
		return fmt.Errorf("%w: Limits.MaxTypeBytes must be positive, 0 (default) or NoLimit, got %d",
			ErrInvalidConfig, l.MaxTypeBytes)
	}
	return nil
}

// depth returns the nesting bound in force: any negative value is none.
func (l Limits) depth() int {
	switch {
	case l.MaxDepth == 0:
		return DefaultMaxDepth
	case l.MaxDepth < 0:
		return math.MaxInt
	}
	return l.MaxDepth
}

func (l Limits) typeBytes() int {
	switch {
	case l.MaxTypeBytes == 0:
		return DefaultMaxTypeBytes
	case l.MaxTypeBytes < 0:
		return math.MaxInt
	}
	return l.MaxTypeBytes
}

// checkType refuses a type over the length bound.
func (l Limits) checkType(field, typ string) error {
	if n := l.typeBytes(); len(typ) > n {
		return malformed(field, fmt.Sprintf("longer than %d bytes (%d)", n, len(typ)), nil)
	}
	return nil
}

// below returns the bound for a value nested n levels below the event.
func (l Limits) below(n int) int {
	d := l.depth()
	if d == math.MaxInt {
		return d
	}
	return max(d-n, 0)
}

// UnmarshalMessage is the package's UnmarshalMessage under these limits.
func (l Limits) UnmarshalMessage(data []byte) (*message.Message, error) {
	var ev Event
	if err := l.Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	return toMessage(ev), nil
}
