package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/outbox"
)

// dlq list shows the first 100 and says so; --all and --limit page
// through the rest; --summary counts by type, reason and error.
func TestDLQListSaysShowingNOfMAndSummarizes(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	dlq := stream + ":dlq"
	for i := 0; i < 105; i++ {
		typ := "order.created"
		if i%5 == 0 {
			typ = "payment.failed"
		}
		deadLetter(t, c, dlq, stream, typ)
	}
	lines := func(s string) int { return strings.Count(s, "\n") }

	r := arcmill(t, "", "dlq", "list", "--stream", dlq, "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 100, lines(r.stdout))
	assert.Contains(t, r.stderr, "showing 100 of 105 dead letter(s) on "+dlq)
	assert.Contains(t, r.stderr, "--all")
	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--all", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 105, lines(r.stdout))
	assert.Contains(t, r.stderr, "showing 105 of 105")
	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--type", "payment.failed", "--limit", "3", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 3, lines(r.stdout))
	assert.Contains(t, r.stderr, "showing 3 of 21")
	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--type", "no.such")
	assert.Equal(t, exitNotFound, r.code, r.stderr)

	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--summary", "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var s summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	assert.Equal(t, 105, s.Total)
	assert.Equal(t, map[string]int{"order.created": 84, "payment.failed": 21}, s.ByType)
	assert.Equal(t, map[string]int{"retry_exhausted": 105}, s.ByReason)
	assert.Equal(t, map[string]int{"boom": 105}, s.ByError)
	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--summary", "--format", "text")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "by type:\n       84  order.created\n       21  payment.failed")

	r = arcmill(t, "", "dlq", "list", "--stream", dlq, "--all", "--limit", "5")
	assert.Equal(t, exitUsage, r.code)
}

func TestOutboxDLQListSaysShowingNOfM(t *testing.T) {
	dsn := "file:" + filepath.Join(t.TempDir(), "shop.db") + "?_pragma=busy_timeout(10000)"
	ob := outboxFixture(t, outbox.SQLite, "sqlite", dsn)
	flags := []string{"--outbox", "--dsn", dsn, "--table", ob.Table(), "--format", "json"}
	r := arcmill(t, "", append([]string{"dlq", "list", "--limit", "1"}, flags...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 1, strings.Count(r.stdout, "\n"))
	assert.Contains(t, r.stderr, "showing 1 of 2")
	r = arcmill(t, "", append([]string{"dlq", "list", "--all"}, flags...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 2, strings.Count(r.stdout, "\n"))
	r = arcmill(t, "", append([]string{"dlq", "list", "--summary"}, flags...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	var s summary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	assert.Equal(t, map[string]int{"mail.sent": 1, "mail.bounced": 1}, s.ByType)
	assert.Equal(t, map[string]int{"smtp down": 2}, s.ByError)
}

// Help spells flags as the docs do (--flag), and flag mistakes say what is
// wrong in that spelling.
func TestHelpAndFlagErrorsUseDoubleDashes(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"tail", "publish", "dlq", "outbox"} {
		r := arcmill(t, "", cmd, "--help")
		require.Equal(t, exitOK, r.code, cmd)
		_, flagsPart, ok := strings.Cut(r.stdout, "\nFlags:\n")
		require.True(t, ok, cmd)
		for _, line := range strings.Split(flagsPart, "\n") {
			if strings.HasPrefix(line, "  -") {
				assert.True(t, strings.HasPrefix(line, "  --"), "%s: %q", cmd, line)
			}
		}
	}
	cases := map[string][]string{
		`--limit "abc": not a whole number`:          {"dlq", "list", "--limit", "abc"},
		`--timeout "5": not a duration`:              {"tail", "--timeout", "5"},
		"unknown flag --nope":                        {"dlq", "list", "--nope"},
		"--count needs a value":                      {"tail", "--count"},
		`--id " ": must not be empty`:                {"dlq", "list", "--id", " "},
		"--count and --timeout must not be negative": {"tail", "--count", "-1"},
	}
	for want, args := range cases {
		r := arcmill(t, "", args...)
		assert.Equal(t, exitUsage, r.code, args)
		assert.Contains(t, r.stderr, want, args)
	}
}

// dlq show prints an indented, readable view as text and one JSON document
// with the envelope as an object (not a string) with --format json; the
// outbox's variant prints JSON, not Go's map syntax.
func TestDLQShowIsReadableAsTextAndStructuredAsJSON(t *testing.T) {
	c := redisClient(t)
	stream := tempStream(t, c)
	dlq := stream + ":dlq"
	ev := deadLetter(t, c, dlq, stream, "order.created")

	r := arcmill(t, "", "dlq", "show", ev.Meta.ID, "--stream", dlq, "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var doc struct {
		Entry map[string]any `json:"entry"`
		Data  struct {
			Event    map[string]any `json:"event"`
			Attempts int            `json:"attempts"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc))
	assert.Equal(t, ev.Meta.ID, doc.Entry["eventId"])
	assert.Equal(t, "order.created", doc.Data.Event["type"])
	assert.Equal(t, 3, doc.Data.Attempts)

	r = arcmill(t, "", "dlq", "show", ev.Meta.ID, "--stream", dlq, "--format", "text")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "data:\n  {\n")
	assert.Contains(t, r.stdout, "\n    \"attempts\": 3")

	dsn := "file:" + filepath.Join(t.TempDir(), "shop.db") + "?_pragma=busy_timeout(10000)"
	ob := outboxFixture(t, outbox.SQLite, "sqlite", dsn)
	r = arcmill(t, "", "dlq", "show", "3", "--outbox", "--dsn", dsn, "--table", ob.Table(), "--format", "text")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "map[")
	assert.Contains(t, r.stdout, "metadata:\n  {")
	assert.Contains(t, r.stdout, "payload:\n  {")
	r = arcmill(t, "", "dlq", "show", "3", "--outbox", "--dsn", dsn, "--table", ob.Table(), "--format", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var row map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &row))
	assert.IsType(t, map[string]any{}, row["payload"], "the payload as JSON, not a string")
}
