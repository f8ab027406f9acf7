package middleware

import (
	"encoding/json"
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
	// Raw holds a malformed message as it arrived.
	Raw *RawMessage `json:"raw,omitempty"`

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
}

// MarshalJSON writes the envelope with Arc's field names, the event in
// Arc's wire JSON and the times as YYYY-MM-DDTHH:mm:ss.sssZ.
func (d DeadLetteredEvent) MarshalJSON() ([]byte, error) {
	ev, err := arc.Marshal(d.Event)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelopeJSON{
		Event: ev, Error: d.Error, Attempts: d.Attempts,
		FirstFailedAt: arc.FormatTimestamp(d.FirstFailedAt), LastFailedAt: arc.FormatTimestamp(d.LastFailedAt),
		HandlerName: d.HandlerName, Reason: d.Reason, ErrorType: d.ErrorType, SourceTopic: d.SourceTopic,
		Pattern: d.Pattern, ConsumerGroup: d.ConsumerGroup, OriginalID: d.OriginalID, Host: d.Host, Raw: d.Raw,
	})
}

// UnmarshalJSON reads an envelope written by arcmill or by Arc.
func (d *DeadLetteredEvent) UnmarshalJSON(data []byte) error {
	var e envelopeJSON
	if err := json.Unmarshal(data, &e); err != nil {
		return err
	}
	var ev arc.Event
	if err := arc.Unmarshal(e.Event, &ev); err != nil {
		return err
	}
	first, err := arc.ParseTimestamp(e.FirstFailedAt)
	if err != nil && e.FirstFailedAt != "" {
		return err
	}
	last, err := arc.ParseTimestamp(e.LastFailedAt)
	if err != nil && e.LastFailedAt != "" {
		return err
	}
	*d = DeadLetteredEvent{Event: ev, Error: e.Error, Attempts: e.Attempts, FirstFailedAt: first, LastFailedAt: last,
		HandlerName: e.HandlerName, Reason: e.Reason, ErrorType: e.ErrorType, SourceTopic: e.SourceTopic,
		Pattern: e.Pattern, ConsumerGroup: e.ConsumerGroup, OriginalID: e.OriginalID, Host: e.Host, Raw: e.Raw}
	return nil
}
