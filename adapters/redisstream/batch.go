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
	spans   []span // where each entry's data lies in buf
	buf     []byte
}

// span is an entry's data in batch.buf; from < 0: not in buf (handed
// over, or written by another Marshaller).
type span struct{ from, to int }

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
		b.spans = make([]span, n)
	}
	b.args, b.argv, b.entries, b.spans = b.args[:n], b.argv[:n], b.entries[:n], b.spans[:n]
	b.buf = b.buf[:0]
	return b
}

// release hands b back for a later call. Its entries must not be used
// after: their data point into b.buf.
func (b *batch) release() {
	if b == nil {
		return
	}
	// Drop what the entries point to (messages' strings, Marshal's maps).
	clear(b.args)
	clear(b.argv)
	clear(b.entries)
	if cap(b.buf) > maxPooledBuf {
		b.buf = nil
	}
	batchPool.Put(b)
}

// encode writes msg's entry, Arc's layout, into b's entry i: the type,
// and as data the Arc JSON handed over with msg (AttachArcJSON) or else
// msg's event encoded into b.buf (arc.AppendMessageJSON). It returns the
// data as it is for now (checkSize reads it; finish points it at b.buf's
// final memory), and the error of a message that is not an Arc event.
func (b *batch) encode(m Marshaller, i int, msg *message.Message) (string, error) {
	e := &b.entries[i]
	e.typ = msg.Metadata[arc.MetadataType]
	if data, ok := arc.AttachedJSON(msg); ok {
		e.data, b.spans[i] = data, span{-1, -1}
	} else {
		from := len(b.buf)
		buf, err := arc.AppendMessageJSON(b.buf, msg)
		if err != nil {
			return "", notArcEvent(msg, err)
		}
		b.buf, b.spans[i] = buf, span{from, len(buf)}
		e.data = unsafe.String(&buf[from], len(buf)-from)
	}
	e.pairs = [4]any{FieldType, &e.typ, FieldData, &e.data}
	values := e.pairs[:]
	if m.WatermillUUID {
		values = append(values, wredis.UUIDHeaderKey, msg.UUID)
	}
	b.argv[i].Values = values
	return e.data, nil
}

// finish points the encoded entries' data at b.buf as it ends up (it may
// have moved as it grew), and fills in each XADD.
func (b *batch) finish(topic string, maxLen int64) []*redis.XAddArgs {
	for i := range b.argv {
		if s := b.spans[i]; s.from >= 0 {
			b.entries[i].data = unsafe.String(&b.buf[s.from], s.to-s.from)
		}
		a := &b.argv[i]
		a.Stream, a.ID = topic, "*"
		if maxLen > 0 {
			a.MaxLen, a.Approx = maxLen, true
		}
		b.args[i] = a
	}
	return b.args
}
