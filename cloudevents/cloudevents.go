// Package cloudevents maps Arc events to CloudEvents 1.0 and back,
// losslessly for events that start as Arc events (with the exceptions
// listed below): as an SDK event (github.com/cloudevents/sdk-go/v2), in
// the binary mode of a message binding (attributes in Watermill metadata
// under the binding's "ce_" prefix, the payload as the message body), and
// in structured JSON mode.
//
// # Conformance
//
// Arc → CloudEvents; the reverse reads the same places:
//
//	CloudEvents          Arc
//	specversion          "1.0"
//	id                   meta.id
//	source               meta.source; Config.DefaultSource when absent (extension arcnosource=true says so)
//	type                 type
//	time                 meta.timestamp (RFC 3339, every digit: nanoseconds are kept)
//	subject              meta.resourceId
//	dataschema           meta.schemaVersion (any but 0, -1 included), as urn:arc:schema:<type, path-escaped>:<version>;
//	                     else the meta key "dataschema" when it holds an absolute URI (a foreign event's)
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
//	<name>               any other meta key that is a valid extension name (a-z, 0-9, at most 20
//	                     characters, none of the above) holding a JSON string: an extension of that
//	                     name, so a bridge gives a foreign CloudEvent's extensions back top-level
//	arcmeta              every other meta key, as a JSON object of its raw values
//	arcnullpayload       "true" when the payload is JSON null (so it stays apart from an absent one)
//	arcattrsagg          "true" for an aggregate whose type and id are both empty
//	arcattrs             the Arc values of attributes CloudEvents cannot hold as they are, as a JSON
//	                     object keyed by attribute name: surrounding spaces (which id trims), a source
//	                     that is no URI reference, and, in any String attribute, code points the String
//	                     type excludes (controls U+0000–U+001F and U+007F–U+009F, noncharacters); the
//	                     attribute carries a clean form (U+FFFD in their place), and arcattrs itself
//	                     \u-escapes them
//
// Every extension name is lower-case and at most 20 characters, as the
// specification asks, and no String attribute holds a code point the
// String type excludes.
//
// # Data
//
// Whether data is JSON follows the JSON event format: a datacontenttype
// whose media type is */json or */*+json (application/json, text/json,
// application/vnd.x+json), or none, declares JSON (IsJSONMediaType). In
// structured mode such data is the payload's JSON value as it stands (a
// JSON string stays a string; it is never parsed as a document); data of
// another type must be a string, and data_base64 holds bytes. An Arc
// payload is JSON, so anything else is refused with ErrNotJSON.
//
// # Exceptions to lossless
//
//   - Whitespace around a meta value's JSON (` "v" ` for "v") is not kept:
//     JSON gives it no meaning, and arc.Unmarshal drops it too.
//   - Structured mode writes the payload as a JSON value: its bytes come
//     back compacted.
//   - Arc's own JSON (arc.Marshal) writes milliseconds; the nanoseconds
//     this mapping keeps survive Watermill metadata, not Arc's wire.
//
// A CloudEvent from elsewhere maps onto an Arc event as well as it can:
// its other extensions become meta keys (string values: an extension of
// another type comes back as its canonical string), a dataschema that is
// not arcmill's becomes the meta key "dataschema", and a missing time
// becomes the time of reading.
package cloudevents

import (
	"bytes"
	"encoding/base64"
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

// ExtArcAttrsAgg marks an aggregate whose type and id are both empty.
const ExtArcAttrsAgg = ExtArcAttrs + "agg"

// ownExtensions are the extension names this mapping gives a meaning.
var ownExtensions = map[string]bool{ExtPartitionKey: true, ExtCorrelationID: true, ExtCausationID: true,
	ExtTraceParent: true, ExtIdempotencyKey: true, ExtResource: true, ExtUserID: true, ExtOrganizationID: true,
	ExtAggregateType: true, ExtAggregateID: true, ExtArcMeta: true, ExtNoSource: true, ExtNullPayload: true,
	ExtArcAttrs: true, ExtArcAttrsAgg: true}

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
		e.SetDataSchema(schemaURN(ev.Type, ev.Meta.SchemaVersion)) // the Arc type, before any cleaning
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
			e.SetExtension(ExtArcAttrsAgg, "true")
		}
	}
	rest := map[string]json.RawMessage{}
	for k, v := range ev.Meta.Extra {
		// A string whose JSON is the plain encoding of its text, so that
		// reading it back gives the same bytes, travels top-level: the W3C
		// header, a foreign dataschema (an absolute URI) when no schema
		// version takes the attribute, and any meta key that is a valid
		// extension name (so a bridge gives a foreign CloudEvent's
		// extensions back as it received them).
		var s string
		plain := json.Unmarshal(v, &s) == nil && s != "" && string(jsonString(s)) == string(v)
		switch {
		case plain && k == "traceparent":
			e.SetExtension(ExtTraceParent, s)
			continue
		case plain && k == "dataschema" && ev.Meta.SchemaVersion == 0 && absoluteURI(s) && !strings.HasPrefix(s, schemaPrefix):
			e.SetDataSchema(s)
			continue
		case plain && extensionName(k):
			e.SetExtension(k, s)
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
	// What the attributes could not hold as it is: values CloudEvents
	// trims, sources that are no URI reference, and code points the String
	// type excludes (controls, noncharacters). The attribute gets a clean
	// form, and arcattrs the Arc value.
	raw := map[string]string{}
	if id, ok := cleanString(e.ID()); !ok {
		e.SetID(id)
	}
	if typ, ok := cleanString(e.Type()); !ok {
		e.SetType(typ)
	}
	if sub, ok := cleanString(e.Subject()); !ok {
		e.SetSubject(sub)
	}
	for name, pair := range map[string][2]string{"id": {e.ID(), ev.Meta.ID}, "type": {e.Type(), ev.Type},
		"subject": {e.Subject(), ev.Meta.ResourceID}} {
		if pair[0] != pair[1] {
			raw[name] = pair[1]
		}
	}
	if ev.Meta.Source != "" && e.Source() != ev.Meta.Source {
		raw["source"] = ev.Meta.Source
	}
	for name, v := range e.Extensions() {
		s, isString := v.(string)
		if !isString {
			continue
		}
		if _, ok := cleanString(s); ok {
			continue
		}
		raw[name] = s
		if name == ExtArcMeta { // stays JSON of the same value
			safe, err := safeJSONText([]byte(s))
			if err != nil {
				return ce.Event{}, fmt.Errorf("%w: meta: %v", ErrInvalid, err)
			}
			e.SetExtension(name, safe)
			continue
		}
		clean, _ := cleanString(s)
		e.SetExtension(name, clean)
	}
	if len(raw) > 0 {
		e.SetExtension(ExtArcAttrs, safeJSONObject(raw))
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
	m.Timestamp = e.Time().UTC() // every digit: arcmill's metadata keeps them (Arc's JSON has milliseconds)
	if e.Time().IsZero() {
		m.Timestamp = time.Now().UTC().Truncate(time.Millisecond)
	}
	m.ResourceID = e.Subject()
	exts := e.Extensions()
	// arcattrs holds the Arc values of attributes that could not carry them.
	var attrs map[string]string
	if v, ok := exts[ExtArcAttrs]; ok {
		raw, err := toString(v)
		if err == nil {
			err = json.Unmarshal([]byte(raw), &attrs)
		}
		if err != nil {
			return arc.Event{}, fmt.Errorf("%w: extension %s is not a JSON object of strings: %v", ErrInvalid, ExtArcAttrs, err)
		}
	}
	str := func(name string) string {
		if v, ok := attrs[name]; ok {
			return v
		}
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
	if ds := e.DataSchema(); ds != "" {
		if v, ok := strings.CutPrefix(ds, strings.TrimSuffix(schemaURN(ev.Type, 1), "1")); ok {
			// Any version but 0 (absent), -1 included, in its one spelling.
			if n, err := strconv.Atoi(v); err == nil && n != 0 && strconv.Itoa(n) == v {
				m.SchemaVersion = n
			}
		}
		if m.SchemaVersion == 0 {
			setExtra(m, "dataschema", ds)
		}
	}
	for _, f := range stringExts {
		*f.field(m) = str(f.name)
	}
	if t, id := str(ExtAggregateType), str(ExtAggregateID); t != "" || id != "" || str(ExtArcAttrsAgg) == "true" {
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
	for name := range exts {
		if ownExtensions[name] {
			continue
		}
		if _, err := toString(exts[name]); err != nil {
			continue
		}
		setExtra(m, name, str(name))
	}
	switch data := e.Data(); {
	case len(data) > 0:
		if !IsJSONMediaType(e.DataContentType()) {
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

// UnmarshalStructured reads a CloudEvent in structured JSON mode. The
// data member is read by the JSON event format's rules, not the SDK's: when
// datacontenttype declares JSON (IsJSONMediaType: */json, */*+json, or
// none), data is the payload's JSON value as it stands, a string included
// (a string is never parsed as a JSON document); otherwise data must be a
// string, and its text must be JSON (else ErrNotJSON). data_base64 holds
// the payload's bytes.
func (c Codec) UnmarshalStructured(data []byte) (arc.Event, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	value, hasData := doc["data"]
	b64, hasB64 := doc["data_base64"]
	delete(doc, "data")
	delete(doc, "data_base64")
	attrs, err := json.Marshal(doc)
	if err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var e ce.Event
	if err := json.Unmarshal(attrs, &e); err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case hasData && hasB64:
		return arc.Event{}, fmt.Errorf("%w: both data and data_base64", ErrInvalid)
	case hasB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return arc.Event{}, fmt.Errorf("%w: data_base64 is not a string: %v", ErrInvalid, err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return arc.Event{}, fmt.Errorf("%w: data_base64: %v", ErrInvalid, err)
		}
		e.DataEncoded, e.DataBase64 = b, true
	case hasData && IsJSONMediaType(e.DataContentType()):
		e.DataEncoded = value
	case hasData:
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return arc.Event{}, fmt.Errorf("%w: data of datacontenttype %q must be a string", ErrInvalid, e.DataContentType())
		}
		e.DataEncoded = []byte(s)
	}
	return c.FromCloudEvent(e)
}

// absoluteURI reports whether s can be a dataschema (an absolute URI).
func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs()
}
