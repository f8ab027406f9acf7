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
		f.Offset, f.Limit = o.offset, o.limit
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

// listParked prints the page of parked keys f selects (every key without
// a limit) as it reads them, a chunk at a time: memory stays bounded
// however many keys are parked.
func listParked(ctx context.Context, e env, p printer, admin middleware.SequenceAdmin, f middleware.ParkedFilter) error {
	var shown, events int64
	total, err := admin.Each(ctx, f, func(s middleware.ParkedSequence) error {
		shown++
		events += s.Parked
		return p.value(s, func(w io.Writer) {
			fmt.Fprintf(w, "%-20s handler=%s group=%s %s parked=%d since=%s head=%s event=%s entry=%s reason=%s error=%q\n",
				s.Key, s.Handler, s.Group, s.Status, s.Parked, arc.FormatTimestamp(s.Since), s.Head.Type, s.Head.EventID,
				s.Head.OriginalID, s.Head.Reason, s.Head.Error)
		})
	})
	if err != nil {
		return err
	}
	const hint = "redrive a head (dlq redrive --id EVENT) to release its key after it"
	switch {
	case f.Offset == 0 && shown == total:
		fmt.Fprintf(e.stderr, "%d parked key(s), %d event(s) held; %s\n", total, events, hint)
	case shown == 0:
		fmt.Fprintf(e.stderr, "none of %d parked key(s) shown: --offset %d is past them\n", total, f.Offset)
	default:
		fmt.Fprintf(e.stderr, "keys %d-%d of %d parked key(s) shown, %d event(s) held by those; %s\n",
			f.Offset+1, int64(f.Offset)+shown, total, events, hint)
	}
	return nil
}
