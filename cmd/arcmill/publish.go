package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/arcmill/arcmill/adapters/redispubsub"
	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
)

const publishUsage = `Usage: arcmill publish <type> [payload-json] [flags]

Publish one Arc event, built as Arc's createEvent builds it (a new id and
timestamp; meta from the flags), to a stream in Arc's layout or, with
--channel, to Arc's Pub/Sub channel <prefix>:<type>. Without a payload
argument the payload is read from stdin until it closes (unless stdin is a
terminal: then the event has no payload; in scripts, pass the payload or
</dev/null). The event is printed as Arc JSON, on one line.

Examples:
  arcmill publish order.created '{"orderId":"o-1","total":99}'
  echo '{"orderId":"o-1"}' | arcmill publish order.created --correlation-id req-7
  arcmill publish order.created '{}' --meta tenantTier='"gold"' --stream shop:events
  arcmill publish cache.flush --channel
`

// metaFlags are repeated --meta key=json flags.
type metaFlags map[string]json.RawMessage

func (m metaFlags) String() string { return "" }

func (m metaFlags) Set(v string) error {
	k, raw, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("--meta wants key=json, got %q", v)
	}
	if !json.Valid([]byte(raw)) {
		return fmt.Errorf("--meta %s: %q is not JSON (quote strings: %s='\"text\"')", k, raw, k)
	}
	m[k] = json.RawMessage(raw)
	return nil
}

func publishCmd(ctx context.Context, e env, args []string) error {
	var (
		rf                 redisFlags
		stream, prefix, id string
		channel            bool
		schemaVersion      int
		meta               arc.Meta
		extra              = metaFlags{}
	)
	fs := newFlags(e, "publish", publishUsage+redisHelp)
	rf.register(fs)
	fs.StringVar(&stream, "stream", redisstream.ArcStream, "`stream` to add the event to")
	fs.BoolVar(&channel, "channel", false, "publish on Redis Pub/Sub instead of a stream")
	fs.StringVar(&prefix, "prefix", redispubsub.ArcPrefix, "Pub/Sub channel `prefix` (with --channel)")
	fs.StringVar(&id, "id", "", "meta.id (default: a new UUID)")
	fs.IntVar(&schemaVersion, "schema-version", 0, "meta.schemaVersion")
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"correlation-id", &meta.CorrelationID}, {"causation-id", &meta.CausationID},
		{"partition-key", &meta.PartitionKey}, {"source", &meta.Source}, {"idempotency-key", &meta.IdempotencyKey},
		{"resource", &meta.Resource}, {"resource-id", &meta.ResourceID}, {"user-id", &meta.UserID},
		{"organization-id", &meta.OrganizationID},
	} {
		fs.StringVar(f.dst, f.name, "", "meta."+camel(f.name))
	}
	fs.Var(extra, "meta", "other meta `key=json` (repeatable), kept as Arc's extra meta keys")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return usageErr("want <type> [payload-json], got %d arguments", len(pos))
	}
	if err := arc.ValidateType(pos[0]); err != nil {
		return usageErr("%v", err)
	}
	var payload []byte
	switch {
	case len(pos) == 2:
		payload = []byte(pos[1])
	case !isTerminal(e.stdin):
		if payload, err = io.ReadAll(e.stdin); err != nil {
			return fmt.Errorf("reading the payload from stdin: %w", err)
		}
		payload = []byte(strings.TrimSpace(string(payload)))
	}
	if len(payload) > 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, payload); err != nil {
			return usageErr("the payload is not JSON (%v): %.80s", err, payload)
		}
		payload = compact.Bytes() // one line on the wire and in every tail
	}
	meta.ID, meta.SchemaVersion = id, schemaVersion
	if len(extra) > 0 {
		meta.Extra = extra
	}
	var p any
	if len(payload) > 0 {
		p = json.RawMessage(payload)
	}
	ev, err := arc.NewEvent(pos[0], p, meta)
	if err != nil {
		return usageErr("%v", err) // the flags or payload are not a valid event
	}
	msg, err := arc.ToMessage(ev)
	if err != nil {
		return err
	}
	client, err := rf.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	if channel {
		ps, err := redispubsub.New(redispubsub.Config{Client: client})
		if err != nil {
			return err
		}
		receivers, err := ps.PublishCount(prefix, msg)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "published on %s:%s to %d subscriber(s)\n", prefix, ev.Type, receivers[0])
	} else {
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client})
		if err != nil {
			return err
		}
		msg.SetContext(ctx)
		if err := pub.Publish(stream, msg); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "published to %s\n", stream)
	}
	wire, err := arc.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", wire)
	return err
}

// camel turns "correlation-id" into "correlationId".
func camel(s string) string {
	parts := strings.Split(s, "-")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}
