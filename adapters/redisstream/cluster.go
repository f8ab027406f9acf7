package redisstream

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster, a durable publish must run its XADDs and its WAIT (or
// WAITAOF) on one connection to the primary that serves the stream: WAIT
// confirms the writes of its own connection. A ClusterClient's pipeline
// cannot promise that: it routes each command by its first key, and takes
// WAIT's first argument (the replica count) for a key, so WAIT ran on
// whichever primary serves the key "1" and confirmed nothing of ours (it
// answered at once with that node's replica count). The publisher therefore
// pipelines to the stream's primary itself, and follows MOVED and ASK on its
// own.

// pipeliner is what a durable publish needs of a client: a pipeline on one
// connection.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
	Info(ctx context.Context, section ...string) *redis.StringCmd
}

// maxDurableRedirects is how many MOVED or ASK replies a durable publish
// follows before it gives up (go-redis's default MaxRedirects).
const maxDurableRedirects = 3

// nodeFor returns the client that serves key: the Client itself, or, on a
// Cluster, the client of the primary serving key's slot.
func nodeFor(ctx context.Context, client redis.UniversalClient, key string) (pipeliner, error) {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return client, nil
	}
	return cc.MasterForKey(ctx, key)
}

// redirection reads a MOVED or ASK reply: whether it is one, whether it is
// ASK, and the address it points to.
func redirection(err error) (ok, ask bool, addr string) {
	var re redis.Error
	if err == nil || !errors.As(err, &re) {
		return false, false, ""
	}
	msg := re.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED "):
	case strings.HasPrefix(msg, "ASK "):
		ask = true
	default:
		return false, false, ""
	}
	i := strings.LastIndexByte(msg, ' ')
	return true, ask, msg[i+1:]
}

// clusterNode returns the client a ClusterClient keeps for the node at
// addr (primary or replica), asking the client to reload its slot map
// (go-redis does so in the background) since a redirection means the map
// is stale. A node the client does not know yet is an error: the publish
// fails as a transport failure and is retried once the map is reloaded.
func clusterNode(ctx context.Context, cc *redis.ClusterClient, addr string) (pipeliner, error) {
	cc.ReloadState(ctx)
	var found *redis.Client
	_ = cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			found = c
		}
		return nil
	})
	if found == nil {
		return nil, errClusterMapStale{addr: addr}
	}
	return found, nil
}

// errClusterMapStale: a redirection to a node the cluster client does not
// know yet. A transport failure (Timeout true): the slot map is being
// reloaded, and the same publish succeeds once it is.
type errClusterMapStale struct{ addr string }

func (e errClusterMapStale) Error() string {
	return "redisstream: redirected to cluster node " + e.addr + ", not yet in the client's slot map (reloading)"
}

// Timeout marks the failure as the transport's.
func (errClusterMapStale) Timeout() bool { return true }
