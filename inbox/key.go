package inbox

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/arcmill/arcmill/arc"
)

// MaxKeyLength bounds a dedupe key, in bytes: the key is indexed. Key and
// KeyByID never exceed it.
const MaxKeyLength = 255

// MaxConsumerLength bounds a consumer name, in bytes.
const MaxConsumerLength = 255

// Key is the default dedupe key (Config.Key). An event with an idempotency
// key is deduplicated on arc.DedupeKey, prefixed "k:": a true repeat (the
// same request published again under a new meta.id, as a retried producer
// does) is recognised, while a child never collides with its parent or
// with a sibling of another type or payload, exactly as the outbox
// deduplicates. An event without one is deduplicated on its meta.id,
// prefixed "id:": a redelivery of the same event. An id too long for the
// column is replaced by its SHA-256 ("id#<hex>"). It returns "" for an
// event with neither.
func Key(ev arc.Event) string {
	if k := arc.DedupeKey(ev); k != "" {
		return "k:" + k
	}
	return KeyByID(ev)
}

// KeyByID deduplicates on meta.id only: redeliveries of one event are
// skipped, but a producer's retry under a new id is applied again. Use it
// as Config.Key where idempotency keys are reused on purpose across
// distinct events.
func KeyByID(ev arc.Event) string {
	id := ev.Meta.ID
	switch {
	case id == "":
		return ""
	case len(id)+3 > MaxKeyLength:
		sum := sha256.Sum256([]byte(id))
		return "id#" + hex.EncodeToString(sum[:])
	}
	return "id:" + id
}
