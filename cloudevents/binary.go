package cloudevents

import (
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/arcmill/arcmill/arc"
)

// Binary mode: each attribute and extension is a metadata entry named with
// the binding's prefix, datacontenttype is "content-type" (as the Kafka and
// AMQP bindings carry it), and the data is the message's payload.
const (
	// MetadataPrefix prefixes attribute names in binary mode.
	MetadataPrefix = "ce_"
	// MetadataContentType carries datacontenttype in binary mode.
	MetadataContentType = "content-type"
)

// ToBinaryMessage maps ev onto a Watermill message in binary mode: UUID =
// id, Payload = data, attributes in ce_-prefixed metadata.
func (c Codec) ToBinaryMessage(ev arc.Event) (*message.Message, error) {
	e, err := c.ToCloudEvent(ev)
	if err != nil {
		return nil, err
	}
	msg := message.NewMessage(e.ID(), e.Data())
	md := msg.Metadata
	md.Set(MetadataPrefix+"specversion", e.SpecVersion())
	md.Set(MetadataPrefix+"id", e.ID())
	md.Set(MetadataPrefix+"source", e.Source())
	md.Set(MetadataPrefix+"type", e.Type())
	if t := e.Time(); !t.IsZero() {
		md.Set(MetadataPrefix+"time", t.UTC().Format(time.RFC3339Nano))
	}
	if s := e.Subject(); s != "" {
		md.Set(MetadataPrefix+"subject", s)
	}
	if s := e.DataSchema(); s != "" {
		md.Set(MetadataPrefix+"dataschema", s)
	}
	if ct := e.DataContentType(); ct != "" {
		md.Set(MetadataContentType, ct)
	}
	for name, v := range e.Extensions() {
		s, err := toString(v)
		if err != nil {
			return nil, err
		}
		md.Set(MetadataPrefix+name, s)
	}
	return msg, nil
}

// FromBinaryMessage reads a Watermill message in binary mode.
func (c Codec) FromBinaryMessage(msg *message.Message) (arc.Event, error) {
	e := ce.New()
	md := msg.Metadata
	if v := md.Get(MetadataPrefix + "specversion"); v != "" && v != ce.CloudEventsVersionV1 {
		return arc.Event{}, fmt.Errorf("%w: specversion %q (want 1.0)", ErrInvalid, v)
	}
	for key, v := range md {
		name, ok := strings.CutPrefix(key, MetadataPrefix)
		if !ok {
			continue
		}
		switch name {
		case "specversion":
		case "id":
			e.SetID(v)
		case "source":
			e.SetSource(v)
		case "type":
			e.SetType(v)
		case "subject":
			e.SetSubject(v)
		case "dataschema":
			e.SetDataSchema(v)
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return arc.Event{}, fmt.Errorf("%w: time %q: %v", ErrInvalid, v, err)
			}
			e.SetTime(t)
		default:
			e.SetExtension(name, v)
		}
	}
	if ct := md.Get(MetadataContentType); ct != "" {
		e.SetDataContentType(ct)
	}
	if len(msg.Payload) > 0 {
		e.DataEncoded = append([]byte(nil), msg.Payload...)
	}
	if err := e.Validate(); err != nil {
		return arc.Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c.FromCloudEvent(e)
}
