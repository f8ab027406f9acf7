package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// TestSequenceDrainReachesEveryReleasedKey: with more released keys than
// one look takes (drainBatch), the drainer must reach them all, the ones
// whose events keep failing (released still) included: the scan goes on
// from where the last look stopped, not from the set's start.
func TestSequenceDrainReachesEveryReleasedKey(t *testing.T) {
	client, prefix := seqRedis(t, "seqscan")
	ctx := context.Background()
	st := newSequenceStore(client, prefix, "g", "h")
	const n = 3 * drainBatch
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("K%d", i)
		ok, err := st.park(ctx, key, "head", []byte(`{}`), time.Now())
		require.NoError(t, err)
		require.True(t, ok)
		m := message.NewMessage(key, []byte("x"))
		m.Metadata.Set(MetadataOriginalID, "1-1")
		e, _ := encodeParked(m)
		_, err = st.gate(ctx, key, m.UUID, parkedID(m), e, parkedPosition(m))
		require.NoError(t, err)
		_, err = st.release(ctx, key)
		require.NoError(t, err)
	}
	var mu sync.Mutex
	tried := map[string]bool{}
	s, err := NewSequencer(SequenceConfig{Client: client, Handler: "h", Group: "g", Prefix: prefix,
		PollInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	s.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		mu.Lock()
		tried[msg.UUID] = true
		mu.Unlock()
		return nil, errors.New("fails, stays released")
	})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tried) == n
	}, 60*time.Second, 20*time.Millisecond, "released keys never drained")
}
