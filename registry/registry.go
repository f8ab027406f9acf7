package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ErrDuplicate is wrapped by Register's error for a (name, version) that is
// already registered.
var ErrDuplicate = errors.New("registry: duplicate definition")

// Definition is Arc's defineEvent: an event's name, version, description
// and payload schema.
type Definition struct {
	// Name is the event type ("order.created"). Required.
	Name string
	// Version is the schema version; default 1.
	Version int
	// Description says what the event means.
	Description string
	// Schema is the payload's JSON Schema (2020-12 unless it says
	// otherwise with $schema); nil means no schema, and every payload is
	// valid.
	Schema json.RawMessage
	// GoType is the payload's Go type, for typed definitions (Define).
	GoType reflect.Type
}

func (d *Definition) setDefaults() {
	if d.Version == 0 {
		d.Version = 1
	}
}

// Validate reports a definition that cannot be registered.
func (d Definition) Validate() error {
	switch {
	case d.Name == "":
		return errors.New("registry: Definition.Name is required")
	case d.Version < 0:
		return fmt.Errorf("registry: event %q: version must be positive, got %d", d.Name, d.Version)
	}
	return nil
}

// Config configures a Registry. The zero value is valid.
type Config struct {
	// Loader resolves $refs to documents outside a schema; without one,
	// schemas never reach for the network and such a $ref fails
	// registration. Defaults to nil.
	Loader jsonschema.URLLoader
	// RejectUnknownVersions makes Validate refuse, with ErrUnknownVersion, a
	// payload whose schemaVersion is not registered for a registered name.
	// Arc's rule, the default, finds such a payload valid. Defaults to
	// false.
	RejectUnknownVersions bool
	// Compatibility is the schema evolution rule Register enforces on a
	// new version of any event (see Compatibility). Defaults to
	// CompatNone, Arc's behaviour: versions are not compared.
	Compatibility Compatibility
	// EventCompatibility overrides Compatibility per event name, as
	// Confluent's per-subject setting does. Defaults to none.
	EventCompatibility map[string]Compatibility
}

// Validate reports an unknown compatibility mode.
func (c Config) Validate() error {
	if err := c.Compatibility.Validate(); err != nil {
		return err
	}
	for name, mode := range c.EventCompatibility {
		if err := mode.Validate(); err != nil {
			return fmt.Errorf("registry: EventCompatibility[%q]: %w", name, err)
		}
	}
	return nil
}

// compatibility returns the mode for an event.
func (c Config) compatibility(name string) Compatibility {
	if mode, ok := c.EventCompatibility[name]; ok && mode != "" {
		return mode
	}
	return c.Compatibility
}

// ErrUnknownVersion refuses a schema version a registered event does not
// have (with Config.RejectUnknownVersions).
var ErrUnknownVersion = errors.New("registry: unknown schema version")

// Registry is Arc's createEventRegistry with real JSON Schema. It is safe
// for concurrent use.
type Registry struct {
	cfg   Config
	mu    sync.RWMutex
	defs  map[string]map[int]*entry // name → version → definition
	order []*entry
}

type entry struct {
	def    Definition
	schema *jsonschema.Schema // nil: no schema
}

// New returns an empty registry.
func New(cfg Config) *Registry {
	return &Registry{cfg: cfg, defs: map[string]map[int]*entry{}}
}

// Register adds a definition, compiling its schema once. A second
// definition of the same name and version is refused with Arc's message;
// several versions of one name coexist. An invalid schema fails with an
// error wrapping ErrInvalidSchema. Under a compatibility mode other than
// NONE (Config.Compatibility, Config.EventCompatibility) the new version
// is checked against the registered lower versions of its event, and a
// breaking change fails with an *IncompatibleError wrapping
// ErrIncompatible.
func (r *Registry) Register(def Definition) error {
	def.setDefaults()
	if err := def.Validate(); err != nil {
		return err
	}
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	e := &entry{def: def}
	if len(def.Schema) > 0 {
		sch, err := compile(def.Name, def.Version, def.Schema, r.cfg.Loader)
		if err != nil {
			return err
		}
		e.schema = sch
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.defs[def.Name][def.Version]; dup {
		return fmt.Errorf("%w: Event '%s' v%d is already registered. Use a different version number for schema evolution.",
			ErrDuplicate, def.Name, def.Version)
	}
	// Checked under the lock, so that two versions registered at once are
	// each checked against the other.
	if mode := r.cfg.compatibility(def.Name); mode != CompatNone && mode != "" {
		var earlier []Definition
		for _, e := range r.defs[def.Name] {
			earlier = append(earlier, e.def)
		}
		if err := Check(mode, def, earlier); err != nil {
			return err
		}
	}
	if r.defs[def.Name] == nil {
		r.defs[def.Name] = map[int]*entry{}
	}
	r.defs[def.Name][def.Version] = e
	r.order = append(r.order, e)
	return nil
}

// MustRegister is Register for definitions known to be valid; it panics
// otherwise.
func (r *Registry) MustRegister(def Definition) {
	if err := r.Register(def); err != nil {
		panic(err)
	}
}

// lookup returns the exact version, or the latest when version is 0.
func (r *Registry) lookup(name string, version int) *entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	versions := r.defs[name]
	if version != 0 {
		return versions[version]
	}
	var latest *entry
	for _, e := range versions {
		if latest == nil || e.def.Version > latest.def.Version {
			latest = e
		}
	}
	return latest
}

// Get returns the definition of name at version, or its latest version when
// version is 0.
func (r *Registry) Get(name string, version int) (Definition, bool) {
	if e := r.lookup(name, version); e != nil {
		return e.def, true
	}
	return Definition{}, false
}

// Validate checks a payload as Arc's registry.validate does: with a version,
// against that version only; without (0), against the latest. An unknown
// name or version, or a definition without a schema, is valid (validation
// is opt-in). Otherwise a failure is a *ValidationError whose Violations
// carry JSON Pointer paths. Its signature is middleware.Validator's.
func (r *Registry) Validate(name string, payload json.RawMessage, version int) error {
	e := r.lookup(name, version)
	if e == nil && version != 0 && r.cfg.RejectUnknownVersions {
		if known := r.versions(name); len(known) > 0 {
			return fmt.Errorf("%w: event %q has no version %d (registered: %v)", ErrUnknownVersion, name, version, known)
		}
	}
	if e == nil || e.schema == nil {
		return nil
	}
	return check(e.schema, e.def.Name, e.def.Version, payload)
}

// versions lists name's registered versions, in order.
func (r *Registry) versions(name string) []int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []int
	for v := range r.defs[name] {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// Catalog returns the definitions in registration order.
func (r *Registry) Catalog() []Definition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Definition, len(r.order))
	for i, e := range r.order {
		out[i] = e.def
	}
	return out
}
