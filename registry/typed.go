package registry

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/arcmill/arcmill/arc"
)

// Typed is a definition whose payload is the Go type T.
type Typed[T any] struct {
	def Definition
}

// Define returns a typed definition for payloads of type T. When def has no
// Schema, one is generated from T (its json tags and jsonschema tags) by
// github.com/invopop/jsonschema, the most used Go library for that, kept
// up to date and emitting draft 2020-12; every field without omitempty is
// required. Register it with Registry.Register(typed.Definition()).
func Define[T any](def Definition) (*Typed[T], error) {
	def.setDefaults()
	var zero T
	def.GoType = reflect.TypeOf(zero)
	if len(def.Schema) == 0 {
		r := &jsonschema.Reflector{DoNotReference: true, ExpandedStruct: true}
		s := r.Reflect(zero)
		s.ID = "" // the registry gives every schema its own id
		raw, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("registry: generating the schema of %T: %w", zero, err)
		}
		def.Schema = raw
	}
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if _, err := compile(def.Name, def.Version, def.Schema, nil); err != nil {
		return nil, err
	}
	return &Typed[T]{def: def}, nil
}

// MustDefine is Define for definitions known to be valid; it panics
// otherwise.
func MustDefine[T any](def Definition) *Typed[T] {
	t, err := Define[T](def)
	if err != nil {
		panic(err)
	}
	return t
}

// Definition returns the definition, to register.
func (t *Typed[T]) Definition() Definition { return t.def }

// Create is Arc's definition.create(): a new event of this type whose
// meta.schemaVersion is the definition's version unless meta sets one. Like
// Arc's, it does not validate against the schema; the publisher does
// (middleware). Like arc.NewEvent, it refuses a payload "timestamp" that
// Node reads as Invalid Date, unless opts has arc.AllowInvalidDates().
func (t *Typed[T]) Create(payload T, meta arc.Meta, opts ...arc.CreateOption) (arc.Event, error) {
	if meta.SchemaVersion == 0 {
		meta.SchemaVersion = t.def.Version
	}
	return arc.NewEvent(t.def.Name, payload, meta, opts...)
}

// Decode returns the payload of ev as a T. An event of another type, or a
// payload that does not decode into T, is an error wrapping
// arc.ErrUnrecoverable: no retry fixes it.
func (t *Typed[T]) Decode(ev arc.Event) (T, error) {
	var out T
	if ev.Type != t.def.Name {
		return out, fmt.Errorf("%w: event type %q is not %q", arc.ErrUnrecoverable, ev.Type, t.def.Name)
	}
	if err := json.Unmarshal(ev.Payload, &out); err != nil {
		return out, fmt.Errorf("%w: payload of %q does not decode into %T: %v", arc.ErrUnrecoverable, ev.Type, out, err)
	}
	return out, nil
}
