package reliability

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
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
	logf, err := os.CreateTemp(c.t.TempDir(), spec.Name+"-*.log") // one per start: a restart keeps the killed one's
	require.NoError(c.t, err)
	path := logf.Name()
	// The log goes with the temporary directory: show its end when the run
	// failed, to tell why a process did not do its part. Registered after
	// TempDir's own cleanup, so it runs before the directory is removed.
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("last lines of %s (pid %d):\n%s", spec.Name, cmd.Process.Pid, tailOf(path, 25))
		}
	})
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

// tailOf returns the last n lines of the file at path, or why it cannot.
func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
