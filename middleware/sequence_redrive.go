package middleware

import (
	"fmt"
	"strconv"
	"strings"
)

// redriveMark joins an event id and the dead letter's sequence in the UUID
// a redrive over JetStream gives the event again (see RedriveUUID).
const redriveMark = ".redrive."

// RedriveUUID is the message UUID `arcmill dlq redrive --nats` gives the
// event eventID redriven from dead letter seq: a UUID of its own, so that
// JetStream's de-duplication (Nats-Msg-Id is the UUID) does not drop it as
// the event's first publish, and one a Sequencer still reads as eventID
// (RedrivenEventID), so that a redriven head releases its sequence.
func RedriveUUID(eventID string, seq uint64) string {
	return fmt.Sprintf("%s%s%d", eventID, redriveMark, seq)
}

// RedrivenEventID returns the event id in a message UUID: uuid without
// the suffixes RedriveUUID added (a head redriven, dead-lettered again and
// redriven again has two), uuid itself when it has none. A Sequencer
// recognises a sequence's head by it.
func RedrivenEventID(uuid string) string {
	for {
		i := strings.LastIndex(uuid, redriveMark)
		if i <= 0 {
			return uuid
		}
		seq := uuid[i+len(redriveMark):]
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return uuid
		}
		uuid = uuid[:i]
	}
}
