package console

import (
	"context"
	stdsql "database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/middleware"
	"github.com/arcmill/arcmill/outbox"
)

// Test credentials.
const (
	opToken   = "operator-token-0123456789"
	readToken = "reader-token-0123456789ab"
	opUser    = "alice"
	opPass    = "alice-password"
)

// testWait is the longest any condition may take.
const testWait = 20 * time.Second

// bundle is one test's fixture: its own stream, dead-letter stream and
// outbox table on the real servers, removed at the end.
type bundle struct {
	t      testing.TB
	rdb    *redis.Client
	db     *stdsql.DB
	stream string
	dlq    string
	ob     *outbox.Outbox
	table  string
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	db, err := stdsql.Open("pgx", testenv.PostgresDSN(t))
	require.NoError(t, err)
	b := &bundle{t: t, rdb: rdb, db: db, stream: "arcmill-console-test:" + uuid.NewString()}
	b.dlq = b.stream + ":dlq"
	b.table = "arcmill_console_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	b.ob, err = outbox.New(db, outbox.Config{Table: b.table})
	require.NoError(t, err)
	require.NoError(t, b.ob.Migrate(context.Background()))
	t.Cleanup(func() {
		ctx := context.Background()
		rdb.Del(ctx, b.stream, b.dlq)
		for _, q := range []string{"DROP TABLE IF EXISTS " + b.table, "DROP TABLE IF EXISTS " + b.table + "_lock",
			"DROP FUNCTION IF EXISTS " + b.table + "_notify() CASCADE"} {
			_, _ = db.ExecContext(ctx, q)
		}
		_ = db.Close()
		_ = rdb.Close()
	})
	return b
}

// config is a console config over the bundle's sources, with credentials.
func (b *bundle) config() Config {
	return Config{Redis: b.rdb, Streams: []Stream{{Name: b.stream}}, Outboxes: []Outbox{{Name: "orders", Outbox: b.ob}},
		Auth: Auth{Credentials: []Credential{
			{Name: "ops", Token: opToken, Role: Operator},
			{Name: "reader", Token: readToken, Role: ReadOnly},
			{Name: opUser, Password: opPass, Role: Operator},
		}}}
}

// console returns a console for cfg, closed at the end.
func (b *bundle) console(cfg Config) *Console {
	b.t.Helper()
	c, err := New(cfg)
	require.NoError(b.t, err)
	b.t.Cleanup(func() { require.NoError(b.t, c.Close()) })
	return c
}

// deadLetter writes n stream dead letters of type typ failing with errf(i).
func (b *bundle) deadLetters(typ string, n int, errf func(i int) string) []string {
	b.t.Helper()
	ctx := context.Background()
	pipe := b.rdb.Pipeline()
	var eventIDs []string
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent(typ, map[string]any{"i": i, "card": "4111-secret"}, arc.Meta{CorrelationID: "corr-1"})
		require.NoError(b.t, err)
		env, err := middleware.DeadLetteredEvent{Event: ev, Error: middleware.ErrorInfo{Message: errf(i), Stack: "stack-secret"},
			Attempts: 3, FirstFailedAt: now, LastFailedAt: now, Reason: middleware.ReasonRetryExhausted,
			HandlerName: "billing"}.MarshalArc()
		require.NoError(b.t, err)
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: b.dlq, Values: []any{redisstream.FieldType, typ,
			redisstream.FieldOriginalStream, b.stream, redisstream.FieldOriginalID, fmt.Sprintf("%d-0", i+1),
			redisstream.FieldGroup, "billing", redisstream.FieldData, string(env)}})
		eventIDs = append(eventIDs, ev.Meta.ID)
		if pipe.Len() >= 1000 {
			_, err = pipe.Exec(ctx)
			require.NoError(b.t, err)
		}
	}
	_, err := pipe.Exec(ctx)
	require.NoError(b.t, err)
	return eventIDs
}

// outboxDead writes n outbox rows and dead-letters them with msg.
func (b *bundle) outboxDead(typ string, n int, msg string) []string {
	b.t.Helper()
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	require.NoError(b.t, err)
	var ids []string
	for i := 0; i < n; i++ {
		ev, err := arc.NewEvent(typ, map[string]any{"i": i, "secret": "outbox-secret"}, arc.Meta{})
		require.NoError(b.t, err)
		require.NoError(b.t, b.ob.Write(ctx, tx, outbox.Entry{Topic: b.stream, Event: ev}))
		ids = append(ids, ev.Meta.ID)
	}
	require.NoError(b.t, tx.Commit())
	now := time.Now().UnixMilli()
	_, err = b.db.ExecContext(ctx, "UPDATE "+b.table+" SET status = 2, attempts = 5, last_error = $1, first_failed_at = $2,"+
		" last_failed_at = $2 WHERE event_type = $3", msg, now, typ)
	require.NoError(b.t, err)
	return ids
}

// client calls a console over HTTP as one caller.
type client struct {
	t    *testing.T
	srv  *httptest.Server
	auth string // Authorization header
	csrf string
}

func (b *bundle) serve(c *Console) *httptest.Server {
	srv := httptest.NewServer(c)
	b.t.Cleanup(srv.Close)
	return srv
}

func bearer(t *testing.T, srv *httptest.Server, token string) *client {
	return &client{t: t, srv: srv, auth: "Bearer " + token}
}

func basic(t *testing.T, srv *httptest.Server, user, pass string) *client {
	cl := &client{t: t, srv: srv, auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	var who Whoami
	cl.getJSON("/api/whoami", &who)
	cl.csrf = who.CSRF
	return cl
}

func (cl *client) do(method, path, contentType, body string, header map[string]string) (int, []byte) {
	cl.t.Helper()
	req, err := http.NewRequest(method, cl.srv.URL+path, strings.NewReader(body))
	require.NoError(cl.t, err)
	if cl.auth != "" {
		req.Header.Set("Authorization", cl.auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if cl.csrf != "" && method == http.MethodPost {
		req.Header.Set("X-CSRF-Token", cl.csrf)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(cl.t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(cl.t, err)
	return res.StatusCode, out
}

func (cl *client) getJSON(path string, v any) int {
	cl.t.Helper()
	status, body := cl.do(http.MethodGet, path, "", "", nil)
	if v != nil && status < 300 {
		require.NoError(cl.t, json.Unmarshal(body, v), string(body))
	}
	return status
}

func (cl *client) postJSON(path string, in, out any) (int, []byte) {
	cl.t.Helper()
	b, err := json.Marshal(in)
	require.NoError(cl.t, err)
	status, body := cl.do(http.MethodPost, path, "application/json", string(b), nil)
	if out != nil && status < 300 {
		require.NoError(cl.t, json.Unmarshal(body, out), string(body))
	}
	return status, body
}

// waitTask polls a task until it is no longer running.
func (cl *client) waitTask(id string) Task {
	cl.t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		var t Task
		require.Equal(cl.t, http.StatusOK, cl.getJSON("/api/tasks/"+id, &t))
		if t.State != TaskRunning {
			return t
		}
		require.True(cl.t, time.Now().Before(deadline), "task %s still running: %+v", id, t)
		time.Sleep(20 * time.Millisecond) // polling a real condition, with a deadline
	}
}
