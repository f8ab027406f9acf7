package redisstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// With Durability, Publish returns only once a replica has the entries,
// and reports ErrNotDurable (the entries written, to publish again) when
// no replica confirms in time.
func TestPublisher_DurabilityWaitsForReplicas(t *testing.T) {
	t.Parallel()
	primary, rc, killReplica := replicated(t)
	client := redis.NewClient(&redis.Options{Addr: primary})
	t.Cleanup(func() { _ = client.Close() })

	pub, err := NewPublisher(PublisherConfig{Client: client,
		Durability: &Durability{Replicas: 1, Timeout: 2 * time.Second}})
	require.NoError(t, err)
	msgs := make([]*message.Message, 3)
	for i := range msgs {
		ev, err := arc.NewEvent("order.placed", map[string]int{"i": i}, arc.Meta{})
		require.NoError(t, err)
		msgs[i], err = arc.ToMessage(ev)
		require.NoError(t, err)
	}
	require.NoError(t, pub.Publish("orders", msgs[0]))
	require.NoError(t, pub.Publish("orders", msgs[1:]...))
	n, err := rc.XLen(context.Background(), "orders").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "the replica has every entry when Publish returns")

	killReplica()
	short, err := NewPublisher(PublisherConfig{Client: client,
		Durability: &Durability{Replicas: 1, Timeout: 100 * time.Millisecond}})
	require.NoError(t, err)
	err = short.Publish("orders", msgs[0])
	require.ErrorIs(t, err, ErrNotDurable)
	assert.Contains(t, err.Error(), "0 of 1 replica(s)")
	assert.Equal(t, int64(4), client.XLen(context.Background(), "orders").Val(), "written, not confirmed")

	fsync, err := NewPublisher(PublisherConfig{Client: client, Durability: &Durability{Fsync: true}})
	require.NoError(t, err)
	err = fsync.Publish("orders", msgs[0])
	require.ErrorIs(t, err, ErrNotDurable, "no append-only file (or a Redis before 7.2): never confirmed")
	t.Log(err)
}

func TestPublisherConfig_DurabilityMustAskForSomething(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{})
	for _, d := range []*Durability{{}, {Replicas: -1}, {Replicas: 1, Timeout: -time.Second}} {
		_, err := NewPublisher(PublisherConfig{Client: client, Durability: d})
		require.ErrorIs(t, err, ErrInvalidConfig, fmt.Sprintf("%+v", *d))
	}
}

// CheckServer tells a Redis that can lose acknowledged entries from one
// that keeps them.
func TestCheckServer_SaysWhatTheServerPromises(t *testing.T) {
	t.Parallel()
	loose, _ := testenv.PrivateRedis(t, "--maxmemory-policy", "allkeys-lru")
	careful, _ := testenv.PrivateRedis(t, "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")
	host, port, _ := strings.Cut(careful, ":")
	testenv.PrivateRedis(t, "--replicaof", host, port)
	check := func(addr string) ServerReport {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		r, err := CheckServer(context.Background(), c)
		require.NoError(t, err)
		return r
	}
	bad := check(loose)
	assert.True(t, bad.Risky())
	risks := map[string]bool{}
	for _, f := range bad.Findings {
		risks[f.Setting] = f.Risk
	}
	assert.Equal(t, map[string]bool{"maxmemory-policy": true, "appendonly": true, "replicas": true}, risks)

	require.Eventually(t, func() bool { return !check(careful).Risky() }, testWait, 20*time.Millisecond,
		"noeviction, AOF always and a replica: nothing acknowledged is at risk")
}

// The publisher warns once, before its first write, about a server that
// can lose what it acknowledges.
func TestPublisher_WarnsAboutALooseServer(t *testing.T) {
	t.Parallel()
	addr, _ := testenv.PrivateRedis(t) // no append-only file, no replica
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	logs := watermill.NewCaptureLogger()
	pub, err := NewPublisher(PublisherConfig{Client: client, Logger: logs})
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		ev, err := arc.NewEvent("order.placed", nil, arc.Meta{})
		require.NoError(t, err)
		msg, err := arc.ToMessage(ev)
		require.NoError(t, err)
		require.NoError(t, pub.Publish("orders", msg))
	}
	var warnings []string
	for _, m := range logs.Captured()[watermill.ErrorLogLevel] {
		warnings = append(warnings, m.Msg)
	}
	require.Len(t, warnings, 2, "appendonly and replicas, once each")
	assert.Contains(t, warnings[0], "no append-only file")
}
