package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// The Redis Cluster scripts/services.sh provisions answers on every node
// with cluster_state:ok, and has three primaries, each with a replica, as
// the partition tests expect. Under make test this fails, rather than
// skips, when it is down.
func TestRedisClusterAnswers(t *testing.T) {
	addrs := RedisClusterAddrs(t)
	ctx := context.Background()
	primaries, replicas := 0, 0
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: strings.TrimSpace(a)})
		info, err := c.ClusterInfo(ctx).Result()
		if assert.NoError(t, err, a) {
			assert.Contains(t, info, "cluster_state:ok", a)
		}
		role, err := c.Do(ctx, "ROLE").Slice()
		if assert.NoError(t, err, a) && len(role) > 0 {
			switch role[0] {
			case "master":
				primaries++
			case "slave":
				replicas++
			}
		}
		_ = c.Close()
	}
	if len(addrs) == len(DefaultRedisClusterAddrs) {
		assert.Equal(t, 3, primaries)
		assert.Equal(t, 3, replicas)
	}
}
