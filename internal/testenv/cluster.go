package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisClusterAddrs are the nodes of the Redis Cluster that
// scripts/services.sh provisions: three primaries and three replicas on
// loopback ports 7000–7005.
var DefaultRedisClusterAddrs = []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003",
	"127.0.0.1:7004", "127.0.0.1:7005"}

// RedisClusterAddrs returns the nodes of the Redis Cluster for tests
// (ARCMILL_REDIS_CLUSTER_ADDRS, comma-separated, else
// DefaultRedisClusterAddrs), or fails t (skips it with
// ARCMILL_SKIP_MISSING_SERVICES=1) when a node does not answer or the
// cluster does not report cluster_state:ok. The cluster is shared: tests
// use keys of their own and never stop its nodes.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := DefaultRedisClusterAddrs
	if v := setting("ARCMILL_REDIS_CLUSTER_ADDRS", ""); v != "" {
		addrs = strings.Split(v, ",")
	}
	for _, a := range addrs {
		require(t, "redis cluster node", "ARCMILL_REDIS_CLUSTER_ADDRS", strings.TrimSpace(a))
	}
	c := redis.NewClient(&redis.Options{Addr: strings.TrimSpace(addrs[0])})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.ClusterInfo(ctx).Result()
	if err == nil && !strings.Contains(info, "cluster_state:ok") {
		err = errClusterNotOK
	}
	if err != nil {
		if Required() {
			t.Fatalf("redis cluster at %s is not ready (%v): run `make test` (scripts/services.sh creates it), "+
				"or set ARCMILL_REDIS_CLUSTER_ADDRS; to skip the tests that need it instead, set %s=1",
				addrs[0], err, SkipVariable)
		}
		t.Skipf("redis cluster at %s is not ready (%v), skipped as %s=1 asks", addrs[0], err, SkipVariable)
	}
	return addrs
}

// errClusterNotOK is a cluster that answers but does not serve every slot.
var errClusterNotOK = clusterError("CLUSTER INFO does not say cluster_state:ok")

type clusterError string

func (e clusterError) Error() string { return string(e) }
