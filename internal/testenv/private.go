package testenv

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PrivateRedis starts a redis-server of the test's own on a free loopback
// port, without persistence unless extra says otherwise, and returns its
// address and a kill function (SIGKILL, idempotent; also run at cleanup).
// Tests that crash, replicate or load a server use one, so that the shared
// server's other clients never feel it.
func PrivateRedis(t testing.TB, extra ...string) (addr string, kill func()) {
	t.Helper()
	RedisAddr(t) // the shared server is up, so redis-server is installed
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for a private server (make test installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir()}, extra...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill = func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, addr, "private redis-server", func(c *redis.Client) bool { return c.Ping(context.Background()).Err() == nil })
	return addr, kill
}

// RedisReplica starts a private replica of primary and waits until its
// link to the primary is up.
func RedisReplica(t testing.TB, primary string) (kill func()) {
	t.Helper()
	host, port, _ := strings.Cut(primary, ":")
	addr, kill := PrivateRedis(t, "--replicaof", host, port)
	waitFor(t, addr, "replica in sync", func(c *redis.Client) bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	return kill
}

// waitFor polls ok on a client of addr until it holds, failing t after 20 s.
func waitFor(t testing.TB, addr, what string, ok func(*redis.Client) bool) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(c) {
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: not ready after 20 s", what, addr)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}
