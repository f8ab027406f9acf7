package arc

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Watermill metadata keys of the event mapping (see ToMessage). Each meta
// field has its own key so that Watermill-native middleware and readers can
// use them without decoding anything.
const (
	MetadataType           = "arc_type"
	MetadataTimestamp      = "arc_timestamp"
	MetadataSchemaVersion  = "arc_schema_version"
	MetadataCorrelationID  = "correlation_id" // Watermill's middleware.CorrelationIDMetadataKey
	MetadataCausationID    = "arc_causation_id"
	MetadataPartitionKey   = "arc_partition_key"
	MetadataSource         = "arc_source"
	MetadataIdempotencyKey = "arc_idempotency_key"
	MetadataResource       = "arc_resource"
	MetadataResourceID     = "arc_resource_id"
	MetadataUserID         = "arc_user_id"
	MetadataOrganizationID = "arc_organization_id"
	MetadataAggregateType  = "arc_aggregate_type"
	MetadataAggregateID    = "arc_aggregate_id"
	// MetadataPayloadAbsent is set to "true" when the event has no payload at
	// all (as opposed to JSON null), so that the difference survives
	// transports that turn an empty payload into nil or the reverse.
	MetadataPayloadAbsent = "arc_payload_absent"
	// MetadataExtraPrefix prefixes each Meta.Extra key; the value is the raw
	// JSON text (so null, lone surrogate escapes and odd-typed values of
	// known keys travel as they came).
	MetadataExtraPrefix = "arc_meta_"
	// MetadataKeyOrder holds the order of the meta keys as a JSON array of
	// strings, when it is not Marshal's default order (a meta read from the
	// wire, or built by NewChild), so that the event is written back with
	// its keys in the same order.
	MetadataKeyOrder = "arc_key_order"
	// MetadataMalformed is set by a transport adapter on a message whose
	// entry was not an Arc event (the adapter never fails a read: a foreign
	// or corrupt entry must not end a subscription); its value says why.
	// FromMessage reports it, so the message is dead-lettered with the
	// transport's reason.
	MetadataMalformed = "arc_malformed"
)

// stringMetadata pairs the optional string fields with their metadata keys.
var stringMetadata = []struct {
	key   string
	field func(*Meta) *string
}{
	{MetadataCorrelationID, func(m *Meta) *string { return &m.CorrelationID }},
	{MetadataCausationID, func(m *Meta) *string { return &m.CausationID }},
	{MetadataPartitionKey, func(m *Meta) *string { return &m.PartitionKey }},
	{MetadataSource, func(m *Meta) *string { return &m.Source }},
	{MetadataIdempotencyKey, func(m *Meta) *string { return &m.IdempotencyKey }},
	{MetadataResource, func(m *Meta) *string { return &m.Resource }},
	{MetadataResourceID, func(m *Meta) *string { return &m.ResourceID }},
	{MetadataUserID, func(m *Meta) *string { return &m.UserID }},
	{MetadataOrganizationID, func(m *Meta) *string { return &m.OrganizationID }},
}

// ToMessage maps ev onto a Watermill message, losslessly: UUID is meta.id,
// Payload is the payload's bytes, and type and every meta field (unknown
// keys included) go into Metadata under the Metadata* keys, correlation
// under Watermill's own "correlation_id". Empty fields get no key. The
// timestamp is written as RFC 3339 in UTC (milliseconds as on Arc's wire,
// more digits only when the time has them). Values kept raw in Meta.Extra
// (null, lone surrogates, odd types) travel as raw JSON under
// arc_meta_<key>, and the key order, when it is not the default one, under
// arc_key_order, so the event is written back with the same bytes. The
// UUID, correlation_id and arc_causation_id hold the ids as Unmarshal
// reads them (see Meta.ID): distinct ids on the wire are distinct UUIDs.
//
// It fails, wrapping ErrInvalidEvent, for an event Marshal would refuse.
func ToMessage(ev Event) (*message.Message, error) {
	if err := ev.checkEncodable(); err != nil {
		return nil, err
	}
	return toMessage(ev), nil
}

// UnmarshalMessage is Unmarshal then ToMessage, for transport adapters: it
// checks the wire JSON once rather than again on the way to the message.
func UnmarshalMessage(data []byte) (*message.Message, error) {
	var ev Event
	if err := Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	return toMessage(ev), nil
}

// toMessage maps an event already known to be writable.
func toMessage(ev Event) *message.Message {
	m := ev.Meta
	md := make(message.Metadata, 4+len(m.Extra))
	md[MetadataType] = ev.Type
	if !m.Timestamp.IsZero() {
		md[MetadataTimestamp] = formatMetadataTime(m.Timestamp)
	}
	if m.SchemaVersion != 0 {
		md[MetadataSchemaVersion] = strconv.Itoa(m.SchemaVersion)
	}
	for _, f := range stringMetadata {
		if v := *f.field(&m); v != "" {
			md[f.key] = v
		}
	}
	if a := m.Aggregate; a != nil {
		// Both keys, even empty, mark an aggregate that is present.
		md[MetadataAggregateType] = a.Type
		md[MetadataAggregateID] = a.ID
	}
	for k, v := range m.Extra {
		md[MetadataExtraPrefix+k] = string(v)
	}
	if len(m.order) > 0 {
		b := append(make([]byte, 0, 16*len(m.order)), '[')
		for i, k := range m.order {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
		}
		md[MetadataKeyOrder] = string(append(b, ']'))
	}
	payload := message.Payload(ev.Payload)
	if len(ev.Payload) == 0 {
		md[MetadataPayloadAbsent] = "true"
		payload = message.Payload{}
	}
	msg := message.NewMessage(m.ID, payload)
	msg.Metadata = md
	return msg
}

// FromMessage is the inverse of ToMessage: FromMessage(ToMessage(ev))
// equals ev (Event.Equal; the timestamp comes back in UTC). The event's
// Payload shares the message's payload bytes. Metadata keys
// outside the mapping are ignored. A message that does not carry an event,
// such as one with no arc_type, no UUID, a payload that is not JSON or an
// arc_timestamp that is not RFC 3339, gives a *DecodeError that wraps
// ErrMalformedEvent. Payload content is never judged, but its nesting and
// the type's length are bounded by the default Limits. The UUID becomes
// meta.id with its bytes, invalid UTF-8 and the WTF-8 bytes of lone
// surrogates included (see Meta.ID).
func FromMessage(msg *message.Message) (Event, error) { return Limits{}.FromMessage(msg) }

// FromMessage is the package's FromMessage under these limits.
func (l Limits) FromMessage(msg *message.Message) (Event, error) {
	if msg == nil {
		return Event{}, malformed("", "nil message", nil)
	}
	md := msg.Metadata
	if why := md[MetadataMalformed]; why != "" {
		// An adapter's reason often quotes a decode error of this package
		// ("stream entry data: arc: malformed event: meta.id: …"): say
		// "arc: malformed event" once.
		return Event{}, malformed("", strings.ReplaceAll(why, malformedPrefix+": ", ""), nil)
	}
	ev := Event{Type: md[MetadataType]}
	if ev.Type == "" {
		return Event{}, malformed(MetadataType, "must be a non-empty event type", nil)
	}
	if err := l.checkType(MetadataType, ev.Type); err != nil {
		return Event{}, err
	}
	m := &ev.Meta
	if m.ID = msg.UUID; m.ID == "" {
		return Event{}, malformed("uuid", "must be the non-empty meta.id", nil)
	}
	if s, ok := md[MetadataTimestamp]; ok && s != "" {
		t, ok := parseRFC3339(s, false)
		if !ok {
			t2, err := time.Parse(time.RFC3339Nano, s) // years ToMessage writes in Go's form
			if err != nil {
				return Event{}, malformed(MetadataTimestamp, "not an RFC 3339 time", err)
			}
			t = t2.UTC()
		}
		m.Timestamp = t
	}
	if s, ok := md[MetadataSchemaVersion]; ok && s != "" {
		n, err := strconv.ParseInt(s, 10, strconv.IntSize)
		if err != nil {
			return Event{}, malformed(MetadataSchemaVersion, "not an integer", err)
		}
		m.SchemaVersion = int(n)
	}
	for _, f := range stringMetadata {
		*f.field(m) = md[f.key]
	}
	at, hasType := md[MetadataAggregateType]
	aid, hasID := md[MetadataAggregateID]
	if hasType || hasID {
		m.Aggregate = &Aggregate{Type: at, ID: aid}
	}
	for k, v := range md {
		if name, ok := strings.CutPrefix(k, MetadataExtraPrefix); ok {
			if err := validJSONDepth([]byte(v), l.below(2)); err != nil {
				return Event{}, malformed(k, jsonProblem(err), err)
			}
			if p := m.stringField(name); p != nil && *p == "" && isIDKey([]byte(name)) {
				// An id kept raw by an arcmill before ids kept lone
				// surrogates: its typed field holds it now.
				var probe Meta
				if _ = probe.decodeField([]byte(name), []byte(v)); probe.Extra[name] == nil {
					*p = *probe.stringField(name)
					continue
				}
			}
			if m.Extra == nil {
				m.Extra = make(map[string]json.RawMessage)
			}
			m.Extra[name] = json.RawMessage(v)
		}
	}
	switch {
	case md[MetadataPayloadAbsent] == "true":
		// no payload
	case len(msg.Payload) == 0:
		return Event{}, malformed("payload", "is empty (JSON null is \"null\")", nil)
	default:
		if err := validJSONDepth(msg.Payload, l.below(1)); err != nil {
			return Event{}, malformed("payload", jsonProblem(err), err)
		}
		ev.Payload = json.RawMessage(msg.Payload)
	}
	// The JSON of payload and Extra is checked above; the rest of what a
	// write needs, here.
	if err := ev.Meta.checkKeys(); err != nil {
		return Event{}, malformed("", err.Error(), nil)
	}
	if s := md[MetadataKeyOrder]; s != "" {
		var order []string
		if err := json.Unmarshal([]byte(s), &order); err != nil {
			return Event{}, malformed(MetadataKeyOrder, "not a JSON array of strings", err)
		}
		m.order = order
	}
	return ev, nil
}

// jsonProblem names a scan error: too deep, or not JSON.
func jsonProblem(err error) string {
	var de *depthError
	if errors.As(err, &de) {
		return "nested too deeply"
	}
	return "not JSON"
}

// formatMetadataTime writes Arc's millisecond form when it loses nothing,
// and all nanosecond digits otherwise.
func formatMetadataTime(t time.Time) string {
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		if y := t.UTC().Year(); y >= 0 && y <= 9999 {
			return FormatTimestamp(t)
		}
	}
	return t.UTC().Format(time.RFC3339Nano)
}
