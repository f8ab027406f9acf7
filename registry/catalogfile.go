package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
//     payload the schema (a Multi Format Schema object's schema, a $ref to
//     components.schemas followed). Registry.AsyncAPI writes this shape.
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
	add := func(key, fallbackName string, m asyncMessage) error {
		name := m.Name
		if name == "" {
			name = fallbackName
		}
		payload, err := asyncPayload(m.Payload, doc.Components.Schemas)
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
	for _, key := range slices.Sorted(maps.Keys(doc.Components.Messages)) {
		if err := add(key, key, doc.Components.Messages[key]); err != nil {
			return nil, err
		}
	}
	for _, chKey := range slices.Sorted(maps.Keys(doc.Channels)) {
		ch := doc.Channels[chKey]
		for _, key := range slices.Sorted(maps.Keys(ch.Messages)) {
			if m := ch.Messages[key]; m.Ref == "" { // a $ref is a components message, already read
				fallback := ch.Address
				if fallback == "" {
					fallback = chKey
				}
				if err := add(chKey+"/"+key, fallback, m); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// asyncPayload returns a message payload's JSON Schema: a Multi Format
// Schema object is unwrapped, and a $ref to components.schemas followed.
func asyncPayload(raw json.RawMessage, schemas map[string]json.RawMessage) (json.RawMessage, error) {
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
	}
	var ref struct {
		Ref string `json:"$ref"`
	}
	if json.Unmarshal(raw, &ref) == nil {
		if name, ok := strings.CutPrefix(ref.Ref, "#/components/schemas/"); ok {
			target, found := schemas[name]
			if !found {
				return nil, fmt.Errorf("$ref %q: no such schema", ref.Ref)
			}
			return target, nil
		}
	}
	return raw, nil
}
