package crud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/arcmill/arcmill/arc"
)

// Operation is the kind of change, as Arc names it in payload.operation.
type Operation string

// Arc's three CRUD operations. Their event types are the resource name, a
// dot and the operation with a "d": product.created, product.updated,
// product.deleted.
const (
	Create Operation = "create"
	Update Operation = "update"
	Delete Operation = "delete"
)

// ErrInvalidChange is wrapped by every error about a change that cannot
// become an event (a bad resource name or operation, a document that is
// not JSON).
var ErrInvalidChange = errors.New("crud: invalid change")

// Type returns the event type of op on resource: "<resource>.<op>d", Arc's
// crudEventType.
func (op Operation) Type(resource string) string { return resource + "." + string(op) + "d" }

func (op Operation) valid() bool { return op == Create || op == Update || op == Delete }

// Change is one change to one document, with everything its event holds.
// Created, Updated and Deleted fill it from their arguments.
type Change struct {
	// Op is the operation. Required.
	Op Operation
	// Resource is Arc's resource name ("product"). Required.
	Resource string
	// Doc is the document after the change (before it, for a delete, as
	// Arc reads it before deleting): any value encoding/json encodes, or a
	// json.RawMessage of JSON. It becomes payload.data.
	Doc any
	// Scope is the request's scope.
	Scope Scope
	// ResourceID becomes meta.resourceId. Defaults to the document's "_id"
	// key, else its "id" key, as a string (a number as its JSON text);
	// absent when neither is a string, a number or a boolean.
	ResourceID string
	// ID is meta.id. Defaults to a new UUID v4.
	ID string
	// Time is meta.timestamp and payload.timestamp. Defaults to now (both
	// are written to the millisecond, in UTC).
	Time time.Time
	// AllowInvalidDates lets through a document holding a "timestamp"
	// string that Arc's readers would revive as Invalid Date.
	AllowInvalidDates bool
}

// Created returns Arc's <resource>.created event for doc.
func Created(resource string, doc any, scope Scope) (arc.Event, error) {
	return Change{Op: Create, Resource: resource, Doc: doc, Scope: scope}.Event()
}

// Updated returns Arc's <resource>.updated event for doc, the document as
// it is after the update.
func Updated(resource string, doc any, scope Scope) (arc.Event, error) {
	return Change{Op: Update, Resource: resource, Doc: doc, Scope: scope}.Event()
}

// Deleted returns Arc's <resource>.deleted event for doc, the document as
// it was before the delete.
func Deleted(resource string, doc any, scope Scope) (arc.Event, error) {
	return Change{Op: Delete, Resource: resource, Doc: doc, Scope: scope}.Event()
}

// payload is Arc's CRUD payload, its keys in Arc's order.
type payload struct {
	Resource       string          `json:"resource"`
	Operation      Operation       `json:"operation"`
	Data           json.RawMessage `json:"data"`
	UserID         json.RawMessage `json:"userId,omitempty"`         // nil: undefined, dropped
	OrganizationID json.RawMessage `json:"organizationId,omitempty"` // nil: undefined, dropped
	Timestamp      string          `json:"timestamp"`
}

// Event builds the change's Arc event. Errors wrap ErrInvalidChange, or
// arc.ErrInvalidEvent for what arc.NewEvent refuses.
func (c Change) Event() (arc.Event, error) {
	if !c.Op.valid() {
		return arc.Event{}, fmt.Errorf("%w: operation %q is not create, update or delete", ErrInvalidChange, c.Op)
	}
	if c.Resource == "" {
		return arc.Event{}, fmt.Errorf("%w: empty resource name", ErrInvalidChange)
	}
	data, err := encodeDoc(c.Doc)
	if err != nil {
		return arc.Event{}, err
	}
	t := c.Time
	if t.IsZero() {
		t = time.Now()
	}
	t = t.UTC().Truncate(time.Millisecond)
	resourceID := c.ResourceID
	if resourceID == "" {
		resourceID = docID(data)
	}
	p := payload{
		Resource:       c.Resource,
		Operation:      c.Op,
		Data:           data,
		UserID:         c.Scope.UserID.JSON(),
		OrganizationID: c.Scope.OrganizationID.JSON(),
		Timestamp:      t.Format("2006-01-02T15:04:05.000Z07:00"),
	}
	meta := arc.Meta{
		ID:            c.ID,
		Timestamp:     t,
		CorrelationID: c.Scope.RequestID,
		Resource:      c.Resource,
		ResourceID:    resourceID,
	}
	setMetaScope(&meta, c.Scope)
	var opts []arc.CreateOption
	if c.AllowInvalidDates {
		opts = append(opts, arc.AllowInvalidDates())
	}
	return arc.NewEvent(c.Op.Type(c.Resource), p, meta, opts...)
}

// setMetaScope writes Arc's meta.userId and meta.organizationId:
// rawUserId != null ? String(rawUserId) : undefined, and the organization
// as it is. A value the typed string fields cannot hold ("", null, a
// number) goes in Extra, which Marshal writes at the same place.
func setMetaScope(meta *arc.Meta, s Scope) {
	if u := s.UserID; !u.IsAbsent() && !u.IsNull() {
		if str := u.JSString(); str != "" {
			meta.UserID = str
		} else {
			setExtra(meta, "userId", json.RawMessage(`""`))
		}
	}
	if o := s.OrganizationID; !o.IsAbsent() {
		if o.raw[0] == '"' && o.raw != `""` {
			meta.OrganizationID = o.JSString()
		} else {
			setExtra(meta, "organizationId", o.JSON())
		}
	}
}

func setExtra(meta *arc.Meta, key string, v json.RawMessage) {
	if meta.Extra == nil {
		meta.Extra = make(map[string]json.RawMessage, 2)
	}
	meta.Extra[key] = v
}

// encodeDoc writes doc as JSON, without HTML escaping (JSON.stringify does
// none).
func encodeDoc(doc any) (json.RawMessage, error) {
	if raw, ok := doc.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("%w: document is not JSON", ErrInvalidChange)
		}
		return raw, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("%w: cannot encode document: %w", ErrInvalidChange, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// docID is Arc's resourceId: String(doc._id ?? doc.id), absent when both
// are null or undefined. Objects and arrays (which String would write as
// "[object Object]" or a joined list) give none.
func docID(data json.RawMessage) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return ""
	}
	for _, k := range []string{"_id", "id"} {
		v, ok := fields[k]
		if !ok || string(v) == "null" {
			continue // ?? falls through on null and undefined
		}
		switch v[0] {
		case '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				return s
			}
			return ""
		case 't', 'f':
			return string(v)
		case '{', '[':
			return ""
		default:
			return numberString(v)
		}
	}
	return ""
}

// numberString writes a JSON number as JavaScript's String(n) does.
func numberString(v json.RawMessage) string {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return string(v)
	}
	b, err := json.Marshal(f) // ES number formatting, as encoding/json does
	if err != nil {
		return string(v)
	}
	return string(b)
}
