package natsjs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// maxDeliveriesSubject is where the server announces that the consumer
// gave up on a message.
func maxDeliveriesSubject(stream, durable string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + durable
}

// maxDeliveriesAdvisory is io.nats.jetstream.advisory.v1.max_deliver.
type maxDeliveriesAdvisory struct {
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Time       time.Time `json:"timestamp"`
}

// maxDeliveries writes the dead letter of a message the consumer gave up
// on. Every member of the group hears the advisory; the dead letter's
// Nats-Msg-Id (stream, consumer and sequence) lets JetStream store one.
func (c *consumption) maxDeliveries(m *nats.Msg) {
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
		c.s.cfg.Logger.Error("Unreadable max-deliveries advisory", err, c.logFields)
		return
	}
	fields := c.logFields.Add(watermill.LogFields{"stream_seq": a.StreamSeq, "deliveries": a.Deliveries})
	raw, err := c.s.js.GetMsg(c.stream, a.StreamSeq)
	if err != nil {
		c.s.cfg.Logger.Error("Message given up by JetStream is gone; no dead letter", err, fields)
		return
	}
	msg := toMessage(raw.Header, raw.Data, raw.Sequence)
	now := time.Now().UTC()
	dl := middleware.DeadLetteredEvent{Reason: middleware.ReasonRetryExhausted, Attempts: int(a.Deliveries),
		FirstFailedAt: raw.Time.UTC(), LastFailedAt: now, SourceTopic: raw.Subject, Pattern: c.topic,
		ConsumerGroup: c.s.cfg.Group, OriginalID: strconv.FormatUint(raw.Sequence, 10), Host: c.s.host,
		ErrorType: "natsjs.MaxDeliver",
		Error: middleware.ErrorInfo{Message: fmt.Sprintf("JetStream gave up after %d deliveries (MaxDeliver) on consumer %s",
			a.Deliveries, c.durable)}}
	if ev, err := arc.FromMessage(msg); err == nil {
		dl.Event = ev
	} else {
		id := middleware.ReadableEventID(msg.Payload)
		if id == "" {
			id = dl.OriginalID
		}
		dl.Event, dl.Raw, dl.Reason = middleware.PlaceholderEvent(id, now), middleware.NewRawMessage(msg), middleware.ReasonMalformed
	}
	id := "arcmill-dlq." + c.stream + "." + c.durable + "." + dl.OriginalID
	if err := c.s.publishDeadLetter(id, dl); err != nil {
		c.s.cfg.Logger.Error("Dead letter not written; the message stays in the stream, undelivered", err, fields)
		return
	}
	// Error, not Info, as middleware.DeadLetter logs: a dead letter is an
	// event the service gave up on, which someone must look at (Watermill's
	// logger has no Warn level).
	c.s.cfg.Logger.Error("Message given up by JetStream dead-lettered", errors.New(dl.Error.Message), fields.Add(watermill.LogFields{
		"dead_letter_subject": c.s.cfg.DeadLetterSubject, "reason": dl.Reason, "message_uuid": dl.Event.Meta.ID,
		"event_type": dl.Event.Type, "attempts": dl.Attempts}))
}

// publishDeadLetter stores dl on DeadLetterSubject, with msgID as its
// Nats-Msg-Id and the metadata middleware.DeadLetter gives dead letters.
func (s *Subscriber) publishDeadLetter(msgID string, dl middleware.DeadLetteredEvent) error {
	payload, err := dl.MarshalArc()
	if err != nil {
		return err
	}
	out := message.NewMessage(watermill.NewUUID(), payload)
	for k, v := range map[string]string{
		middleware.MetadataDLQReason: dl.Reason, middleware.MetadataDLQError: dl.Error.Message,
		middleware.MetadataDLQErrorType: dl.ErrorType, middleware.MetadataDLQAttempts: strconv.Itoa(dl.Attempts),
		middleware.MetadataDLQFirstFailedAt: arc.FormatTimestamp(dl.FirstFailedAt),
		middleware.MetadataDLQLastFailedAt:  arc.FormatTimestamp(dl.LastFailedAt),
		middleware.MetadataDLQSourceTopic:   dl.SourceTopic, middleware.MetadataDLQPattern: dl.Pattern,
		middleware.MetadataDLQConsumerGroup: dl.ConsumerGroup, middleware.MetadataDLQOriginalID: dl.OriginalID,
		middleware.MetadataDLQHost: dl.Host, arc.MetadataCorrelationID: dl.Event.Meta.CorrelationID,
		arc.MetadataCausationID: dl.Event.Meta.ID,
	} {
		if v != "" {
			out.Metadata.Set(k, v)
		}
	}
	nm, err := (&wnats.NATSMarshaler{}).Marshal(s.cfg.DeadLetterSubject, out)
	if err != nil {
		return err
	}
	_, err = s.js.PublishMsg(nm, nats.MsgId(msgID))
	return err
}

// DeadLetter is one dead letter stored in a NATS dead-letter stream.
type DeadLetter struct {
	// Seq is the dead letter's own sequence in the dead-letter stream.
	Seq     uint64
	Subject string
	// Time is when the dead letter was stored.
	Time time.Time
	// Envelope is the DeadLetteredEvent.
	Envelope middleware.DeadLetteredEvent
}

// ReadDeadLetter reads one message of a dead-letter stream, as
// js.GetMsg returns it.
func ReadDeadLetter(m *nats.RawStreamMsg) (DeadLetter, error) {
	out := DeadLetter{Seq: m.Sequence, Subject: m.Subject, Time: m.Time}
	if err := json.Unmarshal(m.Data, &out.Envelope); err != nil {
		return out, fmt.Errorf("natsjs: dead letter %d on %s: %w", m.Sequence, m.Subject, err)
	}
	return out, nil
}

// ReadDeadLetters returns up to limit dead letters of stream with a
// sequence above after, oldest first (after 0 starts at the beginning; limit
// 0 means no limit). A message that is no dead letter is returned with its
// error joined into the result's error, and the rest are still read.
func ReadDeadLetters(js nats.JetStreamManager, stream string, after uint64, limit int) ([]DeadLetter, error) {
	info, err := js.StreamInfo(stream)
	if err != nil {
		return nil, fmt.Errorf("natsjs: dead-letter stream %s: %w", stream, err)
	}
	var out []DeadLetter
	var errs []error
	for seq := max(after+1, info.State.FirstSeq); seq <= info.State.LastSeq && (limit == 0 || len(out) < limit); seq++ {
		m, err := js.GetMsg(stream, seq)
		if errors.Is(err, nats.ErrMsgNotFound) {
			continue // deleted or purged
		}
		if err != nil {
			return out, fmt.Errorf("natsjs: dead letter %d of %s: %w", seq, stream, err)
		}
		dl, err := ReadDeadLetter(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, dl)
	}
	return out, errors.Join(errs...)
}

// hostname names this process's host in dead letters; best effort.
func hostname() string {
	h, _ := os.Hostname()
	return h
}
