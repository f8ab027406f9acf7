package testenv

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Ports below Linux's ephemeral range (32768–60999 by default) for servers
// that stop and start again on the same port: RestartPort's, and private
// cluster nodes' (their bus ports, port+10000, fall in 22000–26000). A port the kernel hands out
// for ":0" or for an outgoing connection is in the ephemeral range, so
// while such a server is down (a staged outage of seconds) no other test's
// server or client takes its port; a port from ":0" could be, and the
// restarted server's clients then talked to another test's Redis.
const (
	restartPortMin = 26000
	restartPortMax = 32000
	clusterPortMin = 12000
	clusterPortMax = 16000
)

// RestartPort returns a free loopback port for a server that a test stops
// and starts again on the same port: one outside the ephemeral range, free
// when asked (the server's own start checks that it got it: see RedisPID).
func RestartPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := restartPortMin + rand.IntN(restartPortMax-restartPortMin)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return port
	}
	t.Fatalf("no free loopback port in %d–%d", restartPortMin, restartPortMax)
	return 0
}

// RedisPID is the process id of the Redis server that answers c, from
// INFO server: a test that started a server on a port checks it is that
// server answering, not another process that took the port.
func RedisPID(ctx context.Context, c redis.Cmdable) (int, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, nil
}
