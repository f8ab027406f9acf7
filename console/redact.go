package console

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
)

// Redacted stands in for a payload or a stack that is not exposed.
const Redacted = "[redacted]"

// redactedPayload is Redacted as a JSON payload.
var redactedPayload = json.RawMessage(`"` + Redacted + `"`)

// eventJSON is an event in Arc's wire JSON, its payload redacted unless
// expose; nil when there is no event.
func eventJSON(ev arc.Event, expose bool) json.RawMessage {
	if ev.Type == "" && ev.Meta.ID == "" {
		return nil
	}
	if !expose && ev.Payload != nil {
		ev.Payload = redactedPayload
	}
	b, err := arc.Marshal(ev)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"type": ev.Type, "error": "cannot encode: " + err.Error()})
	}
	return b
}

// LetterDetail is one dead letter opened: the envelope and the event.
type LetterDetail struct {
	Letter
	// Event is the event in Arc's wire JSON, payload redacted unless
	// exposed.
	Event json.RawMessage `json:"event,omitempty"`
	// EventTime and EventSource are the event's meta.timestamp and
	// meta.source.
	EventTime   time.Time `json:"eventTime,omitzero"`
	EventSource string    `json:"eventSource,omitempty"`
	// ErrorCode and Stack come from the envelope; Stack is redacted
	// unless exposed.
	ErrorCode string `json:"errorCode,omitempty"`
	Stack     string `json:"stack,omitempty"`
	// SourceTopic, Pattern, ConsumerGroup and Host say where it failed.
	SourceTopic   string `json:"sourceTopic,omitempty"`
	Pattern       string `json:"pattern,omitempty"`
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	Host          string `json:"host,omitempty"`
	// RawFields are the original fields of an entry that could not be
	// read, names and values alternating; values redacted unless exposed.
	RawFields []string `json:"rawFields,omitempty"`
	// RawPayload is a malformed message's payload (redacted unless
	// exposed).
	RawPayload string `json:"rawPayload,omitempty"`
	// Truncated is the size of an entry kept only as an excerpt.
	Truncated int64 `json:"truncated,omitempty"`
	// Redacted is true when payloads and stacks are hidden.
	Redacted bool `json:"redacted"`
	// Target is where a redrive puts it back.
	Target string `json:"target,omitempty"`
}

func (c *Console) detail(l letter) LetterDetail {
	expose := c.cfg.ExposePayloads
	d := LetterDetail{Letter: l.Letter, Event: eventJSON(l.event, expose), EventTime: l.event.Meta.Timestamp,
		EventSource: l.event.Meta.Source,
		Redacted:    !expose, Target: l.OriginalStream}
	if l.src.kind == kindStream {
		env := l.dl.Envelope
		d.ErrorCode, d.Stack = env.Error.Code, redactString(env.Error.Stack, expose)
		d.SourceTopic, d.Pattern, d.ConsumerGroup, d.Host = env.SourceTopic, env.Pattern, env.ConsumerGroup, env.Host
		d.Truncated = l.dl.Truncated
		d.Target, _ = l.target()
		for i := 0; i+1 < len(l.dl.RawFields); i += 2 {
			name, value := l.dl.RawFields[i], l.dl.RawFields[i+1]
			if name != redisstream.FieldType {
				value = redactString(value, expose)
			}
			d.RawFields = append(d.RawFields, name, value)
		}
		if env.Raw != nil {
			d.RawPayload = redactString(env.Raw.Payload, expose)
		}
	}
	return d
}

// redactString is s, or a note of its size when it is not exposed.
func redactString(s string, expose bool) string {
	if expose || s == "" {
		return s
	}
	return fmt.Sprintf("%s (%d bytes)", Redacted, len(s))
}
