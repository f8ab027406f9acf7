package middleware

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/arcmill/arcmill/arc"
)

// Reasons a message is dead-lettered.
const (
	ReasonRetryExhausted   = "retry_exhausted"
	ReasonUnrecoverable    = "unrecoverable"
	ReasonValidationFailed = "validation_failed"
	ReasonMalformed        = "malformed"
)

// DeadLetteredEvent is Arc's DeadLetteredEvent (event, error, attempts,
// firstFailedAt, lastFailedAt, handlerName), so Arc tooling reads it, plus
// what Arc lacks: why, where from, and on which host.
type DeadLetteredEvent struct {
	// Event is the event that failed. For a malformed message it is Arc's
	// placeholder: type "<unknown>", null payload, meta.id the message UUID.
	Event arc.Event `json:"event"`
	// Error is the last error.
	Error ErrorInfo `json:"error"`
	// Attempts counts the handler's attempts, across deliveries.
	Attempts      int       `json:"attempts"`
	FirstFailedAt time.Time `json:"-"`
	LastFailedAt  time.Time `json:"-"`
	HandlerName   string    `json:"handlerName,omitempty"`

	// Reason is one of the Reason* constants.
	Reason string `json:"reason"`
	// ErrorType is the Go type of the innermost error.
	ErrorType string `json:"errorType,omitempty"`
	// SourceTopic is the topic the message was read from.
	SourceTopic string `json:"sourceTopic,omitempty"`
	// Pattern is the wildcard pattern that matched.
	Pattern string `json:"pattern,omitempty"`
	// ConsumerGroup is the configured consumer group.
	ConsumerGroup string `json:"consumerGroup,omitempty"`
	// OriginalID is the transport's id for the message (a stream entry id or
	// an offset), when the subscriber put one in metadata.
	OriginalID string `json:"originalId,omitempty"`
	// Host is the host name of the process that gave up.
	Host string `json:"host,omitempty"`
	// Raw holds a malformed message as it arrived (its payload bounded by
	// DeadLetterConfig.MaxRawBytes), and the message of a fallback envelope.
	Raw *RawMessage `json:"raw,omitempty"`
	// EncodeError says why the event could not be written into this dead
	// letter, which then holds the placeholder event and the message in
	// Raw (a fallback envelope); empty otherwise.
	EncodeError string `json:"encodeError,omitempty"`

	target string // the wildcard handler to send a delayed retry to
}

// ErrorInfo is Arc's {message, code?, stack?}.
type ErrorInfo struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
	Stack   string `json:"stack,omitempty"`
}

// RawMessage is a Watermill message that could not be read as an event.
type RawMessage struct {
	UUID     string            `json:"uuid"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Payload  string            `json:"payload"`
	// Encoding is "base64" when the payload was not UTF-8 text.
	Encoding string `json:"encoding,omitempty"`
	// Truncated is true when Payload holds only the first bytes of the
	// message's payload (DeadLetterConfig.MaxRawBytes); Size is then the
	// full payload's length in bytes.
	Truncated bool `json:"truncated,omitempty"`
	Size      int  `json:"size,omitempty"`
}

type envelopeJSON struct {
	Event         json.RawMessage `json:"event"`
	Error         ErrorInfo       `json:"error"`
	Attempts      int             `json:"attempts"`
	FirstFailedAt string          `json:"firstFailedAt"`
	LastFailedAt  string          `json:"lastFailedAt"`
	HandlerName   string          `json:"handlerName,omitempty"`
	Reason        string          `json:"reason"`
	ErrorType     string          `json:"errorType,omitempty"`
	SourceTopic   string          `json:"sourceTopic,omitempty"`
	Pattern       string          `json:"pattern,omitempty"`
	ConsumerGroup string          `json:"consumerGroup,omitempty"`
	OriginalID    string          `json:"originalId,omitempty"`
	Host          string          `json:"host,omitempty"`
	Raw           *RawMessage     `json:"raw,omitempty"`
	EncodeError   string          `json:"encodeError,omitempty"`
}

// MarshalArc returns the envelope as JSON.stringify would write it: Arc's
// fields in Arc's order (event, error, attempts, firstFailedAt,
// lastFailedAt, handlerName), then arcmill's (reason, errorType,
// sourceTopic, pattern, consumerGroup, originalId, host, raw, encodeError); the event in
// Arc's wire JSON (arc.Marshal), the times as YYYY-MM-DDTHH:mm:ss.sssZ, and
// every string escaped as JSON.stringify escapes it (no HTML escaping,
// U+2028 and U+2029 raw). Writers of dead letters use it: json.Marshal
// would escape <, >, & and U+2028 again in what MarshalJSON returns.
func (d DeadLetteredEvent) MarshalArc() ([]byte, error) {
	ev, err := arc.Marshal(d.Event)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(ev)+len(d.Error.Stack)+256)
	b = append(b, `{"event":`...)
	b = append(b, ev...)
	b = append(b, `,"error":{"message":`...)
	b = arc.AppendJSONString(b, d.Error.Message)
	b = appendOptional(b, "code", d.Error.Code)
	b = appendOptional(b, "stack", d.Error.Stack)
	b = append(b, `},"attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	b = append(b, `,"firstFailedAt":"`...)
	b = append(b, arc.FormatTimestamp(d.FirstFailedAt)...)
	b = append(b, `","lastFailedAt":"`...)
	b = append(b, arc.FormatTimestamp(d.LastFailedAt)...)
	b = append(b, '"')
	b = appendOptional(b, "handlerName", d.HandlerName)
	b = append(b, `,"reason":`...)
	b = arc.AppendJSONString(b, d.Reason)
	b = appendOptional(b, "errorType", d.ErrorType)
	b = appendOptional(b, "sourceTopic", d.SourceTopic)
	b = appendOptional(b, "pattern", d.Pattern)
	b = appendOptional(b, "consumerGroup", d.ConsumerGroup)
	b = appendOptional(b, "originalId", d.OriginalID)
	b = appendOptional(b, "host", d.Host)
	if r := d.Raw; r != nil {
		b = append(b, `,"raw":{"uuid":`...)
		b = arc.AppendJSONString(b, r.UUID)
		if len(r.Metadata) > 0 {
			b = append(b, `,"metadata":{`...)
			for i, k := range slices.Sorted(maps.Keys(r.Metadata)) {
				if i > 0 {
					b = append(b, ',')
				}
				b = arc.AppendJSONString(b, k)
				b = append(b, ':')
				b = arc.AppendJSONString(b, r.Metadata[k])
			}
			b = append(b, '}')
		}
		b = append(b, `,"payload":`...)
		b = arc.AppendJSONString(b, r.Payload)
		b = appendOptional(b, "encoding", r.Encoding)
		if r.Truncated {
			b = append(b, `,"truncated":true,"size":`...)
			b = strconv.AppendInt(b, int64(r.Size), 10)
		}
		b = append(b, '}')
	}
	b = appendOptional(b, "encodeError", d.EncodeError)
	return append(b, '}'), nil
}

// appendOptional appends ,"key":"value" unless value is empty (omitempty).
func appendOptional(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return arc.AppendJSONString(b, value)
}

// MarshalJSON implements json.Marshaler with MarshalArc. encoding/json
// re-escapes <, >, & and U+2028/U+2029 in its result; for Arc's exact bytes
// call MarshalArc.
func (d DeadLetteredEvent) MarshalJSON() ([]byte, error) { return d.MarshalArc() }

// UnmarshalJSON reads an envelope written by arcmill or by Arc. It is
// liberal, as Arc's readers are: the event is read with arc.Unmarshal
// (payload content is never judged), and a failure time that is not a date
// is left zero rather than refused.
func (d *DeadLetteredEvent) UnmarshalJSON(data []byte) error {
	var e envelopeJSON
	if err := json.Unmarshal(data, &e); err != nil {
		return err
	}
	var ev arc.Event
	if err := arc.Unmarshal(e.Event, &ev); err != nil {
		return err
	}
	*d = DeadLetteredEvent{Event: ev, Error: e.Error, Attempts: e.Attempts,
		FirstFailedAt: failureTime(e.FirstFailedAt), LastFailedAt: failureTime(e.LastFailedAt),
		HandlerName: e.HandlerName, Reason: e.Reason, ErrorType: e.ErrorType, SourceTopic: e.SourceTopic,
		Pattern: e.Pattern, ConsumerGroup: e.ConsumerGroup, OriginalID: e.OriginalID, Host: e.Host, Raw: e.Raw,
		EncodeError: e.EncodeError}
	return nil
}

// failureTime reads firstFailedAt / lastFailedAt: Arc writes …sssZ, but any
// string Node reads as a date is taken, and anything else is zero.
func failureTime(s string) time.Time {
	if t, err := arc.ParseTimestamp(s); err == nil {
		return t
	}
	t, _ := arc.NodeDate(s)
	return t
}
