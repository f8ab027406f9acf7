package reliability

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// children runs the relay and consumer processes and kills them on demand.
type children struct {
	t     *testing.T
	mu    sync.Mutex
	procs map[string]*exec.Cmd
	specs map[string]roleSpec
}

func (c *children) start(spec roleSpec) {
	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRole$", "-test.count", "1")
	cmd.Env = append(os.Environ(), roleEnv+"="+string(raw))
	logf, err := os.Create(filepath.Join(c.t.TempDir(), spec.Name+".log"))
	require.NoError(c.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(c.t, cmd.Start())
	c.mu.Lock()
	c.procs[spec.Name], c.specs[spec.Name] = cmd, spec
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); _ = logf.Close() }()
}

// killAndRestart SIGKILLs one child and starts its replacement.
func (c *children) killAndRestart(name string) {
	c.mu.Lock()
	cmd, spec := c.procs[name], c.specs[name]
	c.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond)
	c.start(spec)
}

func (c *children) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range c.procs {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (c *children) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.specs {
		out = append(out, n)
	}
	return out
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
