package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A mistyped dead-letter stream is "nothing matched" (exit 3) with the
// reason, not an empty list and exit 0; a dlq command pointed at a stream
// of events is a usage error that names the dead-letter stream.
func TestDLQOnAMissingOrEventStreamSaysWhatIsWrong(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	for _, sub := range [][]string{{"list"}, {"show", "1-0"}, {"redrive"}, {"purge", "--all"}} {
		r := arcmill(t, "", append(append([]string{"dlq"}, sub...), "--stream", stream+":dlq")...)
		assert.Equal(t, exitNotFound, r.code, "%v: %s", sub, r.stderr)
		assert.Contains(t, r.stderr, "does not exist", sub)
		assert.Empty(t, r.stdout, sub)
	}
	assert.Zero(t, c.Exists(context.Background(), stream+":dlq").Val(), "nothing was created")

	r := arcmill(t, "", "publish", "order.created", "{}", "--stream", stream)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = arcmill(t, "", "dlq", "list", "--stream", stream)
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "holds Arc events, not dead letters")
	assert.Contains(t, r.stderr, "--stream "+stream+":dlq")
	assert.NotContains(t, r.stderr, "not JSON")
}

// tail on a mistyped stream fails (exit 3), with --group too, and creates
// nothing; --wait is the way to follow a stream that is yet to exist.
func TestTailOnAMissingStreamFailsAndCreatesNothing(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	r := arcmill(t, "", "tail", "--stream", stream, "--timeout", "5s")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Contains(t, r.stderr, "does not exist")
	assert.Contains(t, r.stderr, "--wait")
	r = arcmill(t, "", "tail", "--stream", stream, "--group", "audit", "--timeout", "5s")
	assert.Equal(t, exitNotFound, r.code, r.stderr)
	assert.Zero(t, c.Exists(context.Background(), stream).Val(), "--group created no stream")

	// --timeout covers connecting and creating the group too: seconds, for
	// a loaded machine's round trips.
	r = arcmill(t, "", "tail", "--stream", stream, "--group", "audit", "--wait", "--timeout", "2s")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stderr, "following "+stream, "it says what it follows")
	assert.EqualValues(t, 1, c.Exists(context.Background(), stream).Val(), "--wait with --group creates it")
}

// NATS-style patterns are refused in Arc's mode, where they would match
// only themselves, and work with --segments.
func TestTailRefusesNATSStylePatternsUnlessSegments(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	for _, typ := range []string{"order.paid", "invoice.created"} {
		r := arcmill(t, "", "publish", typ, "{}", "--stream", stream)
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	for _, p := range []string{"*.created", "order.>", "order.*.x"} {
		r := arcmill(t, "", "tail", p, "--stream", stream, "--timeout", "5s")
		assert.Equal(t, exitUsage, r.code, p)
		assert.Contains(t, r.stderr, "--segments", p)
	}
	r := arcmill(t, "", "tail", "*.created", "--segments", "--stream", stream, "--from-start", "--count", "1",
		"--timeout", "10s", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `"type":"invoice.created"`)
	assert.NotContains(t, r.stdout, "order.paid")
}

// A mistyped SQLite path is "nothing matched" and leaves no empty file.
func TestOutboxOnAMissingSQLiteFileLeavesNoFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shpo.db")
	for _, dsn := range []string{"file:" + path + "?_pragma=busy_timeout(1000)", path} {
		r := arcmill(t, "", "outbox", "status", "--dsn", dsn)
		assert.Equal(t, exitNotFound, r.code, r.stderr)
		assert.Contains(t, r.stderr, "no SQLite database at "+path)
		assert.NoFileExists(t, path)
	}
	r := arcmill(t, "", "dlq", "list", "--outbox", "--dsn", "file::memory:")
	assert.Equal(t, exitUsage, r.code, r.stderr)
}
