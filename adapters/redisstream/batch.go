package redisstream

import (
	"sync"
	"unsafe"

	wredis "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/arcmill/arcmill/arc"
)

// batch is the XADDs of one Publish call, built, encoded and checked
// before anything is sent. Its memory (the XAddArgs, the entries' fields
// and one buffer holding the Arc JSON of every encoded message) comes
// from batchPool and goes back to it once the call's entries are written,
// so a Publish allocates nothing per message for itself: go-redis holds
// the arguments only until its pipeline returns.
type batch struct {
	args    []*redis.XAddArgs
	argv    []redis.XAddArgs
	entries []arcEntry
	// values[i] is entries[i].pairs[:] as an XAddArgs.Values: boxed once
	// for the pool's life rather than once a message (an allocation each).
	values []any
	// buf holds the encoded entries' data. When it grows, the entries
	// encoded before keep pointing into the old array, which nothing
	// writes again.
	buf []byte
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// maxPooledBuf bounds the buffer a batch keeps in the pool: a call with
// huge events should not pin their size in memory for good.
const maxPooledBuf = 1 << 20

// newBatch returns an empty batch with room for n entries.
func newBatch(n int) *batch {
	b := batchPool.Get().(*batch)
	if cap(b.args) < n {
		b.args = make([]*redis.XAddArgs, n)
		b.argv = make([]redis.XAddArgs, n)
		b.entries = make([]arcEntry, n)
		b.values = make([]any, n)
		for i := range b.entries {
			e := &b.entries[i]
			e.pairs = [4]any{FieldType, &e.typ, FieldData, &e.data}
			b.values[i] = e.pairs[:]
		}
	}
	b.args, b.argv, b.entries = b.args[:n], b.argv[:n], b.entries[:n]
	b.buf = b.buf[:0]
	return b
}

// release hands b back for a later call. Its entries must not be used
// after: their data point into b.buf.
func (b *batch) release() {
	if b == nil {
		return
	}
	// Drop what the entries point to (messages' strings, Marshal's maps);
	// the pairs point into the batch itself.
	clear(b.args)
	clear(b.argv)
	for i := range b.entries {
		b.entries[i].typ, b.entries[i].data = "", ""
	}
	if cap(b.buf) > maxPooledBuf {
		b.buf = nil
	}
	batchPool.Put(b)
}

// encode writes msg's entry, Arc's layout, into b's entry i: the type,
// and as data the Arc JSON handed over with msg (AttachArcJSON) or else
// msg's event encoded into b.buf (arc.AppendMessageJSON). It returns the
// data, or the error of a message that is not an Arc event.
func (b *batch) encode(m Marshaller, i int, msg *message.Message) (string, error) {
	e := &b.entries[i]
	if data, ok := arc.AttachedJSON(msg); ok {
		e.data = data
	} else {
		from := len(b.buf)
		buf, err := arc.AppendMessageJSON(b.buf, msg)
		if err != nil {
			return "", notArcEvent(msg, err)
		}
		// Read in place, not copied: the bytes are not written again
		// until the batch is released.
		b.buf, e.data = buf, unsafe.String(&buf[from], len(buf)-from)
	}
	e.typ = msg.Metadata[arc.MetadataType] // after the encode read the map: in cache
	if m.WatermillUUID {
		b.argv[i].Values = append(e.pairs[:], wredis.UUIDHeaderKey, msg.UUID)
	} else {
		b.argv[i].Values = b.values[i]
	}
	return e.data, nil
}

// finish fills in each XADD but its values.
func (b *batch) finish(topic string, maxLen int64) {
	for i := range b.argv {
		a := &b.argv[i]
		a.Stream, a.ID = topic, "*"
		if maxLen > 0 {
			a.MaxLen, a.Approx = maxLen, true
		}
		b.args[i] = a
	}
}
