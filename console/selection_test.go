package console

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/outbox"
)

// twins writes one event to two topics of the bundle's outbox and
// dead-letters both rows: two dead letters with one event id.
func (b *bundle) twins() arc.Event {
	b.t.Helper()
	ctx := context.Background()
	ev, err := arc.NewEvent("order.created", map[string]int{"n": 1}, arc.Meta{})
	require.NoError(b.t, err)
	tx, err := b.db.BeginTx(ctx, nil)
	require.NoError(b.t, err)
	require.NoError(b.t, b.ob.Write(ctx, tx, outbox.Entry{Topic: "topic-a", Event: ev}, outbox.Entry{Topic: "topic-b", Event: ev}))
	require.NoError(b.t, tx.Commit())
	_, err = b.db.ExecContext(ctx, "UPDATE "+b.table+" SET status = 2, attempts = 5, last_error = 'x', first_failed_at = 1, last_failed_at = 1")
	require.NoError(b.t, err)
	return ev
}

// Purging one of two outbox dead letters of one event deletes that one.
func TestPurgeOneOutboxLetterKeepsItsTwin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.twins()
	op := bearer(t, b.serve(b.console(b.config())), opToken)
	var lr LettersResponse
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters?source=outbox:orders", &lr))
	require.Len(t, lr.Letters, 2)
	picked, twin := lr.Letters[0], lr.Letters[1]
	var pr PurgeResponse
	status, body := op.postJSON("/api/purge", PurgeRequest{Selection: Selection{Letters: []LetterRef{{Source: picked.Source, ID: picked.ID}}},
		Confirm: "purge"}, &pr)
	require.Equal(t, http.StatusOK, status, string(body))
	assert.EqualValues(t, 1, pr.Purged)
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters?source=outbox:orders", &lr))
	require.Len(t, lr.Letters, 1, "one letter picked, both purged")
	assert.Equal(t, twin.ID, lr.Letters[0].ID)
}

// Redriving one of two outbox dead letters of one event moves that one,
// and never its twin, even when the picked one is gone by then.
func TestRedriveOneOutboxLetterKeepsItsTwin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.twins()
	c := b.console(b.config())
	op := bearer(t, b.serve(c), opToken)
	var lr LettersResponse
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters?source=outbox:orders", &lr))
	require.Len(t, lr.Letters, 2)
	picked, twin := lr.Letters[0], lr.Letters[1]

	// The picked one is purged between the selection and the move.
	ctx := context.Background()
	l, err := c.find(ctx, picked.Source, picked.ID)
	require.NoError(t, err)
	_, err = b.ob.PurgeDeadLetters(ctx, outbox.Filter{Seqs: []int64{l.row.Seq}})
	require.NoError(t, err)
	moved, err := c.redriveOne(ctx, l)
	require.NoError(t, err)
	assert.False(t, moved, "a gone letter is skipped")
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters?source=outbox:orders", &lr))
	require.Len(t, lr.Letters, 1, "the twin was redriven in its place")

	var task Task
	status, body := op.postJSON("/api/redrive", Selection{Letters: []LetterRef{{Source: twin.Source, ID: twin.ID}}}, &task)
	require.Equal(t, http.StatusAccepted, status, string(body))
	done := op.waitTask(task.ID)
	assert.EqualValues(t, 1, done.Moved)
	st, err := b.ob.Status(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Pending)
	assert.Zero(t, st.Dead)
}

// A dead letter's original_stream names where it goes back, but a
// redrive (or Arc's replay) writes only to a stream the console is
// configured with: anything else is not redrivable, and says why.
func TestRedriveWritesOnlyToConfiguredStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	victim := "arcmill-console-victim:" + uuid.NewString()
	t.Cleanup(func() { b.rdb.Del(context.Background(), victim) })
	ev := mustEvent(t, "payment.refund")
	env, err := middlewareEnvelope(ev, "boom")
	require.NoError(t, err)
	id, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.dlq, Values: []any{redisstream.FieldType, ev.Type,
		redisstream.FieldOriginalStream, victim, redisstream.FieldOriginalID, "1-0", redisstream.FieldData, env}}).Result()
	require.NoError(t, err)
	own := b.deadLetters("order.created", 1, func(int) string { return "boom" })
	srv := b.serve(b.console(b.config()))
	op := bearer(t, srv, opToken)
	src := "stream:" + b.dlq

	var lr LettersResponse
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters?source="+src, &lr))
	require.Len(t, lr.Letters, 2)
	for _, l := range lr.Letters {
		if l.ID == id {
			assert.False(t, l.Redrivable)
			assert.Contains(t, l.NoRedrive, victim)
		} else {
			assert.True(t, l.Redrivable, "a letter of a configured stream still goes back")
		}
	}
	var d LetterDetail
	require.Equal(t, http.StatusOK, op.getJSON("/api/letters/"+src+"/"+id, &d))
	assert.False(t, d.Redrivable)
	_, page := (&client{t: t, srv: srv, auth: op.auth}).do(http.MethodGet, "/letters/"+src+"/"+id, "", "", nil)
	assert.Contains(t, string(page), "cannot be redriven")

	var task Task
	status, body := op.postJSON("/api/redrive", Selection{Letters: []LetterRef{{Source: src, ID: id}}}, &task)
	require.Equal(t, http.StatusAccepted, status, string(body))
	done := op.waitTask(task.ID)
	assert.Zero(t, done.Moved)
	assert.EqualValues(t, 1, done.Skipped)

	status, body = op.postJSON("/admin/outbox/dead-letter/"+ev.Meta.ID+"/replay", nil, nil)
	assert.Equal(t, http.StatusConflict, status, string(body))
	assert.Contains(t, string(body), victim)
	n, err := b.rdb.XLen(ctx, victim).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a redrive wrote into %s, which the console is not configured with", victim)

	// Arc's replay of a letter of a configured stream still works.
	var rp ArcReplay
	status, body = op.postJSON("/admin/outbox/dead-letter/"+own[0]+"/replay", nil, &rp)
	require.Equal(t, http.StatusOK, status, string(body))
	assert.True(t, rp.Replayed)
}
