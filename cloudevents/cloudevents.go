// Package cloudevents maps Arc events to CloudEvents 1.0 and back,
// losslessly for events that start as Arc events: as an SDK event
// (github.com/cloudevents/sdk-go/v2), in the binary mode of a message
// binding (attributes in Watermill metadata under the binding's "ce_"
// prefix, the payload as the message body), and in structured JSON mode.
//
// Conformance (Arc → CloudEvents; the reverse reads the same places):
//
//	CloudEvents          Arc
//	specversion          "1.0"
//	id                   meta.id
//	source               meta.source; Config.DefaultSource when absent (extension arcnosource=true says so)
//	type                 type
//	time                 meta.timestamp (RFC 3339)
//	subject              meta.resourceId
//	dataschema           meta.schemaVersion, as urn:arc:schema:<type, path-escaped>:<version>
//	datacontenttype      application/json (an absent payload has no data)
//	data                 payload, the JSON bytes unchanged
//	partitionkey         meta.partitionKey      (the Partitioning extension)
//	correlationid        meta.correlationId
//	causationid          meta.causationId
//	traceparent          meta.traceparent, an Arc host's extra key (the Distributed Tracing extension)
//	idempotencykey       meta.idempotencyKey
//	resource             meta.resource
//	userid               meta.userId
//	organizationid       meta.organizationId
//	aggregatetype        meta.aggregate.type
//	aggregateid          meta.aggregate.id
//	arcmeta              every other meta key, as a JSON object of its raw values
//	arcnullpayload       "true" when the payload is JSON null (so it stays apart from an absent one)
//	arcattrsagg          "true" for an aggregate whose type and id are both empty
//	arcattrs             the Arc values of id, type, source and subject when CloudEvents cannot hold
//	                     them as they are (surrounding spaces, which attributes trim; a source that
//	                     is no URI reference), as a JSON object; the attributes carry cleaned forms
//
// Every extension name is lower-case and at most 20 characters, as the
// specification asks. A CloudEvent from elsewhere maps onto an Arc event
// as well as it can: its other extensions become meta keys (string
// values), a dataschema that is not arcmill's becomes the meta key
// "dataschema", a missing time becomes the time of reading, and data that
// is not JSON is refused with ErrNotJSON, since an Arc payload is JSON.
package cloudevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/arcmill/arcmill/arc"
)

// Errors of the mapping.
var (
	// ErrNotJSON refuses CloudEvent data that is not JSON.
	ErrNotJSON = errors.New("cloudevents: data is not JSON, which an Arc payload must be")
	// ErrInvalid refuses a CloudEvent without id or type, or one the SDK
	// does not validate.
	ErrInvalid = errors.New("cloudevents: invalid CloudEvent")
)

// Extension names.
const (
	ExtPartitionKey   = "partitionkey"
	ExtCorrelationID  = "correlationid"
	ExtCausationID    = "causationid"
	ExtTraceParent    = "traceparent"
	ExtIdempotencyKey = "idempotencykey"
	ExtResource       = "resource"
	ExtUserID         = "userid"
	ExtOrganizationID = "organizationid"
	ExtAggregateType  = "aggregatetype"
	ExtAggregateID    = "aggregateid"
	ExtArcMeta        = "arcmeta"
	ExtNoSource       = "arcnosource"
	ExtNullPayload    = "arcnullpayload"
	ExtArcAttrs       = "arcattrs"
)

const schemaPrefix = "urn:arc:schema:"

// Config configures a Codec.
type Config struct {
	// DefaultSource is the source of an event whose meta.source is empty
	// (source is required in CloudEvents). Default "arcmill".
	DefaultSource string
}

// Codec maps between Arc events and CloudEvents. The zero value works.
type Codec struct{ Config Config }

func (c Codec) defaultSource() string {
	if c.Config.DefaultSource != "" {
		return c.Config.DefaultSource
	}
	return "arcmill"
}

// stringExts pairs the string meta fields with their extensions.
var stringExts = []struct {
	name  string
	field func(*arc.Meta) *string
}{
	{ExtPartitionKey, func(m *arc.Meta) *string { return &m.PartitionKey }},
	{ExtCorrelationID, func(m *arc.Meta) *string { return &m.CorrelationID }},
	{ExtCausationID, func(m *arc.Meta) *string { return &m.CausationID }},
	{ExtIdempotencyKey, func(m *arc.Meta) *string { return &m.IdempotencyKey }},
	{ExtResource, func(m *arc.Meta) *string { return &m.Resource }},
	{ExtUserID, func(m *arc.Meta) *string { return &m.UserID }},
	{ExtOrganizationID, func(m *arc.Meta) *string { return &m.OrganizationID }},
}

// ToCloudEvent maps ev onto a CloudEvent.
func (c Codec) ToCloudEvent(ev arc.Event) (ce.Event, error) {
	if err := ev.Validate(); err != nil {
		return ce.Event{}, err
	}
	e := ce.New(ce.CloudEventsVersionV1)
	if strings.TrimSpace(ev.Meta.ID) == "" {
		e.SetID("_") // CloudEvents trims ids; the Arc id rides in arcattrs
	} else {
		e.SetID(ev.Meta.ID)
	}
	e.SetType(ev.Type)
	if ev.Meta.Source != "" {
		e.SetSource(ev.Meta.Source)
		if e.Source() != ev.Meta.Source {
			e.SetSource(url.PathEscape(strings.TrimSpace(ev.Meta.Source)))
		}
	} else {
		e.SetSource(c.defaultSource())
		e.SetExtension(ExtNoSource, "true")
	}
	if !ev.Meta.Timestamp.IsZero() {
		e.SetTime(ev.Meta.Timestamp.UTC())
	}
	if ev.Meta.ResourceID != "" {
		e.SetSubject(ev.Meta.ResourceID)
	}
	if ev.Meta.SchemaVersion != 0 {
		e.SetDataSchema(schemaURN(e.Type(), ev.Meta.SchemaVersion))
	}
	for _, f := range stringExts {
		if v := *f.field(&ev.Meta); v != "" {
			e.SetExtension(f.name, v)
		}
	}
	if a := ev.Meta.Aggregate; a != nil {
		// Present even when empty: Arc writes "aggregate":{} for those.
		e.SetExtension(ExtAggregateType, a.Type)
		e.SetExtension(ExtAggregateID, a.ID)
		if a.Type == "" && a.ID == "" {
			e.SetExtension(ExtArcAttrs+"agg", "true")
		}
	}
	rest := map[string]json.RawMessage{}
	for k, v := range ev.Meta.Extra {
		var s string
		// The W3C header only when its JSON is the plain encoding of its
		// text, so that writing it back gives the same bytes.
		if k == "traceparent" && json.Unmarshal(v, &s) == nil && s != "" && string(jsonString(s)) == string(v) {
			e.SetExtension(ExtTraceParent, s)
			continue
		}
		rest[k] = v
	}
	if len(rest) > 0 {
		e.SetExtension(ExtArcMeta, string(rawObject(rest)))
	}
	if ev.Payload != nil {
		e.SetDataContentType(ce.ApplicationJSON)
		e.DataEncoded = append([]byte(nil), ev.Payload...)
		if string(ev.Payload) == "null" {
			e.SetExtension(ExtNullPayload, "true")
		}
	}
	// What the attributes could not hold as it is.
	raw := map[string]string{}
	for name, pair := range map[string][2]string{"id": {e.ID(), ev.Meta.ID}, "type": {e.Type(), ev.Type},
		"subject": {e.Subject(), ev.Meta.ResourceID}} {
		if pair[0] != pair[1] {
			raw[name] = pair[1]
		}
	}
	if ev.Meta.Source != "" && e.Source() != ev.Meta.Source {
		raw["source"] = ev.Meta.Source
	}
	if len(raw) > 0 {
		b, _ := json.Marshal(raw)
		e.SetExtension(ExtArcAttrs, string(b))
	}
	if err := e.Validate(); err != nil {
		return ce.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return e, nil
}

// FromCloudEvent maps a CloudEvent onto an Arc event.
func (c Codec) FromCloudEvent(e ce.Event) (arc.Event, error) {
	if err := e.Validate(); err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, v := range []string{e.ID(), e.Type(), e.Source(), e.Subject(), e.DataSchema()} {
		if !utf8.ValidString(v) {
			return arc.Event{}, fmt.Errorf("%w: an attribute is not valid UTF-8", ErrInvalid)
		}
	}
	ev := arc.Event{Type: e.Type()}
	m := &ev.Meta
	m.ID = e.ID()
	m.Timestamp = e.Time().UTC().Truncate(time.Millisecond)
	if e.Time().IsZero() {
		m.Timestamp = time.Now().UTC().Truncate(time.Millisecond)
	}
	m.ResourceID = e.Subject()
	exts := e.Extensions()
	str := func(name string) string {
		v, ok := exts[name]
		if !ok {
			return ""
		}
		s, err := toString(v)
		if err != nil {
			return ""
		}
		return s
	}
	if str(ExtNoSource) != "true" {
		m.Source = e.Source()
	}
	if ds := e.DataSchema(); ds != "" {
		if v, ok := strings.CutPrefix(ds, strings.TrimSuffix(schemaURN(e.Type(), 1), "1")); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				m.SchemaVersion = n
			}
		}
		if m.SchemaVersion == 0 {
			setExtra(m, "dataschema", ds)
		}
	}
	if raw := str(ExtArcAttrs); raw != "" {
		var attrs map[string]string
		if err := json.Unmarshal([]byte(raw), &attrs); err != nil {
			return arc.Event{}, fmt.Errorf("%w: extension %s is not a JSON object of strings: %v", ErrInvalid, ExtArcAttrs, err)
		}
		for name, v := range attrs {
			switch name {
			case "id":
				m.ID = v
			case "type":
				ev.Type = v
			case "source":
				m.Source = v
			case "subject":
				m.ResourceID = v
			}
		}
	}
	known := map[string]bool{ExtNoSource: true, ExtNullPayload: true, ExtArcMeta: true, ExtTraceParent: true,
		ExtAggregateType: true, ExtAggregateID: true, ExtArcAttrs: true, ExtArcAttrs + "agg": true}
	for _, f := range stringExts {
		*f.field(m) = str(f.name)
		known[f.name] = true
	}
	if t, id := str(ExtAggregateType), str(ExtAggregateID); t != "" || id != "" || str(ExtArcAttrs+"agg") == "true" {
		m.Aggregate = &arc.Aggregate{Type: t, ID: id}
	}
	if raw := str(ExtArcMeta); raw != "" {
		var rest map[string]json.RawMessage
		if err := json.Unmarshal([]byte(raw), &rest); err != nil {
			return arc.Event{}, fmt.Errorf("%w: extension %s is not a JSON object: %v", ErrInvalid, ExtArcMeta, err)
		}
		for k, v := range rest {
			if m.Extra == nil {
				m.Extra = map[string]json.RawMessage{}
			}
			m.Extra[k] = v
		}
	}
	if tp := str(ExtTraceParent); tp != "" {
		setExtra(m, "traceparent", tp)
	}
	for name, v := range exts {
		if known[name] {
			continue
		}
		s, err := toString(v)
		if err != nil {
			continue
		}
		setExtra(m, name, s)
	}
	switch data := e.Data(); {
	case len(data) > 0:
		if mt := e.DataMediaType(); mt != "" && mt != ce.ApplicationJSON && !strings.HasSuffix(mt, "+json") {
			return arc.Event{}, fmt.Errorf("%w (datacontenttype %q)", ErrNotJSON, e.DataContentType())
		}
		if !json.Valid(data) {
			return arc.Event{}, ErrNotJSON
		}
		ev.Payload = append(json.RawMessage(nil), data...)
	case str(ExtNullPayload) == "true":
		ev.Payload = json.RawMessage("null")
	}
	if err := ev.Validate(); err != nil {
		return arc.Event{}, err
	}
	return ev, nil
}

func setExtra(m *arc.Meta, key, s string) {
	if m.Extra == nil {
		m.Extra = map[string]json.RawMessage{}
	}
	m.Extra[key] = jsonString(s)
}

// jsonString encodes s as JSON without HTML escaping (as Arc's
// JSON.stringify does).
func jsonString(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// rawObject writes a JSON object of raw values, keys sorted, the values'
// bytes unchanged.
func rawObject(m map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, jsonString(k)...)
		b = append(b, ':')
		b = append(b, m[k]...)
	}
	return append(b, '}')
}

// schemaURN is the dataschema of version n of type typ.
func schemaURN(typ string, n int) string {
	return schemaPrefix + url.PathEscape(typ) + ":" + strconv.Itoa(n)
}

func toString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case fmt.Stringer:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int32:
		return strconv.Itoa(int(x)), nil
	case []byte:
		return string(x), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("cloudevents: extension value of type %T", v)
}

// MarshalStructured writes ev as a CloudEvent in structured JSON mode
// (application/cloudevents+json), the payload inline as JSON. In this mode
// the payload is kept as a JSON value: its bytes come back compacted.
func (c Codec) MarshalStructured(ev arc.Event) ([]byte, error) {
	e, err := c.ToCloudEvent(ev)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{"specversion": e.SpecVersion(), "id": e.ID(), "source": e.Source(), "type": e.Type()}
	if t := e.Time(); !t.IsZero() {
		doc["time"] = t.UTC().Format(time.RFC3339Nano)
	}
	for name, v := range map[string]string{"subject": e.Subject(), "dataschema": e.DataSchema(),
		"datacontenttype": e.DataContentType()} {
		if v != "" {
			doc[name] = v
		}
	}
	for name, v := range e.Extensions() {
		doc[name] = v
	}
	if data := e.Data(); data != nil {
		doc["data"] = json.RawMessage(data)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as Arc's JSON.stringify
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// UnmarshalStructured reads a CloudEvent in structured JSON mode.
func (c Codec) UnmarshalStructured(data []byte) (arc.Event, error) {
	var e ce.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c.FromCloudEvent(e)
}
