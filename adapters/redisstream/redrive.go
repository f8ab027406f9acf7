package redisstream

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// redriveScript moves one dead letter: if it is still there, XADD its
// fields (ARGV[3..]) to KEYS[1], trimmed to MAXLEN ~ ARGV[2] unless that is
// 0, and XDEL it from KEYS[2], atomically. A failing XADD aborts the script
// before the XDEL (a MULTI would run the XDEL anyway and lose the event).
// Both keys must live on one node (one hash slot on a cluster).
var redriveScript = redis.NewScript(`
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then return 0 end
local args = {KEYS[1]}
if ARGV[2] ~= '0' then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[2])
end
table.insert(args, '*')
for i = 3, #ARGV do table.insert(args, ARGV[i]) end
redis.call('XADD', unpack(args))
redis.call('XDEL', KEYS[2], ARGV[1])
return 1`)

// RedriveEntry atomically moves dead letter id of stream dlq to stream
// target as a new entry with fields (names and values alternating, as
// RedriveFields gives them), trimming target to MAXLEN ~ maxLen unless
// maxLen is 0. It reports false, and changes nothing, when the dead letter
// is no longer there: a redrive interrupted at any point and run again, or
// two redrives running at once, move each dead letter once. Both keys must
// live on one node: on a Cluster client, keys in different hash slots are
// refused with ErrCrossSlot before anything runs (Partitions put each
// partition and its dead letters in one slot).
func RedriveEntry(ctx context.Context, client redis.UniversalClient, dlq, id, target string, maxLen int64,
	fields []string) (bool, error) {
	if len(fields) == 0 || len(fields)%2 != 0 {
		return false, fmt.Errorf("%w: RedriveEntry wants field names and values in pairs, got %d strings",
			ErrInvalidConfig, len(fields))
	}
	if maxLen < 0 {
		return false, fmt.Errorf("%w: RedriveEntry maxLen is %d: must not be negative", ErrInvalidConfig, maxLen)
	}
	if err := sameSlot(client, "the redrive moves the dead letter with one script, which one node runs atomically",
		target, dlq); err != nil {
		return false, err
	}
	args := make([]any, 0, 2+len(fields))
	args = append(args, id, strconv.FormatInt(maxLen, 10))
	for _, f := range fields {
		args = append(args, f)
	}
	n, err := redriveScript.Run(ctx, client, []string{target, dlq}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("redisstream: redriving %s of %s to %s: %w", id, dlq, target, err)
	}
	return n == 1, nil
}

// RedriveFields is what dead letter dl is put back as: an entry that could
// not be read, its original fields exactly; an event, Arc's layout (type,
// data). It reports false when there is nothing faithful to put back: the
// dead letter could not be read (readErr), kept only an excerpt of an
// oversized entry, or holds a raw message rather than an event.
func RedriveFields(dl DeadLetterEntry, readErr error) ([]string, bool) {
	if dl.Truncated > 0 {
		return nil, false // only an excerpt was kept: putting it back would forge an entry
	}
	if len(dl.RawFields) > 0 {
		return dl.RawFields, true
	}
	if readErr != nil || dl.Envelope.Raw != nil || dl.Envelope.Event.Type == "" {
		return nil, false
	}
	data, err := arc.Marshal(dl.Envelope.Event)
	if err != nil {
		return nil, false
	}
	return []string{FieldType, dl.Envelope.Event.Type, FieldData, string(data)}, true
}
