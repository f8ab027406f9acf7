package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// doctor says, and exits 1, when the server can lose acknowledged events;
// it exits 0 for noeviction, an append-only file synced on every write and
// a replica.
func TestDoctor_TellsARiskyServerFromACarefulOne(t *testing.T) {
	t.Parallel()
	loose := startRedisServer(t, "--port", "{port}", "--maxmemory-policy", "allkeys-lru")
	r := arcmillWith(t, nil, "doctor", "--redis", "127.0.0.1:"+strconv.Itoa(loose), "--format", "text")
	assert.Equal(t, exitFailure, r.code, r.stderr)
	for _, want := range []string{"RISK  maxmemory-policy", "RISK  appendonly", "RISK  replicas", "noeviction"} {
		assert.Contains(t, r.stdout, want)
	}
	assert.Contains(t, r.stderr, "can lose acknowledged events")
	assert.True(t, strings.HasPrefix(r.stdout, "Redis at 127.0.0.1:"), r.stdout)
	assert.NotContains(t, r.stdout, "cluster_enabled", "not a cluster node")

	careful := startRedisServer(t, "--port", "{port}", "--appendonly", "yes", "--appendfsync", "always")
	startRedisServer(t, "--port", "{port}", "--replicaof", "127.0.0.1", strconv.Itoa(careful))
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(careful)})
	t.Cleanup(func() { _ = c.Close() })
	require.Eventually(t, func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:1")
	}, 10*time.Second, 20*time.Millisecond)
	r = arcmillWith(t, nil, "doctor", "--redis", "127.0.0.1:"+strconv.Itoa(careful), "--format", "json")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, `"atRisk":false`)
}
