package outbox

import (
	"encoding/hex"
	"strings"
)

// A Redis Cluster keeps keys that must meet in one command (a stream and
// its dead-letter stream, for redrive's script) in one hash slot only when
// they share a hash tag: {orders}:events and {orders}:events:dlq. So the
// outbox takes topics with braces. watermill-sql's publisher, which Write
// goes through, refuses them (its topics can be table names; the outbox's
// are a column), so such a topic crosses it encoded and InsertQuery stores
// it as written.

// wsqlTopicPrefix starts a topic encoded for watermill-sql: the prefix,
// then the topic's bytes in hex. A topic that itself starts with the
// prefix is encoded too, so decoding is never ambiguous.
const wsqlTopicPrefix = "$arcmill-hex:"

// wsqlTopic returns topic in a form watermill-sql's publisher accepts.
func wsqlTopic(topic string) string {
	if strings.ContainsAny(topic, "{}") || strings.HasPrefix(topic, wsqlTopicPrefix) {
		return wsqlTopicPrefix + hex.EncodeToString([]byte(topic))
	}
	return topic
}

// storedTopic reverses wsqlTopic. A prefix followed by something that is
// not hex is returned as it came, for validateTopic to judge.
func storedTopic(topic string) string {
	if rest, ok := strings.CutPrefix(topic, wsqlTopicPrefix); ok {
		if b, err := hex.DecodeString(rest); err == nil {
			return string(b)
		}
	}
	return topic
}
