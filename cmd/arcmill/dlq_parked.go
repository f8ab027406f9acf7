package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
)

// parkedDLQ runs dlq parked, release and discard: the sequences a
// middleware.Sequencer parked behind dead letters, in the Redis of
// --redis.
func parkedDLQ(ctx context.Context, e env, o dlqOpts, p printer, sub string, rest []string) error {
	if o.useOutbox || o.natsURL != "" {
		return usageErr("%s reads the Sequencers' Redis; --outbox and --nats do not apply", sub)
	}
	client, err := o.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	admin := middleware.SequenceAdmin{Client: client, Prefix: o.seqPrefix}
	f := middleware.ParkedFilter{Group: o.group, Handler: o.handler}
	if sub == "parked" {
		return listParked(ctx, e, p, admin, f)
	}
	f.Key = rest[0]
	var n int64
	if sub == "release" {
		n, err = admin.Release(ctx, f)
	} else {
		n, err = admin.Discard(ctx, f)
	}
	if errors.Is(err, middleware.ErrNotParked) {
		return fmt.Errorf("%w: %v", errNotFound, err)
	}
	if errors.Is(err, middleware.ErrAmbiguousSequence) {
		return usageErr("%v: give --handler (and --group)", err)
	}
	if err != nil {
		return err
	}
	verb := map[string]string{"release": "released", "discard": "discarded"}[sub]
	return p.value(map[string]any{"key": f.Key, verb: n}, func(w io.Writer) {
		if sub == "release" {
			fmt.Fprintf(w, "released %q: %d parked event(s) run next, in order\n", f.Key, n)
		} else {
			fmt.Fprintf(w, "discarded %q: %d parked event(s) dropped\n", f.Key, n)
		}
	})
}

func listParked(ctx context.Context, e env, p printer, admin middleware.SequenceAdmin, f middleware.ParkedFilter) error {
	seqs, err := admin.List(ctx, f)
	if err != nil {
		return err
	}
	var events int64
	for _, s := range seqs {
		events += s.Parked
		err := p.value(s, func(w io.Writer) {
			fmt.Fprintf(w, "%-20s handler=%s group=%s %s parked=%d since=%s head=%s event=%s entry=%s reason=%s error=%q\n",
				s.Key, s.Handler, s.Group, s.Status, s.Parked, arc.FormatTimestamp(s.Since), s.Head.Type, s.Head.EventID,
				s.Head.OriginalID, s.Head.Reason, s.Head.Error)
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "%d parked key(s), %d event(s) held; redrive a head (dlq redrive --id EVENT) to release its key after it\n",
		len(seqs), events)
	return nil
}
