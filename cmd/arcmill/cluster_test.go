package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
)

// The Redis commands of the CLI on a Redis Cluster (--redis-cluster with
// the nodes' addresses), on a private cluster: doctor checks every node
// and the cluster; publish, tail and dlq list, show and redrive work on a
// stream and a dead-letter stream that share a hash tag (one slot, as
// redrive's script needs).
func TestCLI_OnARedisCluster(t *testing.T) {
	c := testenv.PrivateRedisCluster(t, 3, 1)
	seeds := strings.Join(c.Addrs(), ",")
	cli := func(stdin string, args ...string) result {
		t.Helper()
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ARCMILL_REDIS_") {
				env = append(env, kv)
			}
		}
		return runBinary(t, strings.NewReader(stdin), append(env, "ARCMILL_REDIS_ADDR="+seeds),
			append(args, "--redis-cluster")...)
	}
	ctx := context.Background()
	stream, dlq := "{orders}:events", "{orders}:events:dlq"

	t.Run("doctor", func(t *testing.T) {
		r := cli("", "doctor", "--format", "text")
		assert.Equal(t, exitFailure, r.code, "no append-only file anywhere: at risk\n%s%s", r.stdout, r.stderr)
		for _, want := range []string{"cluster_state", "cluster-node-timeout", "1500ms", "cluster-require-full-coverage",
			"RISK  appendonly"} {
			assert.Contains(t, r.stdout, want)
		}
		for _, p := range c.Primaries() {
			assert.Contains(t, r.stdout, p+" primary")
			for _, rep := range c.ReplicasOf(p) {
				assert.Contains(t, r.stdout, rep+" replica")
			}
		}
		assert.Len(t, regexp.MustCompile(`ok +replicas +1 `).FindAllString(r.stdout, -1), 3,
			"each primary's replica counted on that primary:\n%s", r.stdout)
		assert.True(t, strings.HasPrefix(r.stdout, "Redis Cluster "), "one 'Redis' in the heading:\n%s", r.stdout)
		assert.NotContains(t, r.stdout, "cluster_enabled", "every node was checked")
		j := cli("", "doctor", "--format", "json")
		assert.Contains(t, j.stdout, `"node":"cluster"`)

		// One node of the cluster, without --redis-cluster: says that only it
		// was checked.
		one := runBinary(t, nil, nil, "doctor", "--redis", c.Primaries()[0], "--format", "text")
		assert.Equal(t, exitFailure, one.code, one.stdout+one.stderr)
		assert.True(t, strings.HasPrefix(one.stdout, "Redis at "), one.stdout)
		assert.Regexp(t, `ok +cluster_enabled +1 +this server is one node of a Redis Cluster .*--redis-cluster`, one.stdout)
	})

	t.Run("publish and tail", func(t *testing.T) {
		for _, typ := range []string{"order.a", "order.b"} {
			r := cli(`{"a": 1}`, "publish", typ, "--stream", stream)
			require.Equal(t, 0, r.code, r.stderr)
		}
		r := cli("", "tail", "order.*", "--stream", stream, "--group", "aud", "--from-start", "--count", "2",
			"--timeout", "20s", "--format", "json")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "order.a")
		assert.Contains(t, r.stdout, "order.b")
	})

	t.Run("dlq list, show and redrive", func(t *testing.T) {
		client := c.Client()
		id, err := client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"type", "order.created", "data", "{corrupt"}}).Result()
		require.NoError(t, err)
		msg := message.NewMessage("m-"+id, nil)
		msg.Metadata.Set("arc_malformed", "unreadable")
		dl := middleware.DeadLetteredEvent{Reason: middleware.ReasonMalformed, Raw: middleware.NewRawMessage(msg),
			Event: middleware.PlaceholderEvent(id, time.Now())}
		data, err := dl.MarshalArc()
		require.NoError(t, err)
		env := message.NewMessage("dl-"+id, data)
		env.Metadata.Set(middleware.MetadataDLQSourceTopic, stream)
		env.Metadata.Set(middleware.MetadataDLQOriginalID, id)
		env.SetContext(ctx)
		require.NoError(t, (&redisstream.DeadLetterPublisher{Client: client}).Publish(dlq, env))
		require.NoError(t, client.XDel(ctx, stream, id).Err())
		before := client.XLen(ctx, stream).Val()

		r := cli("", "dlq", "list", "--stream", dlq)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, id)
		dlID := client.XRange(ctx, dlq, "-", "+").Val()[0].ID
		r = cli("", "dlq", "show", dlID, "--stream", dlq)
		require.Equal(t, 0, r.code, r.stderr)
		r = cli("", "dlq", "redrive", "--stream", dlq)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, "redriven 1 dead letter(s)")
		assert.Equal(t, before+1, client.XLen(ctx, stream).Val(), "put back on its stream")
		assert.Zero(t, client.XLen(ctx, dlq).Val())
	})
}
