package middleware

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// TestSequenceDrainFailureIsNoHotLoop: a drained event whose handler
// returns messages, with no SequenceConfig.Publisher (the default), fails
// after its handler ran; it stays first, but must not run again at every
// PollInterval (its side effects repeated). While it is put off, the
// drainer goes on draining other keys: five sequences of another key drain
// (five more looks at the released keys) and the failing event ran once.
func TestSequenceDrainFailureIsNoHotLoop(t *testing.T) {
	client, prefix := seqRedis(t, "seqpublish")
	ctx := context.Background()
	st := newSequenceStore(client, prefix, "g", "h")
	park := func(key, id string) {
		ok, err := st.park(ctx, key, "head-"+id, []byte(`{}`), time.Now())
		require.NoError(t, err)
		require.True(t, ok)
		m := message.NewMessage(id, []byte("x"))
		m.Metadata.Set(MetadataOriginalID, "1-1")
		e, _ := encodeParked(m)
		v, err := st.gate(ctx, key, m.UUID, parkedID(m), e, parkedPosition(m))
		require.NoError(t, err)
		require.Equal(t, gateParked, v)
		_, err = st.release(ctx, key)
		require.NoError(t, err)
	}
	var runs atomic.Int32
	s, err := NewSequencer(SequenceConfig{Client: client, Handler: "h", Group: "g", Prefix: prefix,
		PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	s.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		if msg.UUID != "e1" {
			return nil, nil
		}
		runs.Add(1) // e.g. charges a card
		return []*message.Message{message.NewMessage("out", nil)}, nil
	})
	park("K", "e1")
	require.Eventually(t, func() bool { return runs.Load() == 1 }, 30*time.Second, 5*time.Millisecond)
	for i := 0; i < 5; i++ {
		park("other", fmt.Sprintf("o%d", i))
		require.Eventually(t, func() bool {
			ex, _ := client.Exists(ctx, st.keys("other")[0]).Result()
			return ex == 0
		}, 30*time.Second, 5*time.Millisecond)
	}
	ex, err := client.Exists(ctx, st.keys("K")[0]).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, ex, "the failed event stays parked")
	require.EqualValues(t, 1, runs.Load(), "its handler ran again at once: side effects repeated")
}

// A key whose drained event keeps failing waits PollInterval, then twice
// as long per failure, up to maxDrainRetryWait.
func TestSequenceDrainFailedBacksOff(t *testing.T) {
	s := &Sequencer{cfg: SequenceConfig{PollInterval: time.Second}, retryAt: map[string]drainRetry{}}
	var waits []time.Duration
	for i := 0; i < 8; i++ {
		s.drainFailed("K", fmt.Errorf("boom"))
		waits = append(waits, s.retryAt["K"].wait)
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, time.Minute, time.Minute}, waits)
	s.drainFailed("P", errNoDrainPublisher)
	require.Equal(t, maxDrainRetryWait, s.retryAt["P"].wait)
}
