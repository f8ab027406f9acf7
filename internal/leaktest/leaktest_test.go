package leaktest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// parked runs in this package until stop closes.
func parked(stop <-chan struct{}) { <-stop }

func TestCountSeesThePackagesGoroutinesUntilTheyEnd(t *testing.T) {
	const pkg = "github.com/arcmill/arcmill/internal/leaktest"
	stop := make(chan struct{})
	go parked(stop)
	deadline := time.Now().Add(time.Second)
	for Count(pkg) != 1 && time.Now().Before(deadline) { // not require.Eventually: its goroutine would count
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, 1, Count(pkg))
	close(stop)
	RequireNone(t, pkg, time.Second)
}
