package arc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Event is Arc's DomainEvent: {type, payload, meta}.
//
// json.Marshal and json.Unmarshal read and write Arc's wire JSON through
// MarshalJSON and UnmarshalJSON. For byte parity with Node's JSON.stringify
// (no HTML escaping) and for speed, transports use Marshal, AppendJSON and
// Unmarshal instead.
type Event struct {
	// Type names the event, dotted by convention ("order.created"); Arc
	// ecosystems also use colons ("order:placed").
	Type string
	// Payload holds the payload's JSON bytes exactly as received or built.
	// Any JSON value is allowed. Nil means the payload is absent (as when an
	// Arc host emits undefined); JSON null is the four bytes "null".
	Payload json.RawMessage
	// Meta is the event's metadata.
	Meta Meta
}

// Meta is Arc's EventMeta. Empty optional fields are absent on the wire.
type Meta struct {
	// ID identifies the event (a UUID v4 unless the producer chose another
	// string). Required.
	//
	// ID, CorrelationID, CausationID and IdempotencyKey hold every string
	// the wire can carry, so that distinct ids never collide: invalid
	// UTF-8 bytes as they came, and a lone surrogate (a JSON "\ud800",
	// which JavaScript strings hold but UTF-8 cannot) as its WTF-8 bytes
	// (ED A0 80). Marshal writes them back as they came (the surrogate as
	// "\ud800"), and they are used as they are for the Watermill UUID,
	// correlation and causation, and DedupeKey. Raw bytes that are a
	// surrogate's WTF-8 (CESU-8, which no UTF-8 encoder writes) read as that
	// surrogate.
	ID string
	// Timestamp is when the event was created. Arc's wire carries it to the
	// millisecond, in UTC; decoding returns it so (UTC, truncated to ms).
	Timestamp time.Time
	// SchemaVersion selects the payload schema; 0 means absent.
	SchemaVersion int
	// CorrelationID ties together every event caused by one request.
	CorrelationID string
	// CausationID is the id of the event that caused this one.
	CausationID string
	// PartitionKey orders events that share it.
	PartitionKey string
	// Source names the producing service.
	Source string
	// IdempotencyKey lets consumers and outboxes drop repeats. Arc copies it
	// to child events; see DedupeKey for how arcmill keeps children safe.
	IdempotencyKey string
	// Resource is the resource name of a CRUD event.
	Resource string
	// ResourceID is the id of the resource document.
	ResourceID string
	// UserID is the acting user.
	UserID string
	// OrganizationID is the acting organization (tenant).
	OrganizationID string
	// Aggregate names the aggregate the event belongs to; nil when absent.
	Aggregate *Aggregate
	// Extra keeps meta keys arcmill does not model (Arc hosts may extend
	// EventMeta), as raw JSON, so they are written back unchanged. A known
	// key whose value the typed field cannot hold is kept here too, and its
	// typed field stays empty: null ("userId":null, which Arc handlers see
	// as null), "", a value of a type Arc does not define (a number for
	// userId), a string with a lone surrogate (except in the ids, see ID),
	// or a timestamp that is not an RFC 3339 string (a number, garbage). A
	// set typed field hides an Extra entry of the same key.
	Extra map[string]json.RawMessage

	// order lists the meta keys in the order they are written, when it is
	// not Marshal's default order: the wire order of a decoded meta, or
	// Arc's createChildEvent order. Keys not in it follow in default order.
	// Never modified in place (copies of Meta share it).
	order []string
}

// Aggregate is the aggregate an event belongs to.
type Aggregate struct {
	Type string
	ID   string
}

// MaxTypeLength is the longest event type Arc's publish accepts, in
// JavaScript characters (UTF-16 code units).
const MaxTypeLength = 256

// DeadLetterType is the one reserved ($-prefixed) type Arc lets hosts publish.
const DeadLetterType = "$deadLetter"

// ValidateType applies the checks of Arc's eventPlugin.publish: non-empty, at
// most MaxTypeLength characters, and no leading '$' except DeadLetterType.
func ValidateType(eventType string) error {
	switch {
	case eventType == "":
		return invalid("event type must be a non-empty string")
	case strings.HasPrefix(eventType, "$") && eventType != DeadLetterType:
		return invalid("event type %q uses reserved '$' prefix", eventType)
	case utf16Len(eventType) > MaxTypeLength:
		return invalid("event type exceeds %d characters", MaxTypeLength)
	}
	return nil
}

// utf16Len counts UTF-16 code units, as JavaScript's String length does.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}

// CreateOption adjusts NewEvent and NewChild.
type CreateOption func(createConfig) createConfig

type createConfig struct {
	allowInvalidDates bool
}

// AllowInvalidDates turns off the check that NewEvent and NewChild make on
// "timestamp" keys, for callers who mean to send strings that Arc handlers
// will see as Invalid Date (or who check them otherwise).
func AllowInvalidDates() CreateOption {
	return func(c createConfig) createConfig {
		c.allowInvalidDates = true
		return c
	}
}

// NewEvent is Arc's createEvent. It returns an event of the given type whose
// meta is meta with a fresh UUID v4 ID and the current time (UTC, to the
// millisecond, as Arc's wire carries it) filled in where they are zero;
// everything the caller set is kept. Meta is written as createEvent builds
// it: id, timestamp, then the caller's keys in the caller's order, which for
// a Meta built in Go is the order of Meta's fields, then Extra keys sorted
// (a Meta read from the wire keeps its wire order).
//
// payload may be a Go value (encoded with encoding/json, without HTML
// escaping), a json.RawMessage or a []byte of JSON (checked and copied), or
// nil for JSON null. The event is checked with Validate.
//
// Arc's readers turn every string under a "timestamp" key, at any depth of
// payload and meta, into a Date. NewEvent therefore refuses a payload or
// meta "timestamp" string that Node's new Date(string) reads as Invalid
// Date (judged by a port of V8's date parser, see ParseTimestamp), with an
// error that wraps ErrInvalidEvent and names the path; AllowInvalidDates
// turns the check off. Reading and relaying events never make this check.
func NewEvent(eventType string, payload any, meta Meta, opts ...CreateOption) (Event, error) {
	var cfg createConfig
	for _, o := range opts {
		cfg = o(cfg) // by value: a pointer would move cfg to the heap
	}
	raw, err := encodePayload(payload)
	if err != nil {
		return Event{}, err
	}
	if meta.ID == "" {
		meta.ID = uuid.NewString()
	}
	if _, raw := meta.Extra["timestamp"]; meta.Timestamp.IsZero() && !raw {
		meta.Timestamp = time.Now().UTC().Truncate(time.Millisecond)
	}
	meta.Extra = maps.Clone(meta.Extra)
	if meta.order != nil {
		// createEvent: {id, timestamp, ...meta}: id and timestamp first.
		order := append(make([]string, 0, len(meta.order)+2), "id", "timestamp")
		for _, k := range meta.order {
			if k != "id" && k != "timestamp" {
				order = append(order, k)
			}
		}
		meta.order = order
	}
	ev := Event{Type: eventType, Payload: raw, Meta: meta}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	if !cfg.allowInvalidDates {
		if err := ev.checkTimestampKeys(); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}

// NewChild is Arc's createChildEvent: an event caused by parent.
//
// Its CausationID is the parent's ID; its CorrelationID is the parent's, or
// the parent's ID when the parent has none or null (the root of a chain).
// It inherits userId, organizationId, source and idempotencyKey when the
// parent has them (null included), but not aggregate, resource, resourceId,
// partitionKey, schemaVersion or other Extra keys. Any field set in meta
// wins over the inherited value; ID and Timestamp are fresh unless meta
// sets them. Meta is written in createChildEvent's order: id, timestamp,
// correlationId, causationId, the inherited keys, then the caller's other
// keys in the caller's order (see NewEvent). The options and checks are
// NewEvent's.
//
// The inherited IdempotencyKey keeps Arc's wire meaning. Outboxes and
// consumer guards deduplicate with DedupeKey, which tells a child from its
// parent, so a child is never dropped as a duplicate of its parent.
func NewChild(parent Event, eventType string, payload any, meta Meta, opts ...CreateOption) (Event, error) {
	p := parent.Meta
	if p.ID == "" {
		return Event{}, invalid("parent event has no meta.id")
	}
	child := Meta{
		CausationID:    p.ID,
		CorrelationID:  p.CorrelationID,
		UserID:         p.UserID,
		OrganizationID: p.OrganizationID,
		Source:         p.Source,
		IdempotencyKey: p.IdempotencyKey,
	}
	// A value Arc allows but the typed field cannot hold (userId: 42, null,
	// an empty string) sits in Extra; Arc's createChildEvent copies it all
	// the same.
	for _, k := range inheritedKeys {
		if v, ok := p.Extra[k]; ok {
			if k == "correlationId" && isJSONNull(v) {
				continue // parent.meta.correlationId ?? parent.meta.id
			}
			if child.Extra == nil {
				child.Extra = map[string]json.RawMessage{}
			}
			child.Extra[k] = v
		}
	}
	if _, ok := child.Extra["correlationId"]; !ok && child.CorrelationID == "" {
		child.CorrelationID = p.ID
	}
	// {id, timestamp, ...inherited, ...meta}: a key keeps the position of
	// its first appearance.
	order := []string{"id", "timestamp", "correlationId", "causationId"}
	for _, k := range inheritedKeys[1:] {
		if child.has(k) {
			order = append(order, k)
		}
	}
	for _, k := range meta.keys() {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	overlay(&child, meta)
	child.order = order
	return NewEvent(eventType, payload, child, opts...)
}

// inheritedKeys are the meta keys a child takes from its parent, in the
// order createChildEvent writes them (causationId, always set, comes
// after correlationId).
var inheritedKeys = []string{"correlationId", "userId", "organizationId", "source", "idempotencyKey"}

// overlay copies every non-empty field of src over dst; src's Extra keys
// are merged over dst's.
func overlay(dst *Meta, src Meta) {
	set := func(d *string, s string) {
		if s != "" {
			*d = s
		}
	}
	set(&dst.ID, src.ID)
	set(&dst.CorrelationID, src.CorrelationID)
	set(&dst.CausationID, src.CausationID)
	set(&dst.PartitionKey, src.PartitionKey)
	set(&dst.Source, src.Source)
	set(&dst.IdempotencyKey, src.IdempotencyKey)
	set(&dst.Resource, src.Resource)
	set(&dst.ResourceID, src.ResourceID)
	set(&dst.UserID, src.UserID)
	set(&dst.OrganizationID, src.OrganizationID)
	if !src.Timestamp.IsZero() {
		dst.Timestamp = src.Timestamp
	}
	if src.SchemaVersion != 0 {
		dst.SchemaVersion = src.SchemaVersion
	}
	if src.Aggregate != nil {
		a := *src.Aggregate
		dst.Aggregate = &a
	}
	for k, v := range src.Extra {
		if dst.Extra == nil {
			dst.Extra = map[string]json.RawMessage{}
		}
		dst.Extra[k] = v
		// The caller's raw value (userId: null, say) replaces an inherited
		// typed one, unless the caller also set the typed field.
		if isKnown, srcSet := src.known(k); isKnown && !srcSet {
			dst.clear(k)
		}
	}
	// A typed field the caller set replaces an inherited odd-typed value.
	for k := range dst.Extra {
		if _, set := dst.known(k); set {
			if _, fromCaller := src.Extra[k]; !fromCaller {
				delete(dst.Extra, k)
			}
		}
	}
}

// clear empties the typed field of a known key.
func (m *Meta) clear(key string) {
	switch key {
	case "timestamp":
		m.Timestamp = time.Time{}
	case "schemaVersion":
		m.SchemaVersion = 0
	case "aggregate":
		m.Aggregate = nil
	default:
		if p := m.stringField(key); p != nil {
			*p = ""
		}
	}
}

// Validate reports whether the event may be published to Arc services: a
// valid type (ValidateType), an ID, a timestamp (the typed field, or a raw
// value read from the wire), and everything Marshal checks. It does not look
// inside the payload: relaying an event Arc delivered must not fail on its
// content. Errors wrap ErrInvalidEvent.
func (ev Event) Validate() error {
	if err := ValidateType(ev.Type); err != nil {
		return err
	}
	if _, raw := ev.Meta.Extra["timestamp"]; ev.Meta.Timestamp.IsZero() && !raw {
		return invalid("meta.timestamp is not set")
	}
	return ev.checkEncodable()
}

// checkEncodable holds the checks every write makes: those without which the
// bytes would not be an event Arc's readers accept: a type, an id, and JSON
// in payload and Extra. Payload content is never judged.
func (ev Event) checkEncodable() error {
	if ev.Type == "" {
		return invalid("event type is empty")
	}
	if ev.Meta.ID == "" {
		return invalid("meta.id is empty")
	}
	if len(ev.Payload) > 0 {
		if err := validJSON(ev.Payload); err != nil {
			return invalid("payload is not JSON: %v", err)
		}
	}
	return ev.Meta.checkEncodable()
}

// checkTimestampKeys is NewEvent's check: no "timestamp" string in payload
// or meta that Node reads as Invalid Date.
func (ev Event) checkTimestampKeys() error {
	if err := checkTimestampKeys("payload", ev.Payload); err != nil {
		return err
	}
	for _, k := range ev.Meta.extraKeys() {
		v := ev.Meta.Extra[k]
		if k == "timestamp" && len(v) > 0 && v[0] == '"' {
			if s := unquoteRaw(v); !isDate(s) {
				return invalidDate("meta.timestamp", s)
			}
			continue
		}
		if err := checkTimestampKeys("meta."+k, v); err != nil {
			return err
		}
	}
	return nil
}

// checkEncodable checks what a write of meta needs; the id aside.
func (m Meta) checkEncodable() error {
	for k, v := range m.Extra {
		if err := validJSON(v); err != nil {
			return invalid("meta.%s is not JSON: %v", k, err)
		}
	}
	return m.checkKeys()
}

// checkKeys is checkEncodable without the JSON validity of Extra values.
func (m Meta) checkKeys() error {
	for k, v := range m.Extra {
		if k == "id" {
			// Never from decoding; written, it would bypass the typed check.
			return invalid("meta.Extra must not hold the key %q; set the typed field", k)
		}
		if isKnown, _ := m.known(k); isKnown {
			// Decoding would move such a value into the typed field, and the
			// event would not come back as it left.
			var probe Meta
			if _ = probe.decodeField([]byte(k), v); probe.Extra[k] == nil {
				return invalid("meta.Extra[%q] holds %s, which belongs in the typed field", k, v)
			}
		}
	}
	if t := m.Timestamp; !t.IsZero() {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return invalid("meta.timestamp year %d is outside 0000-9999", y)
		}
	}
	return nil
}

// DedupeKey returns the key under which an outbox or a consumer-side guard
// deduplicates ev, or "" when ev has no IdempotencyKey (no deduplication).
//
// Arc maps meta.idempotencyKey straight to the outbox's dedupe key, and its
// createChildEvent copies the key to children, so Arc silently drops a child
// stored in the same outbox as its parent. arcmill keeps the key on the wire
// unchanged but deduplicates on (idempotency key, type, causation id) and,
// for an event with a cause, its payload bytes: a repeat of the same write is
// still dropped, including a child re-created when its parent is
// redelivered, while a child never collides with its parent, nor with a
// sibling of another type or another payload. The result is the hex SHA-256
// of the parts, length-prefixed, so it fits any key column.
func DedupeKey(ev Event) string {
	if ev.Meta.IdempotencyKey == "" {
		return ""
	}
	h := sha256.New()
	var n [8]byte
	write := func(part []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	write([]byte(ev.Meta.IdempotencyKey))
	write([]byte(ev.Type))
	write([]byte(ev.Meta.CausationID))
	if ev.Meta.CausationID != "" {
		// Two children of one parent and one type (two emails to send) are
		// both kept unless their payloads are the same.
		write(ev.Payload)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Equal reports whether two events carry the same type, payload bytes and
// meta, comparing timestamps as instants and Extra values as bytes, but not
// the order of meta keys. An empty payload equals an absent one: both are
// written as no payload.
func (ev Event) Equal(o Event) bool {
	if ev.Type != o.Type || !bytes.Equal(ev.Payload, o.Payload) {
		return false
	}
	a, b := ev.Meta, o.Meta
	if !a.Timestamp.Equal(b.Timestamp) || (a.Aggregate == nil) != (b.Aggregate == nil) ||
		a.Aggregate != nil && *a.Aggregate != *b.Aggregate || len(a.Extra) != len(b.Extra) {
		return false
	}
	for k, v := range a.Extra {
		w, ok := b.Extra[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return a.ID == b.ID && a.SchemaVersion == b.SchemaVersion && a.CorrelationID == b.CorrelationID &&
		a.CausationID == b.CausationID && a.PartitionKey == b.PartitionKey && a.Source == b.Source &&
		a.IdempotencyKey == b.IdempotencyKey && a.Resource == b.Resource && a.ResourceID == b.ResourceID &&
		a.UserID == b.UserID && a.OrganizationID == b.OrganizationID
}

// encodePayload turns NewEvent's payload argument into JSON bytes.
// unescapeLineSeparators writes U+2028 and U+2029 raw, as JSON.stringify
// does, where encoding/json always escapes them (\u2028, \u2029). Other
// escapes are copied as they are.
func unescapeLineSeparators(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+5]) == "202" && (b[i+5] == '8' || b[i+5] == '9') {
			if b[i+5] == '8' {
				out = append(out, "\u2028"...)
			} else {
				out = append(out, "\u2029"...)
			}
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1]) // any other escape, kept whole
		i++
	}
	return out
}

func encodePayload(payload any) (json.RawMessage, error) {
	var raw []byte
	switch p := payload.(type) {
	case nil:
		return json.RawMessage("null"), nil
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // JSON.stringify does not escape <, > and &
		if err := enc.Encode(payload); err != nil {
			return nil, invalid("cannot encode payload: %v", err)
		}
		return json.RawMessage(unescapeLineSeparators(bytes.TrimRight(buf.Bytes(), "\n"))), nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, invalid("payload is empty; use nil for JSON null")
	}
	if err := validJSON(raw); err != nil {
		return nil, invalid("payload is not JSON: %v", err)
	}
	return append(json.RawMessage(nil), raw...), nil
}
