package testenv

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultNatsClusterURLs are the client URLs of the 3-node JetStream
// cluster scripts/services.sh starts (its nats_cluster step).
const DefaultNatsClusterURLs = "nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233"

// NatsClusterURLs returns the client URLs of the shared JetStream cluster
// (ARCMILL_NATS_CLUSTER_URLS, comma-separated, else
// DefaultNatsClusterURLs), or fails (or skips) t when a node does not
// answer. Tests must not kill its nodes: other packages' tests use it.
// Use PrivateNatsCluster for that.
func NatsClusterURLs(t testing.TB) []string {
	t.Helper()
	raw := setting("ARCMILL_NATS_CLUSTER_URLS", DefaultNatsClusterURLs)
	var urls []string
	for _, u := range strings.Split(raw, ",") {
		u = strings.TrimSpace(u)
		require(t, "nats cluster node", "ARCMILL_NATS_CLUSTER_URLS", strings.TrimPrefix(u, "nats://"))
		urls = append(urls, u)
	}
	return urls
}

// NatsCluster is a JetStream cluster of the test's own on loopback, whose
// nodes a test may kill and restart (PrivateNatsCluster).
type NatsCluster struct {
	t     testing.TB
	bin   string
	nodes []*natsNode
}

type natsNode struct {
	name                 string
	port, route, monitor int
	conf, log            string
	cmd                  *exec.Cmd
	exited               chan struct{} // closed when cmd has been waited for
	killed               bool
}

// natsReadyTimeout bounds the wait for a node to accept clients and see a
// JetStream meta leader; generous, for a loaded machine.
const natsReadyTimeout = 60 * time.Second

// PrivateNatsCluster starts n nats-server -js nodes clustered on free
// loopback ports, each with its own store in t.TempDir() and the server tag
// Tag(i) (so that a test can place a stream on one node), and returns once
// every node accepts clients and knows the JetStream meta leader. Each line
// of extraConfig is added to every node's configuration file (for example
// a mappings block). The nodes are killed when t ends.
func PrivateNatsCluster(t testing.TB, n int, extraConfig ...string) *NatsCluster {
	t.Helper()
	NatsURL(t) // the shared server is up, so nats-server is installed
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server is needed for a private cluster (make test installs it): %v", err)
	}
	ports := freePorts(t, 3*n)
	c := &NatsCluster{t: t, bin: bin}
	dir := t.TempDir()
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{name: "n" + strconv.Itoa(i+1), port: ports[3*i], route: ports[3*i+1],
			monitor: ports[3*i+2]})
	}
	for _, node := range c.nodes {
		var routes []string
		for _, other := range c.nodes {
			if other != node {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", other.route))
			}
		}
		store := filepath.Join(dir, node.name)
		conf := fmt.Sprintf("server_name: %s\nserver_tags: [%q]\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n"+
			"jetstream { store_dir: %q }\ncluster { name: arcmill-private, listen: 127.0.0.1:%d, routes: [%s] }\n%s\n",
			node.name, "node:"+node.name, node.port, node.monitor, store, node.route, strings.Join(routes, ", "),
			strings.Join(extraConfig, "\n"))
		node.conf, node.log = filepath.Join(dir, node.name+".conf"), filepath.Join(dir, node.name+".log")
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	for i := range c.nodes {
		c.start(i)
	}
	for i := range c.nodes {
		c.WaitReady(i)
	}
	return c
}

// freePorts reserves n distinct free loopback ports and releases them for
// the servers to take.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

func (c *NatsCluster) start(i int) {
	c.t.Helper()
	node := c.nodes[i]
	log, err := os.OpenFile(node.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(c.bin, "-c", node.conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting nats-server %s: %v", node.name, err)
	}
	node.cmd, node.killed, node.exited = cmd, false, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(node.exited)
}

// URLs returns the client URL of each node.
func (c *NatsCluster) URLs() []string {
	var out []string
	for _, node := range c.nodes {
		out = append(out, c.URLOf(node.name))
	}
	return out
}

// URL returns every node's client URL, comma-separated, as nats.Connect
// takes them.
func (c *NatsCluster) URL() string { return strings.Join(c.URLs(), ",") }

// URLOf returns the client URL of the node named name.
func (c *NatsCluster) URLOf(name string) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[c.Index(name)].port)
}

// Name returns the server name of node i (n1, n2, …), as JetStream names
// stream and consumer leaders.
func (c *NatsCluster) Name(i int) string { return c.nodes[i].name }

// Tag returns the server tag of node i, "node:" and its name: a stream
// whose placement asks for it lives on that node.
func (c *NatsCluster) Tag(i int) string { return "node:" + c.nodes[i].name }

// Index returns the index of the node named name, failing t if there is
// none.
func (c *NatsCluster) Index(name string) int {
	for i, node := range c.nodes {
		if node.name == name {
			return i
		}
	}
	c.t.Fatalf("no node named %q in the private nats cluster", name)
	return -1
}

// Kill SIGKILLs node i and waits for it to exit. Idempotent.
func (c *NatsCluster) Kill(i int) {
	node := c.nodes[i]
	if node.cmd == nil || node.killed {
		return
	}
	node.killed = true
	_ = node.cmd.Process.Kill()
	<-node.exited
}

// Restart starts node i again, with its store, after Kill, and waits until
// it accepts clients and knows the JetStream meta leader.
func (c *NatsCluster) Restart(i int) {
	c.t.Helper()
	c.Kill(i)
	c.start(i)
	c.WaitReady(i)
}

// WaitReady waits until node i accepts clients and its /jsz names the
// JetStream meta leader, failing t after a minute.
func (c *NatsCluster) WaitReady(i int) {
	c.t.Helper()
	node := c.nodes[i]
	deadline := time.Now().Add(natsReadyTimeout)
	client := http.Client{Timeout: 2 * time.Second}
	for {
		leader, err := metaLeader(&client, node.monitor)
		if err == nil && leader != "" {
			return
		}
		select {
		case <-node.exited:
			c.t.Fatalf("nats-server %s exited; its log: %s", node.name, node.log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server %s: no JetStream meta leader after %v (last error %v); its log: %s",
				node.name, natsReadyTimeout, err, node.log)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
}

// metaLeader reads the meta leader's name from a node's /jsz.
func metaLeader(client *http.Client, monitor int) (string, error) {
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", monitor))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return "", err
	}
	if jsz.Meta == nil {
		return "", nil
	}
	return jsz.Meta.Leader, nil
}
