package redisstream

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
)

// Our stand-in for the universal suite's TestNoAck (see pubsub_test.go).
// A consumer delivers at most MaxInFlight messages not yet settled (one by
// default, Watermill's rule): while they are unacked, the next message of
// the subscription is held back, though the consumer has it in hand. A
// nacked message is delivered again, before the next one; an ack lets the
// next one through, and every entry ends acknowledged.
func TestSubscriber_UnackedMessagesHoldBackTheNext(t *testing.T) {
	t.Parallel()
	for _, inFlight := range []int{1, 3} {
		t.Run(fmt.Sprint("MaxInFlight ", inFlight), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ids := b.publish("order.placed", inFlight+1)
			sub, msgs := b.subscribe(SubscriberConfig{MaxInFlight: inFlight, ClaimIdle: testClaimIdle})
			receive := func() *message.Message {
				t.Helper()
				select {
				case m := <-msgs:
					return m
				case <-time.After(testWait):
					t.Fatal("no message")
				}
				return nil
			}
			var held []*message.Message
			for i := 0; i < inFlight; i++ {
				m := receive()
				assert.Equal(t, ids[i], m.Metadata.Get(MetadataEntryID), "in order")
				held = append(held, m)
			}
			// The positive event: two heartbeats that find the consumer holding
			// every entry, the held-back one included (it was read in the same
			// batch), so it had the time to deliver it, and did not.
			for i := 0; i < 2; i++ {
				sub.signals.Heartbeat.WaitUntil(testWait, func(n int) bool { return n == inFlight+1 })
			}
			select {
			case m := <-msgs:
				t.Fatalf("entry %s delivered while %d message(s) were unacked", m.Metadata.Get(MetadataEntryID), inFlight)
			default:
			}

			held[0].Nack()
			again := receive()
			assert.Equal(t, ids[0], again.Metadata.Get(MetadataEntryID), "the nacked message comes again, first")
			assert.Equal(t, held[0].UUID, again.UUID)
			again.Ack()
			next := receive()
			assert.Equal(t, ids[inFlight], next.Metadata.Get(MetadataEntryID), "an ack lets the next one through")
			next.Ack()
			for _, m := range held[1:] {
				m.Ack()
			}
			require.Eventually(t, func() bool { return b.pending("g") == 0 }, testWait, 5*time.Millisecond)
		})
	}
}

// restartableRedis is a redis-server of the test's own on a free port (as
// testenv.PrivateRedis), with an append-only file synced on every write, that can
// be killed and started again on the same port and files, with nothing it
// acknowledged lost.
type restartableRedis struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startRestartableRedis(t *testing.T) *restartableRedis {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	r := &restartableRedis{t: t, addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

// start runs the server and waits until it answers.
func (r *restartableRedis) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always")
	require.NoError(r.t, r.cmd.Start())
	client := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
	defer client.Close()
	require.Eventually(r.t, func() bool { return client.Ping(context.Background()).Err() == nil }, testWait,
		10*time.Millisecond, "redis-server did not start")
}

// kill ends the server at once (SIGKILL), as a crash would.
func (r *restartableRedis) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Our stand-in for the universal suite's TestReconnect (see
// pubsub_test.go). Redis is killed while the subscriber is mid-stream, with
// a message in its handler, and events are published while it is down;
// the subscriber's commands fail meanwhile. Once Redis is back (on the same
// files: nothing it acknowledged is lost), the subscriber resumes by itself
// and every event
// whose publish succeeded is handled, nothing lost; the message handled
// across the outage is acknowledged once Redis is back.
func TestSubscriber_ResumesAfterRedisRestart(t *testing.T) {
	t.Parallel()
	r := startRestartableRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() { _ = client.Close() })
	stream := "arcmill-test:reconnect"
	pub, err := NewPublisher(PublisherConfig{Client: client})
	require.NoError(t, err)
	var mu sync.Mutex
	published := map[string]bool{} // event ids whose publish succeeded
	events := make([]*message.Message, 200)
	for i := range events {
		ev, err := arc.NewEvent("order.placed", map[string]int{"i": i}, arc.Meta{})
		require.NoError(t, err)
		events[i], err = arc.ToMessage(ev)
		require.NoError(t, err)
	}
	publish := func(from, to int) {
		for _, msg := range events[from:to] {
			for pub.Publish(stream, msg) != nil { // Redis is down: publish again until it is back
				time.Sleep(20 * time.Millisecond) // a publisher's own retry pace, not a wait for a condition
			}
			mu.Lock()
			published[msg.UUID] = true
			mu.Unlock()
		}
	}
	publish(0, 100)

	logs := watermill.NewCaptureLogger()
	sub, err := NewSubscriber(SubscriberConfig{Client: client, ConsumerGroup: "g", BlockTime: testBlockTime,
		ClaimIdle: testClaimIdle, Logger: logs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	var handled counter
	killed, resumed := make(chan struct{}), make(chan struct{})
	go func() {
		for m := range msgs {
			if handled.add(m.UUID) == 1 && handled.len() == 30 {
				close(killed) // kill Redis while this message is in the handler
				<-resumed
			}
			m.Ack()
		}
	}()

	select {
	case <-killed:
	case <-time.After(testWait):
		t.Fatal("the subscriber did not reach the 30th message")
	}
	r.kill()
	more := make(chan struct{})
	go func() { defer close(more); publish(100, 200) }() // retried while Redis is down
	close(resumed)
	// The subscriber has met the outage: its commands (XACK, XREADGROUP)
	// fail, and it goes on.
	require.Eventually(t, func() bool {
		for _, m := range logs.Captured()[watermill.ErrorLogLevel] {
			if strings.Contains(m.Msg, "failed") {
				return true
			}
		}
		return false
	}, testWait, 10*time.Millisecond, "a command failed while Redis was down")
	r.start()
	<-more

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		handled.mu.Lock()
		defer handled.mu.Unlock()
		for id := range published {
			if handled.n[id] == 0 {
				return false
			}
		}
		return true
	}, 3*testWait, 10*time.Millisecond, "every published event handled after the restart")
	require.Eventually(t, func() bool {
		p, err := client.XPending(context.Background(), stream, "g").Result()
		return err == nil && p.Count == 0
	}, testWait, 10*time.Millisecond, "everything handled is acknowledged, the message across the outage too")
	assert.Len(t, published, 200)
}
