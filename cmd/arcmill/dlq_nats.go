package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/arcmill/arcmill/adapters/natsjs"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// Defaults of the NATS dead-letter flags.
const (
	envNatsURL           = "ARCMILL_NATS_URL"
	defaultNatsDLQStream = "ARC_DEAD_LETTERS"
	unknownEventType     = "<unknown>"
)

// natsDLQ runs a dlq subcommand on a NATS dead-letter stream (the one
// natsjs stores dead letters in).
func natsDLQ(ctx context.Context, e env, o dlqOpts, p printer, sub string, rest []string) error {
	nc, err := nats.Connect(o.natsURL, nats.Name("arcmill"))
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s: %w", o.natsURL, err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.Context(ctx))
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", o.natsURL, err)
	}
	all, err := natsjs.ReadDeadLetters(js, o.natsStream, 0, 0)
	if errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("%w: no NATS stream %q (dead letters go to the stream holding %s.<group>)", errNotFound,
			o.natsStream, natsjs.DefaultDeadLetterPrefix)
	}
	if err != nil && len(all) == 0 {
		return err
	}
	var matched []natsjs.DeadLetter
	for _, dl := range all {
		seq := strconv.FormatUint(dl.Seq, 10)
		if sub == "show" {
			if rest[0] == seq || rest[0] == dl.Envelope.Event.Meta.ID {
				matched = append(matched, dl)
			}
			continue
		}
		if len(o.types) > 0 && !slices.Contains(o.types, dl.Envelope.Event.Type) {
			continue
		}
		if len(o.ids) > 0 && !slices.Contains(o.ids, dl.Envelope.Event.Meta.ID) && !slices.Contains(o.ids, seq) {
			continue
		}
		matched = append(matched, dl)
	}
	row := func(dl natsjs.DeadLetter) map[string]any {
		env := dl.Envelope
		return map[string]any{"seq": dl.Seq, "subject": dl.Subject, "type": env.Event.Type, "eventId": env.Event.Meta.ID,
			"attempts": env.Attempts, "reason": env.Reason, "error": env.Error.Message, "handler": env.HandlerName,
			"group": env.ConsumerGroup}
	}
	switch sub {
	case "list":
		limit := o.limit
		if limit == 0 {
			limit = 100
		}
		for _, dl := range matched[:min(len(matched), limit)] {
			if err := p.value(row(dl), func(w io.Writer) {
				fmt.Fprintf(w, "%-6d %-24s event=%s  attempts=%d  reason=%s  error=%q\n", dl.Seq, dl.Envelope.Event.Type,
					dl.Envelope.Event.Meta.ID, dl.Envelope.Attempts, dl.Envelope.Reason, dl.Envelope.Error.Message)
			}); err != nil {
				return err
			}
		}
		fmt.Fprintf(e.stderr, "showing %d of %d dead letter(s) on %s\n", min(len(matched), limit), len(matched), o.natsStream)
		return nil
	case "show":
		if len(matched) == 0 {
			return fmt.Errorf("%w: no dead letter %q on %s", errNotFound, rest[0], o.natsStream)
		}
		dl := matched[0]
		return p.value(row(dl), func(w io.Writer) {
			fmt.Fprintf(w, "seq:       %d\nsubject:   %s\ntype:      %s\nevent:     %s\nattempts:  %d\nreason:    %s\n"+
				"error:     %s\nhandler:   %s\ngroup:     %s\n", dl.Seq, dl.Subject, dl.Envelope.Event.Type,
				dl.Envelope.Event.Meta.ID, dl.Envelope.Attempts, dl.Envelope.Reason, dl.Envelope.Error.Message,
				dl.Envelope.HandlerName, dl.Envelope.ConsumerGroup)
		})
	case "purge":
		n := 0
		for _, dl := range matched {
			if o.limit > 0 && n >= o.limit {
				break
			}
			if err := js.DeleteMsg(o.natsStream, dl.Seq); err != nil {
				return fmt.Errorf("deleting dead letter %d: %w", dl.Seq, err)
			}
			n++
		}
		return p.value(map[string]any{"purged": n, "stream": o.natsStream}, func(w io.Writer) {
			fmt.Fprintf(w, "purged %d dead letter(s) from %s\n", n, o.natsStream)
		})
	default: // redrive
		return natsRedrive(e, nc, js, o, matched)
	}
}

// natsRedrive publishes each dead letter's event again, under a message id
// of its own (JetStream's duplicate window would drop the event's own id),
// then deletes the dead letter. Interrupted and run again within the
// window, it publishes nothing twice: the redrive id is the same.
func natsRedrive(e env, nc *nats.Conn, js nats.JetStreamManager, o dlqOpts, matched []natsjs.DeadLetter) error {
	pub, err := natsjs.NewPublisher(natsjs.PublisherConfig{Conn: nc, Prefix: o.natsPrefix})
	if err != nil {
		return err
	}
	moved, skipped := 0, 0
	for _, dl := range matched {
		if o.limit > 0 && moved >= o.limit {
			break
		}
		ev := dl.Envelope.Event
		if ev.Type == "" || ev.Type == unknownEventType || dl.Envelope.Raw != nil {
			skipped++ // not an event: nothing to replay
			continue
		}
		msg, err := arc.ToMessage(ev)
		if err != nil {
			skipped++
			continue
		}
		// A UUID of its own (JetStream de-duplicates by it) that a Sequencer
		// still reads as the event's id, so a redriven head releases its key.
		msg.UUID = middleware.RedriveUUID(ev.Meta.ID, dl.Seq)
		if err := pub.Publish(o.natsPrefix, msg); err != nil {
			return fmt.Errorf("redriving dead letter %d: %w", dl.Seq, err)
		}
		if err := js.DeleteMsg(o.natsStream, dl.Seq); err != nil {
			return fmt.Errorf("redriven, but deleting dead letter %d failed (run again: the republish is deduplicated): %w", dl.Seq, err)
		}
		moved++
	}
	fmt.Fprintf(e.stderr, "redriven %d dead letter(s) to %s.<type>; skipped %d (not events)\n", moved, o.natsPrefix, skipped)
	if moved == 0 && len(matched) == 0 {
		return fmt.Errorf("%w: no dead letter matched on %s", errNotFound, o.natsStream)
	}
	return nil
}
