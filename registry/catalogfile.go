package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// ErrInvalidCatalog is wrapped by ParseCatalog's error for a document that
// is none of the catalog shapes it reads.
var ErrInvalidCatalog = errors.New("registry: not a catalog")

// ParseCatalog reads event definitions from a catalog document, for
// comparing two catalogs (Check, `arcmill schema check`). It takes:
//
//   - a JSON array of {name, version, description, schema}: Arc's
//     registry.catalog() and Registry.Catalog marshalled (key case does not
//     matter);
//   - an AsyncAPI 3.0 document: each message of components.messages, and
//     each message written inline in a channel, is a definition named by
//     its name (else its key) at version x-arc-version (else 1), its
//     payload the schema (a Multi Format Schema object's schema, $refs to
//     components.schemas followed, the schemas they reach kept with the
//     payload). Registry.AsyncAPI writes this shape.
//
// A definition without a name or with a negative version is refused, as
// Register refuses it. `arc describe`'s eventCatalog lists field names,
// not schemas, and is refused.
func ParseCatalog(data []byte) ([]Definition, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var entries []struct {
			Name        string
			Version     int
			Description string
			Schema      json.RawMessage
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidCatalog, err)
		}
		out := make([]Definition, 0, len(entries))
		for i, e := range entries {
			if e.Name == "" {
				return nil, fmt.Errorf("%w: entry %d has no name", ErrInvalidCatalog, i)
			}
			if s := bytes.TrimSpace(e.Schema); bytes.Equal(s, []byte("null")) {
				e.Schema = nil
			}
			d := Definition{Name: e.Name, Version: e.Version, Description: e.Description, Schema: e.Schema}
			d.setDefaults()
			if err := d.Validate(); err != nil {
				return nil, fmt.Errorf("%w: entry %d: %v", ErrInvalidCatalog, i, err)
			}
			out = append(out, d)
		}
		return out, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCatalog, err)
	}
	if _, ok := doc["eventCatalog"]; ok {
		return nil, fmt.Errorf("%w: arc describe's eventCatalog has no schemas; export registry.catalog() as JSON instead", ErrInvalidCatalog)
	}
	if _, ok := doc["asyncapi"]; !ok {
		return nil, fmt.Errorf("%w: want a JSON array of definitions or an AsyncAPI document", ErrInvalidCatalog)
	}
	return parseAsyncAPI(data)
}

type asyncMessage struct {
	Name    string          `json:"name"`
	Title   string          `json:"title"`
	Summary string          `json:"summary"`
	Payload json.RawMessage `json:"payload"`
	Version int             `json:"x-arc-version"`
	Ref     string          `json:"$ref"`
}

func parseAsyncAPI(data []byte) ([]Definition, error) {
	var doc struct {
		AsyncAPI   string `json:"asyncapi"`
		Components struct {
			Messages map[string]asyncMessage    `json:"messages"`
			Schemas  map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
		Channels map[string]struct {
			Address  string                  `json:"address"`
			Messages map[string]asyncMessage `json:"messages"`
		} `json:"channels"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: AsyncAPI: %v", ErrInvalidCatalog, err)
	}
	if !strings.HasPrefix(doc.AsyncAPI, "3.") {
		return nil, fmt.Errorf("%w: AsyncAPI %q: want 3.x", ErrInvalidCatalog, doc.AsyncAPI)
	}
	var out []Definition
	schemas := &asyncSchemas{raw: doc.Components.Schemas, decoded: map[string]any{}, left: 8*len(data) + 1<<20}
	add := func(key, fallbackName string, m asyncMessage) error {
		name := m.Name
		if name == "" {
			name = fallbackName
		}
		payload, err := schemas.payload(m.Payload)
		if err != nil {
			return fmt.Errorf("%w: message %q: %v", ErrInvalidCatalog, key, err)
		}
		d := Definition{Name: name, Version: m.Version, Description: m.Summary, Schema: payload}
		d.setDefaults()
		if err := d.Validate(); err != nil { // an empty key and no name, a negative version
			return fmt.Errorf("%w: message %q: %v", ErrInvalidCatalog, key, err)
		}
		out = append(out, d)
		return nil
	}
	// A message that is a $ref is the components message it names, read
	// under that message's own key; a $ref to anything else is refused
	// rather than read as a message with no payload (which accepts anything).
	checkRef := func(key, ref string) error {
		if u, err := url.PathUnescape(ref); err == nil {
			ref = u
		}
		name, ok := strings.CutPrefix(ref, componentMessageRef)
		if name = strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~"); !ok || strings.Contains(name, "/") {
			return fmt.Errorf("%w: message %q: $ref %q: only $refs to %s<name> are read", ErrInvalidCatalog, key, ref, componentMessageRef)
		}
		if _, ok := doc.Components.Messages[name]; !ok {
			return fmt.Errorf("%w: message %q: $ref %q: no such message", ErrInvalidCatalog, key, ref)
		}
		return nil
	}
	for _, key := range slices.Sorted(maps.Keys(doc.Components.Messages)) {
		m := doc.Components.Messages[key]
		if m.Ref != "" {
			if err := checkRef(key, m.Ref); err != nil {
				return nil, err
			}
			continue
		}
		if err := add(key, key, m); err != nil {
			return nil, err
		}
	}
	for _, chKey := range slices.Sorted(maps.Keys(doc.Channels)) {
		ch := doc.Channels[chKey]
		for _, key := range slices.Sorted(maps.Keys(ch.Messages)) {
			m := ch.Messages[key]
			if m.Ref != "" { // a components message, read above
				if err := checkRef(chKey+"/"+key, m.Ref); err != nil {
					return nil, err
				}
				continue
			}
			fallback := ch.Address
			if fallback == "" {
				fallback = chKey
			}
			if err := add(chKey+"/"+key, fallback, m); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

const componentMessageRef = "#/components/messages/"

// asyncSchemas resolves $refs to an AsyncAPI document's
// components.schemas for the payloads of its messages.
type asyncSchemas struct {
	raw     map[string]json.RawMessage
	decoded map[string]any
	left    int // bytes the payloads may still take
}

const componentRef = "#/components/schemas/"

// get returns the decoded component schema name.
func (s *asyncSchemas) get(name string) (any, error) {
	if v, ok := s.decoded[name]; ok {
		return v, nil
	}
	raw, ok := s.raw[name]
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such schema", componentRef+escape(name))
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	s.decoded[name] = v
	return v, nil
}

// componentName is the schema a $ref into components.schemas names
// ("#/components/schemas/Order/properties/id" names Order).
func componentName(ref string) (string, bool) {
	if u, err := url.PathUnescape(ref); err == nil {
		ref = u
	}
	rest, ok := strings.CutPrefix(ref, componentRef)
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~"), true
}

// payload returns a message payload's JSON Schema: a Multi Format Schema
// object is unwrapped; a payload that is a $ref to one component schema
// is that schema. The $refs into components.schemas that a payload (or a
// schema it reaches) holds resolve in the AsyncAPI document, not in the
// payload alone: the schemas they reach are kept with the payload, under
// components.schemas as in the document, so that the refs still resolve
// and a change behind them is compared.
func (s *asyncSchemas) payload(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var multi struct {
		SchemaFormat string          `json:"schemaFormat"`
		Schema       json.RawMessage `json:"schema"`
	}
	if json.Unmarshal(raw, &multi) == nil && multi.SchemaFormat != "" {
		if !strings.Contains(multi.SchemaFormat, "json") {
			return nil, fmt.Errorf("schemaFormat %q is not JSON Schema", multi.SchemaFormat)
		}
		raw = multi.Schema
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil, nil
		}
	}
	var root any
	if err := json.Unmarshal(raw, &root); err != nil {
		return nil, err
	}
	reached := map[string]any{}
	nested := false // a component schema refers to components
	var walk func(v any, inComponent bool) error
	walk = func(v any, inComponent bool) error {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				if name, ok := componentName(ref); ok {
					nested = nested || inComponent
					if _, seen := reached[name]; !seen {
						target, err := s.get(name)
						if err != nil {
							return err
						}
						reached[name] = target
						if err := walk(target, true); err != nil {
							return err
						}
					}
				}
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				if err := walk(x[k], inComponent); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if err := walk(e, inComponent); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, false); err != nil {
		return nil, err
	}
	if len(reached) == 0 {
		return raw, nil
	}
	rm, _ := root.(map[string]any) // a $ref was found: root is an object
	if ref, ok := rm["$ref"].(string); ok && len(rm) == 1 && !nested {
		if name, _ := componentName(ref); componentRef+escape(name) == ref {
			return s.raw[name], nil // the plain case: one schema, self-contained
		}
	}
	if _, clash := rm["components"]; clash {
		return nil, errors.New(`the payload has a "components" keyword and refers to components.schemas`)
	}
	rm["components"] = map[string]any{"schemas": reached}
	out, err := json.Marshal(rm)
	if err != nil {
		return nil, err
	}
	// Each payload carries what it reaches: many messages reaching many
	// schemas would otherwise multiply a small document.
	if s.left -= len(out); s.left < 0 {
		return nil, errors.New("the payloads and the schemas they refer to expand to more than 8 times the document")
	}
	return out, nil
}
