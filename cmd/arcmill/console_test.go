package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// TestConsoleRefusesOpenListenWithoutToken: a console reachable from the
// network without a token is refused before anything is connected.
func TestConsoleRefusesOpenListenWithoutToken(t *testing.T) {
	r := arcmill(t, "", "console", "--listen", "0.0.0.0:0")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "non-loopback")
	r = arcmill(t, "", "console", "--help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "--read-token")
}

// syncBuffer is a bytes.Buffer safe for the command and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestConsoleServesUntilInterrupted serves the console on loopback with a
// token, answers the API with it, refuses without it, and stops cleanly.
func TestConsoleServesUntilInterrupted(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	t.Setenv("ARCMILL_REDIS_ADDR", testenv.RedisAddr(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	token := "console-test-token-0123456789"
	go func() {
		done <- run(ctx, []string{"console", "--listen", "127.0.0.1:0", "--stream", stream, "--token", token},
			strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	re := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/`)
	deadline := time.Now().Add(20 * time.Second)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		require.True(t, time.Now().Before(deadline), "no address in %q", stderr.String())
		time.Sleep(10 * time.Millisecond) // polling the command's output, with a deadline
	}
	res, err := http.Get("http://" + addr + "/api/overview")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/overview", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	http.DefaultClient.CloseIdleConnections()
	cancel()
	select {
	case code := <-done:
		assert.Contains(t, []int{exitOK, exitInterrupted}, code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("console did not stop")
	}
}
