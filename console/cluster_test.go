package console

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// The console on a Redis Cluster: every command it sends names one stream
// (the console lists configured streams; it never SCANs keys), and
// redrive's script takes the dead-letter stream and its target, which
// share a hash tag here, so one slot. Overview, the explorer, the
// dead-letter groups and a redrive of a group work through a
// ClusterClient, on streams of different primaries.
func TestConsoleOnARedisCluster(t *testing.T) {
	c := testenv.PrivateRedisCluster(t, 3, 1)
	rdb := c.Client()
	ctx := context.Background()
	var streams []Stream
	primaries := map[string]bool{}
	for _, tag := range []string{"orders", "billing", "shipping", "users", "stock"} {
		name := "{" + tag + "}:events"
		streams = append(streams, Stream{Name: name})
		primaries[c.PrimaryFor(name)] = true
	}
	require.Greater(t, len(primaries), 1, "the streams live on several primaries")
	now := time.Now().UTC()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb, SkipServerCheck: true})
	require.NoError(t, err)
	for _, s := range streams {
		ev, err := arc.NewEvent("order.placed", map[string]any{"on": s.Name}, arc.Meta{CorrelationID: "corr-cluster"})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(s.Name, msg))
		for i := 0; i < 3; i++ {
			ev, err := arc.NewEvent("order.created", map[string]any{"i": i}, arc.Meta{})
			require.NoError(t, err)
			env, err := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: "card declined"},
				Attempts: 3, FirstFailedAt: now, LastFailedAt: now, Reason: middleware.ReasonRetryExhausted,
				HandlerName: "billing"}.MarshalArc()
			require.NoError(t, err)
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.Name + DefaultDeadLetterSuffix, Values: []any{
				redisstream.FieldType, "order.created", redisstream.FieldOriginalStream, s.Name,
				redisstream.FieldOriginalID, fmt.Sprintf("%d-0", i+1), redisstream.FieldGroup, "billing",
				redisstream.FieldData, string(env)}}).Err())
		}
	}

	con, err := New(Config{Redis: rdb, Streams: streams, Auth: Auth{Credentials: []Credential{
		{Name: "ops", Token: opToken, Role: Operator}}}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, con.Close()) })
	b := &bundle{t: t}
	srv := b.serve(con)
	cl := bearer(t, srv, opToken)

	var o Overview
	require.Equal(t, http.StatusOK, cl.getJSON("/api/overview", &o))
	require.Len(t, o.Streams, len(streams))
	for _, s := range o.Streams {
		assert.EqualValues(t, 1, s.Length, s.Name)
		assert.EqualValues(t, 3, s.DeadLetters, s.Name)
	}
	var x Exploration
	require.Equal(t, http.StatusOK, cl.getJSON("/api/explore?q=corr-cluster", &x))
	assert.Equal(t, len(streams), x.Count, "the explorer reads every stream, whichever primary it is on")

	var gr GroupsResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups", &gr))
	require.Len(t, gr.Groups, 1)
	assert.Equal(t, 3*len(streams), gr.Groups[0].Count)

	var tk Task
	status, body := cl.postJSON("/api/redrive", Selection{Filter: Filter{Cause: gr.Groups[0].Cause}}, &tk)
	require.Equal(t, http.StatusAccepted, status, string(body))
	done := cl.waitTask(tk.ID)
	assert.Equal(t, TaskDone, done.State, done.Error)
	assert.EqualValues(t, 3*len(streams), done.Moved)
	for _, s := range streams {
		assert.EqualValues(t, 4, rdb.XLen(ctx, s.Name).Val(), "redriven to %s", s.Name)
		assert.Zero(t, rdb.XLen(ctx, s.Name+DefaultDeadLetterSuffix).Val())
	}
}
