package redisstream

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Publishers on many goroutines share the pooled batches (their buffers
// reused call after call, grown within a call by events of every size,
// handed-over bytes mixed in, refused calls in between): every entry
// holds its own message's type and Arc JSON, as arc.Marshal writes it.
func TestPublisher_PooledBatchesKeepEachEntrysBytes(t *testing.T) {
	t.Parallel()
	client, pub := passThroughClient(t)
	const goroutines, calls = 4, 12
	var wg sync.WaitGroup
	streams := make([]string, goroutines)
	want := make([][][]string, goroutines)
	for g := range goroutines {
		streams[g] = newStream(t, client)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				n := 1 + (g*calls+c)%40
				msgs := make([]*message.Message, n)
				for i := range msgs {
					size := (i * 37 * (c + 1)) % 3000 // some calls grow the buffer a few times
					ev, err := arc.NewEvent(fmt.Sprintf("t.%d.%d", g, c), map[string]any{"i": i, "pad": strings.Repeat("x", size)},
						arc.Meta{UserID: fmt.Sprintf("u-%d-%d-%d", g, c, i)})
					if !assert.NoError(t, err) {
						return
					}
					data, err := arc.Marshal(ev)
					require.NoError(t, err)
					msgs[i], err = arc.ToMessage(ev)
					require.NoError(t, err)
					if i%3 == 1 {
						AttachArcJSON(msgs[i], data)
					}
					want[g] = append(want[g], []string{FieldType, ev.Type, FieldData, string(data)})
				}
				if !assert.NoError(t, pub.Publish(streams[g], msgs...)) {
					return
				}
				refused := append(msgs[:n:n], message.NewMessage("x", []byte("{")))
				assert.ErrorIs(t, pub.Publish(streams[g], refused...), arc.ErrMalformedEvent)
			}
		}()
	}
	wg.Wait()
	for g, stream := range streams {
		got := entries(t, client, stream)
		require.Len(t, got, len(want[g]))
		for i := range got {
			require.Equal(t, want[g][i], got[i], "goroutine %d, entry %d", g, i)
		}
	}
}
