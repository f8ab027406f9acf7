package redisstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/wildcard"
)

// DeadLetterPublisher finds the dead letters it wrote by delivery: the
// source stream, entry id, group and handler (any handler for a malformed
// message), no older than Since; and it gives middleware.DeadLetter its
// client, so that dead letters are once-only by default.
func TestDeadLetterPublisher_FindDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.publish("billing.charge", 1)
	pub := &DeadLetterPublisher{Client: b.client}
	d, err := middleware.NewDeadLetter(middleware.DeadLetterConfig{Publisher: pub, Topic: b.dlq, ConsumerGroup: "billing"})
	require.NoError(t, err)
	require.True(t, d.Guarded(), "on by default with a DeadLetterPublisher")
	t.Cleanup(func() {
		keys, _ := b.client.Keys(context.Background(), middleware.DefaultGuardPrefix+`"billing":"`+b.dlq+`"*`).Result()
		if len(keys) > 0 {
			b.client.Del(context.Background(), keys...)
		}
	})

	ev, err := arc.NewEvent("billing.charge", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(t, err)
	msg, err := arc.ToMessage(ev)
	require.NoError(t, err)
	msg.Metadata.Set(MetadataEntryID, ids[0])
	msg.SetContext(wildcard.ContextWithInfo(context.Background(), wildcard.Info{Handler: "charge", Topic: b.stream,
		Pattern: "billing.*", Event: ev}))
	_, err = d.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
	})(msg)
	require.NoError(t, err)
	require.EqualValues(t, 1, b.xlen(b.dlq))
	_, err = d.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.Join(arc.ErrUnrecoverable, errors.New("card declined"))
	})(msg)
	require.NoError(t, err)
	require.EqualValues(t, 1, b.xlen(b.dlq), "redelivered: acknowledged, not written again")

	ctx := context.Background()
	q := middleware.DeadLetterQuery{Topic: b.dlq, SourceTopic: b.stream, OriginalID: ids[0], ConsumerGroup: "billing",
		Handler: "charge", Since: time.Now().Add(-time.Minute)}
	for name, tc := range map[string]struct {
		mutate func(*middleware.DeadLetterQuery)
		want   bool
	}{
		"its delivery":         {func(*middleware.DeadLetterQuery) {}, true},
		"any handler":          {func(q *middleware.DeadLetterQuery) { q.Handler = "" }, true},
		"another handler":      {func(q *middleware.DeadLetterQuery) { q.Handler = "audit" }, false},
		"another entry":        {func(q *middleware.DeadLetterQuery) { q.OriginalID = "1-1" }, false},
		"another group":        {func(q *middleware.DeadLetterQuery) { q.ConsumerGroup = "ops" }, false},
		"another stream":       {func(q *middleware.DeadLetterQuery) { q.SourceTopic = uuid.NewString() }, false},
		"written before Since": {func(q *middleware.DeadLetterQuery) { q.Since = time.Now().Add(time.Minute) }, false},
	} {
		q := q
		tc.mutate(&q)
		found, err := pub.FindDeadLetter(ctx, q)
		require.NoError(t, err, name)
		assert.Equal(t, tc.want, found, name)
	}
	// Past one page of other dead letters.
	for range findPage + 3 {
		require.NoError(t, b.client.XAdd(ctx, deadLetterArgs(b.dlq, 0, "x", b.stream, "9-9", "billing", []byte(`{}`), nil)).Err())
	}
	require.NoError(t, b.client.XAdd(ctx, deadLetterArgs(b.dlq, 0, "x", b.stream, "8-8", "billing", []byte(`{}`), nil)).Err())
	found, err := pub.FindDeadLetter(ctx, middleware.DeadLetterQuery{Topic: b.dlq, SourceTopic: b.stream, OriginalID: "8-8",
		ConsumerGroup: "billing"})
	require.NoError(t, err)
	assert.True(t, found, "on a later page")
}
