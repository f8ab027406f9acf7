package testenv

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The shared cluster answers on every node, and a private one comes up,
// loses a node and gets it back with a meta leader on every node.
func TestNatsClusters(t *testing.T) {
	for _, u := range NatsClusterURLs(t) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(u, "nats://"))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		conn.Close()
	}
	c := PrivateNatsCluster(t, 3)
	if got := len(c.URLs()); got != 3 || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URLs %v, URL %q", c.URLs(), c.URL())
	}
	client := &http.Client{Timeout: 2 * time.Second}
	c.Kill(1)
	c.Kill(1) // idempotent
	if _, err := metaLeader(client, c.nodes[1].monitor); err == nil {
		t.Fatal("a killed node still answers")
	}
	c.Restart(1)
	for i := range c.nodes {
		if leader, err := metaLeader(client, c.nodes[i].monitor); err != nil || leader == "" {
			t.Fatalf("node %s: meta leader %q, %v", c.Name(i), leader, err)
		}
	}
	if c.Index("n3") != 2 || c.Tag(2) != "node:n3" || c.URLOf("n2") != c.URLs()[1] {
		t.Fatal("names, tags and URLs disagree")
	}
}
