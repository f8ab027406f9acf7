package testenv

import (
	"context"
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
	r := RestartableRedis(t, extra...)
	return r.Addr(), r.Stop
}

// Redis is a private redis-server (RestartableRedis) that a test can stop
// and start again on the same port and directory, to stage an outage.
type Redis struct {
	t     testing.TB
	bin   string
	port  int
	dir   string
	extra []string
	cmd   *exec.Cmd
}

// RestartableRedis starts a private redis-server on a free loopback port,
// without persistence unless extra says otherwise; cleanup stops it.
func RestartableRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	RedisAddr(t) // the shared server is up, so redis-server is installed
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for a private server (make test installs it): %v", err)
	}
	r := &Redis{t: t, bin: bin, port: RestartPort(t), dir: t.TempDir(), extra: extra}
	t.Cleanup(r.Stop)
	r.Start()
	return r
}

// Addr is the server's address.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Port is the server's port.
func (r *Redis) Port() int { return r.port }

// Start runs the server and returns once it answers.
func (r *Redis) Start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir}, r.extra...)...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	pid := r.cmd.Process.Pid
	waitFor(r.t, r.Addr(), "private redis-server", func(c *redis.Client) bool {
		got, err := RedisPID(context.Background(), c)
		if err == nil && got != pid {
			r.t.Fatalf("%s answered by another redis-server (pid %d, ours %d): the port was taken", r.Addr(), got, pid)
		}
		return err == nil
	})
}

// Stop kills the server (SIGKILL: nothing saved beyond what its
// persistence already wrote); idempotent.
func (r *Redis) Stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
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
