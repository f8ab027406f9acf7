package wildcard

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// The event a transport put in the context is what handlers get, while the
// message still says the same; once a router middleware changed the message,
// the router decodes it again. The cached event here is deliberately not the
// message's (another user id), so the test can tell which one was used.
func TestDispatchUsesTheTransportsEventUntilTheMessageChanges(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change     func(*message.Message)
		limits     arc.Limits
		wantCached bool
	}{
		"unchanged":                {func(*message.Message) {}, arc.Limits{}, true},
		"same limits spelt out":    {func(*message.Message) {}, arc.Limits{MaxDepth: arc.DefaultMaxDepth}, true},
		"metadata value changed":   {func(m *message.Message) { m.Metadata.Set(arc.MetadataUserID, "u-2") }, arc.Limits{}, false},
		"metadata key added":       {func(m *message.Message) { m.Metadata.Set("other", "x") }, arc.Limits{}, false},
		"payload replaced":         {func(m *message.Message) { m.Payload = []byte(`{"n":1}`) }, arc.Limits{}, false},
		"other limits":             {func(*message.Message) {}, arc.Limits{MaxDepth: 10}, false},
		"uuid changed":             {func(m *message.Message) { m.UUID = "other-id" }, arc.Limits{}, false},
		"metadata key removed":     {func(m *message.Message) { delete(m.Metadata, arc.MetadataUserID) }, arc.Limits{}, false},
		"payload bytes equal, new": {func(m *message.Message) { m.Payload = append([]byte(nil), m.Payload...) }, arc.Limits{}, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := mustEvent(t, "order.created", map[string]int{"n": 1}, arc.Meta{UserID: "u-1"})
			msg := mustMessage(t, ev)
			cached := ev
			cached.Meta.UserID = "from-the-transport"
			msg.SetContext(ContextWithEvent(context.Background(), msg, cached, tc.limits))
			tc.change(msg)

			_, wr := mustRouters(t, Config{})
			sub := &eagerSubscriber{}
			var mu sync.Mutex
			var got []string
			_, err := wr.Subscribe(sub, "t", "order.*", func(_ context.Context, e arc.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, e.Meta.UserID)
				return nil
			})
			require.NoError(t, err)
			src := wr.sources[sourceKey{sub, "t"}]
			require.NotNil(t, src)
			require.NoError(t, src.dispatch(msg))
			require.Len(t, got, 1)
			if tc.wantCached {
				assert.Equal(t, "from-the-transport", got[0])
			} else {
				assert.NotEqual(t, "from-the-transport", got[0])
			}
		})
	}
}

// The snapshot ContextWithEvent takes of the metadata is held inline up to
// 8 keys and in a slice of its own past them: a change is seen either way,
// including in the keys past the inline part.
func TestDispatchSeesMetadataChangesWithManyKeys(t *testing.T) {
	t.Parallel()
	for _, keys := range []int{0, 3, 4, 5, 12} {
		for name, tc := range map[string]struct {
			change     func(*message.Message)
			wantCached bool
		}{
			"unchanged":     {func(*message.Message) {}, true},
			"first changed": {func(m *message.Message) { m.Metadata.Set(arc.MetadataUserID, "u-2") }, false},
			"last changed": {func(m *message.Message) {
				if keys == 0 {
					m.Metadata.Set("x-extra", "new")
					return
				}
				m.Metadata.Set(fmt.Sprint("x-extra-", keys-1), "changed")
			}, false},
			"key removed": {func(m *message.Message) { delete(m.Metadata, arc.MetadataType) }, false},
		} {
			t.Run(fmt.Sprint(keys, " extra keys, ", name), func(t *testing.T) {
				t.Parallel()
				ev := mustEvent(t, "order.created", map[string]int{"n": 1}, arc.Meta{UserID: "u-1"})
				msg := mustMessage(t, ev)
				for i := range keys {
					msg.Metadata.Set(fmt.Sprint("x-extra-", i), "v")
				}
				cached := ev
				cached.Meta.UserID = "from-the-transport"
				msg.SetContext(ContextWithEvent(context.Background(), msg, cached, arc.Limits{}))
				tc.change(msg)
				got, err := eventOf(msg, arc.Limits{})
				if msg.Metadata.Get(arc.MetadataType) == "" {
					require.Error(t, err, "no type: decoded again, and malformed")
					return
				}
				require.NoError(t, err)
				if tc.wantCached {
					assert.Equal(t, "from-the-transport", got.Meta.UserID)
				} else {
					assert.NotEqual(t, "from-the-transport", got.Meta.UserID)
				}
			})
		}
	}
}
