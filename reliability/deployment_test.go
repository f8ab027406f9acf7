package reliability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/internal/testenv"
)

// redisMode is what the fault scenario's Redis promises to keep of what it
// acknowledged when its primary crashes.
type redisMode string

const (
	// modeReplica: a primary and a replica on loopback, neither with
	// persistence, and a Sentinel that promotes the replica when the
	// primary dies. Relays publish with Durability (WAIT 1): a row counts
	// as delivered only once the replica has its entry.
	modeReplica redisMode = "replica"
	// modeAOF: one server with an append-only file fsynced on every write
	// (appendfsync always), restarted from it.
	modeAOF redisMode = "aof"
	// modeNone: one server keeping nothing on disk and no replica, as the
	// shared test server and docker-compose.test.yml run it. It restarts
	// empty: what it held is gone.
	modeNone redisMode = "none"
)

// redisModes are the modes in the order TestFaults runs them.
var redisModes = []redisMode{modeReplica, modeAOF, modeNone}

// sentinelMaster is the name the private Sentinel monitors.
const sentinelMaster = "arcmill-rel"

// redisConn tells a process how to reach the scenario's current primary:
// an address, or a Sentinel to ask (go-redis's failover client follows a
// promotion).
type redisConn struct {
	Addr      string   `json:",omitempty"`
	Master    string   `json:",omitempty"`
	Sentinels []string `json:",omitempty"`
}

func (c redisConn) client() *redis.Client {
	if c.Master != "" {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: c.Master, SentinelAddrs: c.Sentinels})
	}
	return redis.NewClient(&redis.Options{Addr: c.Addr})
}

// redisServer is one redis-server process of the test's own (a server or
// a Sentinel).
type redisServer struct {
	addr string
	args []string
	cmd  *exec.Cmd
}

// startServer starts redis-server with args (and a port, loopback binding
// and a log file in dir) and returns once it answers PING.
func startServer(t *testing.T, dir, addr string, args ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("redis-server is not installed (make test installs it): %v", err)
		}
		t.Skip("redis-server is not installed")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	_, port, _ := net.SplitHostPort(addr)
	s := &redisServer{addr: addr, args: args}
	all := append([]string{}, args...) // a config file, if any, must come first
	all = append(all, "--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	s.cmd = exec.Command(bin, all...)
	// It dies with the test process, however that ends.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil },
		10*time.Second, 20*time.Millisecond, "private redis-server on %s (log in %s)", addr, dir)
	pid, err := testenv.RedisPID(context.Background(), c)
	require.NoError(t, err)
	require.Equal(t, s.cmd.Process.Pid, pid, "%s answered by another redis-server: the port was taken (log in %s)", addr, dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the redis-server log in %s:\n%s", dir, tailOf(filepath.Join(dir, "redis.log"), 15))
		}
	})
	return s
}

// restartAddr is a loopback address for a server the scenario crashes and
// starts again on the same address: outside the ephemeral ports, so that
// no other test's server or connection takes it while it is down.
func restartAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.RestartPort(t)))
}

// kill ends the process with SIGKILL: it keeps only what its append-only
// file or a replica already has.
func (s *redisServer) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

// deployment is the scenario's private Redis in one mode. Only crash and
// restart change it, from the chaos loop.
type deployment struct {
	mode     redisMode
	dir      string
	primary  *redisServer
	replica  *redisServer // modeReplica only
	sentinel *redisServer // modeReplica only
	conn     redisConn
	// durable is how many replicas each relay's Publish waits for (WAIT).
	durable int
	// crashedAt is when the primary was dead (after SIGKILL returned);
	// restartedAt, when its replacement was started. Nothing can be
	// acknowledged in between, so a write acknowledged before restartedAt
	// was acknowledged by the server that crashed.
	crashedAt, restartedAt time.Time
	// promoted is how long Sentinel took to promote the replica.
	promoted time.Duration
	// link carries the replication stream to the first replica
	// (modeReplica), so that crash can make it lag.
	link *lagLink
	// lagged is how many entries of the stream the primary had and the
	// replica lacked when the primary was killed.
	lagged int64
}

// startDeployment starts mode's servers and stops them at the end of t.
func startDeployment(t *testing.T, mode redisMode) *deployment {
	d := &deployment{mode: mode, dir: t.TempDir()}
	plain := []string{"--save", "", "--appendonly", "no"}
	switch mode {
	case modeAOF:
		d.primary = startServer(t, filepath.Join(d.dir, "primary"), restartAddr(t),
			"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	case modeNone:
		d.primary = startServer(t, filepath.Join(d.dir, "primary"), restartAddr(t), plain...)
	case modeReplica:
		d.primary = startServer(t, filepath.Join(d.dir, "primary"), restartAddr(t), plain...)
		d.link = newLagLink(t, d.primary.addr)
		host, port, _ := net.SplitHostPort(d.link.addr())
		d.replica = startServer(t, filepath.Join(d.dir, "replica"), restartAddr(t),
			append(append([]string{}, plain...), "--replicaof", host, port)...)
		d.startSentinel(t)
		d.durable = 1
	default:
		t.Fatalf("unknown Redis mode %q: want replica, aof or none", mode)
	}
	t.Cleanup(d.stop)
	if mode == modeReplica {
		d.conn = redisConn{Master: sentinelMaster, Sentinels: []string{d.sentinel.addr}}
	} else {
		d.conn = redisConn{Addr: d.primary.addr}
	}
	return d
}

// startSentinel starts a Sentinel that watches the primary alone (quorum
// 1), calls it down after 1 s without an answer, and returns once it knows
// the replica as a candidate for promotion. Its failover timeout, 60 s, is
// also how long it leaves a replica replicating from another address than
// the primary's (the lag link) before pointing it at the primary: crash
// checks that it has not yet.
func (d *deployment) startSentinel(t *testing.T) {
	dir := filepath.Join(d.dir, "sentinel")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	host, port, _ := net.SplitHostPort(d.primary.addr)
	conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: it must be a file of its own
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"sentinel monitor %[1]s %[2]s %[3]s 1\nsentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 60000\n", sentinelMaster, host, port)), 0o644))
	d.sentinel = startServer(t, dir, freeAddr(t), conf, "--sentinel")
	sc := redis.NewSentinelClient(&redis.Options{Addr: d.sentinel.addr})
	defer sc.Close()
	require.Eventually(t, func() bool {
		replicas, err := sc.Replicas(context.Background(), sentinelMaster).Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == d.replica.addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "Sentinel knows the replica, in sync")
}

// crash SIGKILLs the primary. With a replica, it first holds the
// replication link until the primary has entries of the streams that the
// replica lacks (a network hiccup: what the replica will not have when
// promoted), and returns once Sentinel has promoted the replica (the
// clients follow through Sentinel).
func (d *deployment) crash(t *testing.T, streams ...string) {
	if d.mode == modeReplica {
		d.makeReplicaLag(t, streams)
	}
	d.primary.kill()
	d.crashedAt = time.Now()
	if d.mode != modeReplica {
		return
	}
	d.link.close()
	sc := redis.NewSentinelClient(&redis.Options{Addr: d.sentinel.addr})
	defer sc.Close()
	// Sentinel promotes on its own within about 2 s. Should an attempt of
	// its own fail, its next one would come only after twice its failover
	// timeout: from 10 s on, ask it for the failover (SENTINEL FAILOVER, a
	// controlled promotion), every 5 s.
	ctx := context.Background()
	nextAsk := d.crashedAt.Add(10 * time.Second)
	require.Eventually(t, func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
		if err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == d.replica.addr {
			return true
		}
		if time.Now().After(nextAsk) {
			t.Logf("asking Sentinel for the failover: %v", sc.Failover(ctx, sentinelMaster).Err())
			nextAsk = time.Now().Add(5 * time.Second)
		}
		return false
	}, 60*time.Second, 20*time.Millisecond, "Sentinel promotes the replica")
	d.promoted = time.Since(d.crashedAt)
	if d.promoted > 5*time.Second { // Sentinel's own account of why it took long
		if raw, err := os.ReadFile(filepath.Join(d.dir, "sentinel", "redis.log")); err == nil {
			t.Logf("Sentinel took %s to promote the replica; its log:\n%s", d.promoted, raw)
		}
	}
}

// makeReplicaLag holds the replication link and waits (up to 10 s: the
// relays may have nothing left to publish) until the primary's streams
// hold more entries than the replica's: events the producer's relays
// published, or children the consumers' relays did.
func (d *deployment) makeReplicaLag(t *testing.T, streams []string) {
	ctx := context.Background()
	pc := redis.NewClient(&redis.Options{Addr: d.primary.addr})
	defer pc.Close()
	rc := redis.NewClient(&redis.Options{Addr: d.replica.addr})
	defer rc.Close()
	info, err := rc.Info(ctx, "replication").Result()
	require.NoError(t, err)
	_, linkPort, _ := net.SplitHostPort(d.link.addr())
	require.Contains(t, info, "master_port:"+linkPort+"\r\n",
		"the replica still replicates through the lag link (Sentinel re-points it after its failover timeout)")
	d.link.hold()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var lag int64
		var err error
		for _, stream := range streams {
			p, perr := pc.XLen(ctx, stream).Result()
			r, rerr := rc.XLen(ctx, stream).Result()
			lag, err = lag+p-r, errors.Join(err, perr, rerr)
		}
		if err == nil && lag > 0 {
			d.lagged = lag
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Log("the primary wrote nothing the replica lacks within 10 s of holding the link: the crash tests no lag")
}

// restart starts the crashed server again with the same settings: from its
// append-only file (aof), empty (none), or empty as a replica of the
// promoted one (replica), which then holds everything again; in that mode
// it returns once the new replica is in sync, so that WAIT can succeed.
func (d *deployment) restart(t *testing.T) {
	d.restartedAt = time.Now()
	dead := d.primary
	if d.mode != modeReplica {
		d.primary = startServer(t, filepath.Join(d.dir, "primary"), dead.addr, dead.args...)
		return
	}
	host, port, _ := net.SplitHostPort(d.replica.addr)
	plain := []string{"--save", "", "--appendonly", "no"}
	d.primary, d.replica = d.replica, startServer(t, filepath.Join(d.dir, "old-primary"), dead.addr,
		append(plain, "--replicaof", host, port)...)
	c := redis.NewClient(&redis.Options{Addr: d.replica.addr})
	defer c.Close()
	require.Eventually(t, func() bool {
		info, err := c.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 60*time.Second, 20*time.Millisecond, "the old primary, back as a replica, in sync")
}

// stop kills every server of the deployment.
func (d *deployment) stop() {
	for _, s := range []*redisServer{d.sentinel, d.replica, d.primary} {
		if s != nil {
			s.kill()
		}
	}
	if d.link != nil {
		d.link.close()
	}
}

// losesOnCrash tells whether the mode's promise allows a crash to lose
// what the server acknowledged.
func (d *deployment) losesOnCrash() bool { return d.mode == modeNone }

// writeForeign writes an entry of kind straight to the stream, as a
// non-Arc producer would, and with a replica waits for it as the relays do
// (WAIT in the same pipeline, on the same connection).
func (d *deployment) writeForeign(ctx context.Context, client *redis.Client, stream string, kind foreignKind) (foreignWrite, error) {
	var add *redis.Cmd
	var wait *redis.Cmd
	_, perr := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		args := []any{"XADD", stream, "*"}
		for _, f := range kind.fields {
			args = append(args, f)
		}
		add = p.Do(ctx, args...)
		if d.durable > 0 {
			wait = p.Do(ctx, "WAIT", d.durable, redisstream.DefaultDurabilityTimeout.Milliseconds())
		}
		return nil
	})
	id, err := add.Text()
	if err == nil && id == "" { // a pipeline that never reached Redis leaves its commands unanswered
		err = fmt.Errorf("XADD not answered: %w", perr)
	}
	if err != nil {
		return foreignWrite{}, err
	}
	w := foreignWrite{id: id, kind: kind.name, at: time.Now(), confirmed: d.mode == modeAOF}
	if wait != nil {
		n, err := wait.Int64()
		w.confirmed = err == nil && n >= int64(d.durable)
	}
	return w, nil
}
