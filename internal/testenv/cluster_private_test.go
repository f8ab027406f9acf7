package testenv

import (
	"context"
	"testing"
	"time"
)

// The private cluster serves keys, promotes a replica when a primary is
// killed, takes the killed node back, and moves a slot with its keys.
func TestPrivateRedisCluster(t *testing.T) {
	c := PrivateRedisCluster(t, 3, 1)
	ctx := context.Background()
	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	if err := c.Client().Set(ctx, "{k}:a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := c.PrimaryFor("{k}:a")
	c.Kill(old)
	now := c.WaitFailover("{k}:a", old)
	if now == old {
		t.Fatalf("still on %s", old)
	}
	// The client finds the promoted replica once its slot map is
	// refreshed (go-redis: after a MOVED, or when the map is 10 s old).
	deadline := time.Now().Add(clusterWait)
	for {
		v, err := c.Client().Get(ctx, "{k}:a").Result()
		if err == nil && v == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after failover: %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
	c.Restart(old)

	var to string
	for _, p := range c.Primaries() {
		if p != now {
			to = p
		}
	}
	c.Reshard(now, to, c.Slot("{k}:a"))
	if got := c.PrimaryFor("{k}:a"); got != to {
		t.Fatalf("slot on %s after reshard, want %s", got, to)
	}
	if v, err := c.Client().Get(ctx, "{k}:a").Result(); err != nil || v != "1" {
		t.Fatalf("after reshard: %q, %v", v, err)
	}
}
