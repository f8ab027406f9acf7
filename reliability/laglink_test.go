package reliability

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// lagLink is a TCP proxy on the replica's link to its primary. On loopback
// a replica is never behind, so a primary crash would lose nothing whether
// or not the relays wait for the replica; holding the link (a network
// hiccup) makes the replica lag behind what the primary acknowledged, as
// it can in production, and the promoted replica then lacks those writes.
// Only durable publishing (WAIT) keeps their outbox rows pending.
type lagLink struct {
	ln     net.Listener
	target string
	held   atomic.Bool // drop the primary's bytes rather than pass them on

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// newLagLink listens on a free loopback port and forwards to target.
func newLagLink(t *testing.T, target string) *lagLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &lagLink{ln: ln, target: target}
	l.wg.Add(1)
	go l.accept()
	return l
}

func (l *lagLink) addr() string { return l.ln.Addr().String() }

func (l *lagLink) accept() {
	defer l.wg.Done()
	for {
		down, err := l.ln.Accept()
		if err != nil {
			return // closed
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			_ = down.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, down, up)
		l.mu.Unlock()
		l.wg.Add(2)
		go func() { // replica → primary: its acknowledgements of what it has
			defer l.wg.Done()
			_, _ = io.Copy(up, down)
			_ = up.Close()
		}()
		go func() { // primary → replica: the replication stream
			defer l.wg.Done()
			defer down.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !l.held.Load() {
					if _, werr := down.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// hold stops passing the replication stream on: from now on the replica
// misses what the primary writes. The stream cannot resume (bytes are
// dropped): hold is for the moments before the primary's crash.
func (l *lagLink) hold() { l.held.Store(true) }

// close cuts every connection and stops listening.
func (l *lagLink) close() {
	_ = l.ln.Close()
	l.mu.Lock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
