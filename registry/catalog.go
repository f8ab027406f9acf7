package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// ArcCatalogEntry is one event in Arc's catalog shape (what `arc describe`
// prints under eventCatalog).
type ArcCatalogEntry struct {
	Name           string   `json:"name"`
	Version        int      `json:"version"`
	Description    string   `json:"description"`
	HasSchema      bool     `json:"hasSchema"`
	SchemaFields   []string `json:"schemaFields"`
	RequiredFields []string `json:"requiredFields"`
}

// ArcCatalog returns the catalog in Arc's shape, in registration order.
// schemaFields lists the schema's top-level properties in the order the
// schema writes them, as JavaScript's Object.keys does.
func (r *Registry) ArcCatalog() []ArcCatalogEntry {
	defs := r.Catalog()
	out := make([]ArcCatalogEntry, len(defs))
	for i, d := range defs {
		e := ArcCatalogEntry{Name: d.Name, Version: d.Version, Description: d.Description,
			HasSchema: len(d.Schema) > 0, SchemaFields: []string{}, RequiredFields: []string{}}
		if e.HasSchema {
			var top struct {
				Properties json.RawMessage `json:"properties"`
				Required   []string        `json:"required"`
			}
			if json.Unmarshal(d.Schema, &top) == nil {
				e.SchemaFields = append(e.SchemaFields, objectKeys(top.Properties)...)
				e.RequiredFields = append(e.RequiredFields, top.Required...)
			}
		}
		out[i] = e
	}
	return out
}

// objectKeys returns the keys of a JSON object in document order.
func objectKeys(raw json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		keys = append(keys, t.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

// AsyncAPIInfo is the info object of an AsyncAPI document.
type AsyncAPIInfo struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// AsyncAPI returns the catalog as an AsyncAPI 3.0 document (JSON): one
// channel per event type, its address the type, holding one message per
// version; each message carries its payload schema, its description and
// its version (x-arc-version), and Arc's event envelope is described once
// in components.schemas.
func (r *Registry) AsyncAPI(info AsyncAPIInfo) ([]byte, error) {
	type ref struct {
		Ref string `json:"$ref"`
	}
	type channel struct {
		Address  string         `json:"address"`
		Messages map[string]ref `json:"messages"`
	}
	type msg struct {
		Name        string          `json:"name"`
		Title       string          `json:"title"`
		Summary     string          `json:"summary,omitempty"`
		ContentType string          `json:"contentType"`
		Payload     json.RawMessage `json:"payload"`
		Version     int             `json:"x-arc-version"`
	}
	channels := map[string]channel{}
	messages := map[string]msg{}
	for _, d := range r.Catalog() {
		chID := componentID(d.Name)
		msgID := fmt.Sprintf("%s.v%d", chID, d.Version)
		ch, ok := channels[chID]
		if !ok {
			ch = channel{Address: d.Name, Messages: map[string]ref{}}
		}
		ch.Messages[msgID] = ref{"#/components/messages/" + msgID}
		channels[chID] = ch
		payload := d.Schema
		if len(payload) == 0 {
			payload = json.RawMessage(`{}`)
		}
		messages[msgID] = msg{Name: d.Name, Title: fmt.Sprintf("%s v%d", d.Name, d.Version), Summary: d.Description,
			ContentType: "application/json", Payload: payload, Version: d.Version}
	}
	doc := map[string]any{
		"asyncapi":           "3.0.0",
		"info":               info,
		"defaultContentType": "application/json",
		"channels":           channels,
		"components": map[string]any{
			"messages": messages,
			"schemas":  map[string]json.RawMessage{"ArcDomainEvent": arcEnvelopeSchema},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

var invalidComponentChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// componentID makes an event type a valid AsyncAPI component key
// (^[a-zA-Z0-9\.\-_]+$): "order:placed" becomes "order_placed".
func componentID(name string) string { return invalidComponentChars.ReplaceAllString(name, "_") }

// arcEnvelopeSchema describes Arc's DomainEvent around every payload.
var arcEnvelopeSchema = json.RawMessage(`{
  "type": "object",
  "required": ["type", "meta"],
  "properties": {
    "type": {"type": "string"},
    "payload": {},
    "meta": {
      "type": "object",
      "required": ["id", "timestamp"],
      "properties": {
        "id": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "schemaVersion": {"type": "integer"},
        "correlationId": {"type": "string"},
        "causationId": {"type": "string"},
        "partitionKey": {"type": "string"},
        "source": {"type": "string"},
        "idempotencyKey": {"type": "string"},
        "resource": {"type": "string"},
        "resourceId": {"type": "string"},
        "userId": {"type": "string"},
        "organizationId": {"type": "string"},
        "aggregate": {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"}}}
      }
    }
  }
}`)
