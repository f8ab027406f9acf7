package inbox

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

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
// column is replaced by its SHA-256 ("id#<hex>"), and so is an id the
// column cannot hold or tell apart as it is (see KeyByID). It returns ""
// for an event with neither.
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
//
// The key is "id:" and the id, or "id#" and the SHA-256 of the id's bytes
// in hex where the id is too long for the column or is no text that every
// dialect stores and compares as it is: an id with invalid UTF-8 (a lone
// surrogate's WTF-8 bytes included, see arc.Meta.ID), which PostgreSQL
// refuses and MariaDB refuses or turns into '?'; an id with NUL, which
// PostgreSQL refuses; an id ending in a space, which MariaDB's collations
// take for the same id without it. Distinct ids never share a key.
func KeyByID(ev arc.Event) string {
	id := ev.Meta.ID
	switch {
	case id == "":
		return ""
	case len(id)+3 > MaxKeyLength || !plainText(id):
		sum := sha256.Sum256([]byte(id))
		return "id#" + hex.EncodeToString(sum[:])
	}
	return "id:" + id
}

// plainText reports whether every dialect's text column stores s as it is
// and compares it only equal to itself: valid UTF-8, no NUL, no trailing
// space (MariaDB's PAD SPACE collations ignore trailing spaces).
func plainText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && !strings.HasSuffix(s, " ")
}

// columnText returns s for the event_id and event_type columns, which are
// for operators only (the key deduplicates): invalid UTF-8 and NUL become
// U+FFFD, so that no dialect refuses the record.
func columnText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\ufffd"), "\x00", "\ufffd")
}
