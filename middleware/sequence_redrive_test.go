package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// TestSequenceRedrivenHeadRecognisedByEventID: `arcmill dlq redrive
// --nats` republishes the head under a UUID of its own (RedriveUUID); the
// Sequencer must still recognise it as its key's head (run it, release
// after), not park it at the end of its own sequence. Redriven twice (dead
// letter of the redrive, redriven again) it is the head still.
func TestSequenceRedrivenHeadRecognisedByEventID(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer client.Close()
	ctx := context.Background()
	prefix := "arcmill-test:seqredrive:" + uuid.NewString() + ":"
	defer func() {
		keys, _ := client.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	}()
	s, err := NewSequencer(SequenceConfig{Client: client, Handler: "h", Group: "g", Prefix: prefix})
	require.NoError(t, err)
	defer s.Close()
	ev, err := arc.NewEvent("order.step", map[string]string{"n": "1"}, arc.Meta{PartitionKey: "K"})
	require.NoError(t, err)
	head, err := arc.ToMessage(ev)
	require.NoError(t, err)
	head.Metadata.Set(MetadataOriginalID, "7") // its JetStream sequence
	ok, err := s.store.park(ctx, "K", head.UUID, headInfoOf(head, "retry_exhausted", "x"), time.Now())
	require.NoError(t, err)
	require.True(t, ok)

	redriven, err := arc.ToMessage(ev)
	require.NoError(t, err)
	redriven.UUID = RedriveUUID(ev.Meta.ID, 12) // as natsRedrive does
	redriven.Metadata.Set(MetadataOriginalID, "20")
	v, err := s.gate(ctx, "K", redriven)
	require.NoError(t, err)
	require.Equal(t, gateHead, v, "redriven head (verdict %d: 2 = parked behind itself)", v)

	twice, err := arc.ToMessage(ev)
	require.NoError(t, err)
	twice.UUID = RedriveUUID(RedriveUUID(ev.Meta.ID, 12), 30)
	twice.Metadata.Set(MetadataOriginalID, "31")
	v, err = s.gate(ctx, "K", twice)
	require.NoError(t, err)
	require.Equal(t, gateHead, v, "head redriven twice (verdict %d)", v)

	// Its success releases the sequence.
	n, err := s.store.headDone(ctx, "K", RedrivenEventID(twice.UUID))
	require.NoError(t, err)
	require.EqualValues(t, 0, n, "head not recognised on release")
}

func TestRedrivenEventID(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                                 "abc",
		RedriveUUID("abc", 7):                 "abc",
		RedriveUUID(RedriveUUID("a.b", 7), 9): "a.b",
		"abc.redrive.x":                       "abc.redrive.x",
		".redrive.5":                          ".redrive.5",
	} {
		require.Equal(t, want, RedrivenEventID(in), in)
	}
}
