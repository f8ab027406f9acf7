package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/leaktest"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ob := &Outbox{} // no outbox: only the stream rows matter
	_ = ob
	for name, cfg := range map[string]Config{
		"nothing to show":    {},
		"streams, no redis":  {Streams: []Stream{{Name: "s"}}},
		"empty stream name":  {Redis: fakeClient(), Streams: []Stream{{}}},
		"dlq is the stream":  {Redis: fakeClient(), Streams: []Stream{{Name: "s", DeadLetter: "s"}}},
		"dlq twice":          {Redis: fakeClient(), Streams: []Stream{{Name: "a", DeadLetter: "d"}, {Name: "b", DeadLetter: "d"}}},
		"nil outbox":         {Outboxes: []Outbox{{Name: "x"}}},
		"negative rate":      {Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, RedriveRate: -1},
		"admin under api":    {Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, AdminPrefix: "/api/x"},
		"short token":        {Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, Auth: Auth{Credentials: []Credential{{Name: "a", Token: "short", Role: Operator}}}},
		"credential no role": {Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, Auth: Auth{Credentials: []Credential{{Name: "a", Password: "p"}}}},
		"short csrf key":     {Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, CSRFKey: []byte("short")},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	c, err := New(Config{Redis: fakeClient(), Streams: []Stream{{Name: "arc:events"}}})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.Equal(t, "arc:events:dlq", c.cfg.Streams[0].DeadLetter)
	assert.EqualValues(t, 10000, c.cfg.Streams[0].MaxLen, "Arc's stream is trimmed as Arc trims it")
	assert.Equal(t, DefaultAdminPrefix, c.cfg.AdminPrefix)
	assert.Equal(t, DefaultRedriveRate, c.cfg.RedriveRate)
}

func TestCheckListen(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080"} {
		assert.NoError(t, CheckListen(addr, Auth{}), addr)
	}
	for _, addr := range []string{":8080", "0.0.0.0:8080", "10.1.2.3:8080"} {
		assert.ErrorIs(t, CheckListen(addr, Auth{}), ErrInsecureListen, addr)
	}
	withToken := Auth{Credentials: []Credential{{Name: "a", Token: opToken, Role: Operator}}}
	assert.NoError(t, CheckListen(":8080", withToken))
	withMiddleware := Auth{Middleware: func(h http.Handler) http.Handler { return h }}
	assert.NoError(t, CheckListen("0.0.0.0:8080", withMiddleware))
}

func TestServeRefusesInsecureAddressAndStopsCleanly(t *testing.T) {
	defer leaktest.RequireNone(t, "github.com/arcmill/arcmill/console", 5*time.Second)
	c, err := New(Config{Redis: fakeClient(), Streams: []Stream{{Name: "s"}}})
	require.NoError(t, err)
	require.ErrorIs(t, Serve(context.Background(), "0.0.0.0:0", c, nil), ErrInsecureListen)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", c, func(a net.Addr) { addrs <- a.String() }) }()
	addr := <-addrs
	res, err := http.Get("http://" + addr + "/assets/app.css")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	cancel()
	require.NoError(t, <-done)
	http.DefaultClient.CloseIdleConnections()
}

func TestNoAuthAnswersLoopbackOnly(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Redis: fakeClient(), Streams: []Stream{{Name: "s"}}})
	require.NoError(t, err)
	defer c.Close()
	req := httptest.NewRequest(http.MethodGet, "http://localhost:8080/assets/app.js", nil)
	req.RemoteAddr = "10.0.0.7:5000"
	w := httptest.NewRecorder()
	c.ServeHTTP(w, req)
	require.Equal(t, http.StatusForbidden, w.Code)
	req.RemoteAddr = "127.0.0.1:5000"
	w = httptest.NewRecorder()
	c.ServeHTTP(w, req)
	require.Equal(t, http.StatusOK, w.Code)
	// A reverse proxy on this machine makes every client look local.
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	w = httptest.NewRecorder()
	c.ServeHTTP(w, req)
	require.Equal(t, http.StatusForbidden, w.Code)
}

// A hostile page whose name rebinds to 127.0.0.1 reaches a loopback
// console from the operator's browser as a same-origin caller: without
// Auth, only a Host naming this machine comes in.
func TestNoAuthRefusesForeignHost(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Redis: fakeClient(), Streams: []Stream{{Name: "s"}}})
	require.NoError(t, err)
	defer c.Close()
	get := func(host string) int {
		req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
		req.Host = host
		req.RemoteAddr = "127.0.0.1:5000"
		w := httptest.NewRecorder()
		c.ServeHTTP(w, req)
		return w.Code
	}
	for _, host := range []string{"localhost", "localhost:8080", "LocalHost.:8080", "console.localhost:9", "127.0.0.1",
		"127.0.0.1:8080", "127.1.2.3:80", "[::1]:8080", "[::1]"} {
		assert.Equal(t, http.StatusOK, get(host), host)
	}
	for _, host := range []string{"evil.example:8080", "evil.example", "localhost.evil.example", "evillocalhost",
		"10.0.0.7:8080", "[::2]:80", ""} {
		assert.Equal(t, http.StatusForbidden, get(host), host)
	}

	// Nor may it change anything, with everything else a browser would
	// send from the rebound origin, the CSRF token included.
	req := httptest.NewRequest(http.MethodPost, "http://evil.example:8080/api/tasks/x/cancel", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	req.Header.Set("Origin", "http://evil.example:8080")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("X-CSRF-Token", c.csrfToken(Principal{Name: "local"}))
	w := httptest.NewRecorder()
	c.ServeHTTP(w, req)
	assert.Equal(t, http.StatusForbidden, w.Code, w.Body.String())
}

// Auth.Middleware judges an Authorization header the console's own
// credentials do not match: the service's bearer tokens reach it.
func TestMiddlewareJudgesUnknownAuthorization(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Redis: fakeClient(), Streams: []Stream{{Name: "s"}}, Auth: Auth{
		Credentials: []Credential{{Name: "ops", Token: opToken, Role: Operator}},
		Middleware: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") == "Bearer service-jwt" {
					next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Name: "svc", Role: Operator})))
					return
				}
				http.Error(w, "service login needed", http.StatusUnauthorized)
			})
		}}})
	require.NoError(t, err)
	defer c.Close()
	whoami := func(auth string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
		req.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		c.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}
	status, body := whoami("Bearer service-jwt")
	assert.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"name":"svc"`)
	// The console's own credentials still come first.
	status, body = whoami("Bearer " + opToken)
	assert.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"name":"ops"`)
	// And what neither knows is refused, by the middleware.
	status, body = whoami("Bearer not-the-token-at-all-000")
	assert.Equal(t, http.StatusUnauthorized, status, body)
	assert.Contains(t, body, "service login needed")
}

func TestAuthRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := b.serve(b.console(b.config()))
	anon := &client{t: t, srv: srv}
	routes := []string{"/api/overview", "/api/groups", "/api/letters", "/api/tasks", "/api/audit", "/", "/dead-letters",
		"/admin/outbox/health", "/admin/outbox/dead-letter"}
	for _, p := range routes {
		status, _ := anon.do(http.MethodGet, p, "", "", nil)
		assert.Equal(t, http.StatusUnauthorized, status, p)
	}
	wrong := bearer(t, srv, "not-the-token-at-all-000")
	status, _ := wrong.do(http.MethodGet, "/api/overview", "", "", nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	badPass := &client{t: t, srv: srv, auth: "Basic " + "YWxpY2U6bm9wZQ=="} // alice:nope
	status, _ = badPass.do(http.MethodGet, "/api/overview", "", "", nil)
	assert.Equal(t, http.StatusUnauthorized, status)

	reader := bearer(t, srv, readToken)
	assert.Equal(t, http.StatusOK, reader.getJSON("/api/overview", nil))
	for _, p := range []string{"/api/redrive", "/api/purge", "/api/tasks/x/cancel", "/admin/outbox/dead-letter/x/replay"} {
		status, body := reader.postJSON(p, Selection{All: true}, nil)
		assert.Equal(t, http.StatusForbidden, status, "%s: %s", p, body)
	}
	// Arc's routes are for operators only, as Arc's are.
	assert.Equal(t, http.StatusForbidden, reader.getJSON("/admin/outbox/health", nil))
}

func TestCSRFRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 2, func(int) string { return "boom" })
	srv := b.serve(b.console(b.config()))
	alice := basic(t, srv, opUser, opPass)
	require.NotEmpty(t, alice.csrf)
	sel := `{"type":"no.such.type"}`

	noToken := &client{t: t, srv: srv, auth: alice.auth}
	status, body := noToken.do(http.MethodPost, "/api/redrive", "application/json", sel, nil)
	assert.Equal(t, http.StatusForbidden, status, string(body))
	assert.Contains(t, string(body), "CSRF")

	forged := &client{t: t, srv: srv, auth: alice.auth, csrf: "forged"}
	status, _ = forged.do(http.MethodPost, "/api/redrive", "application/json", sel, nil)
	assert.Equal(t, http.StatusForbidden, status)

	// A token is the caller's own: bob's does not pass for alice.
	other := &client{t: t, srv: srv, auth: alice.auth, csrf: b.console(b.config()).csrfToken(Principal{Name: "bob"})}
	status, _ = other.do(http.MethodPost, "/api/redrive", "application/json", sel, nil)
	assert.Equal(t, http.StatusForbidden, status)

	// A cross-site browser request is refused even with the token.
	status, _ = alice.do(http.MethodPost, "/api/redrive", "application/json", sel, map[string]string{"Sec-Fetch-Site": "cross-site"})
	assert.Equal(t, http.StatusForbidden, status)

	// The form field works as the header does.
	status, body = noToken.do(http.MethodPost, "/api/redrive", "application/x-www-form-urlencoded",
		"csrf="+alice.csrf+"&type=no.such.type", nil)
	assert.Equal(t, http.StatusAccepted, status, string(body))

	status, body = alice.do(http.MethodPost, "/api/redrive", "application/json", sel, nil)
	assert.Equal(t, http.StatusAccepted, status, string(body))

	// A bearer token is never sent by a browser on its own: no CSRF token.
	status, body = bearer(t, srv, opToken).postJSON("/api/redrive", Selection{Filter: Filter{Type: "no.such.type"}}, nil)
	assert.Equal(t, http.StatusAccepted, status, string(body))
}

func TestMiddlewareNamesTheCaller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.Auth.Credentials = nil
	cfg.Auth.Middleware = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Header.Get("X-Service-User") {
			case "":
				http.Error(w, "service login needed", http.StatusUnauthorized)
			case "root":
				next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{Name: "root", Role: Operator})))
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
	srv := b.serve(b.console(cfg))
	cl := &client{t: t, srv: srv}
	status, _ := cl.do(http.MethodGet, "/api/whoami", "", "", nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	_, body := cl.do(http.MethodGet, "/api/whoami", "", "", map[string]string{"X-Service-User": "someone"})
	assert.Contains(t, string(body), `"role":"read-only"`)
	_, body = cl.do(http.MethodGet, "/api/whoami", "", "", map[string]string{"X-Service-User": "root"})
	assert.Contains(t, string(body), `"name":"root","role":"operator"`)
}

func TestOverviewAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []any{"type", "x", "data", "{}"}}).Err())
	}
	require.NoError(t, b.rdb.XGroupCreate(ctx, b.stream, "billing", "0").Err())
	_, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{b.stream, ">"}, Count: 2}).Result()
	require.NoError(t, err)
	b.deadLetters("order.created", 3, func(int) string { return "boom" })
	b.outboxDead("invoice.sent", 2, "broker said no")

	srv := b.serve(b.console(b.config()))
	var o Overview
	require.Equal(t, http.StatusOK, bearer(t, srv, readToken).getJSON("/api/overview", &o))
	require.Len(t, o.Streams, 1)
	s := o.Streams[0]
	assert.EqualValues(t, 5, s.Length)
	assert.EqualValues(t, 3, s.DeadLetters)
	require.Len(t, s.Groups, 1)
	g := s.Groups[0]
	assert.Equal(t, "billing", g.Name)
	assert.EqualValues(t, 2, g.Pending)
	assert.EqualValues(t, 3, g.Lag)
	require.Len(t, g.Consumers, 1)
	assert.Equal(t, "c1", g.Consumers[0].Name)
	assert.EqualValues(t, 2, g.Consumers[0].Pending)
	require.Len(t, o.Outboxes, 1)
	assert.EqualValues(t, 2, o.Outboxes[0].Dead)
	assert.EqualValues(t, 5, o.DeadLetters)
}

func TestGroupsByCauseFilterAndPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 7, func(i int) string { return fmt.Sprintf("order %d not found", 100+i) })
	b.deadLetters("order.created", 3, func(int) string { return "card declined" })
	b.outboxDead("invoice.sent", 4, "dial tcp 10.0.0.1:9092: connection refused")
	srv := b.serve(b.console(b.config()))
	cl := bearer(t, srv, readToken)

	var gr GroupsResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups", &gr))
	require.Len(t, gr.Groups, 3, "%+v", gr.Groups)
	assert.Equal(t, 7, gr.Groups[0].Count)
	assert.Equal(t, "order <n> not found", gr.Groups[0].Message)
	assert.Equal(t, "order.created", gr.Groups[0].Type)
	assert.False(t, gr.Groups[0].FirstSeen.IsZero())
	assert.Equal(t, 4, gr.Groups[1].Count)
	assert.Equal(t, []string{"outbox:orders"}, gr.Groups[1].Sources)
	assert.EqualValues(t, 14, gr.Scan.Total)

	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?source=outbox:orders", &gr))
	require.Len(t, gr.Groups, 1)
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?q=declined", &gr))
	require.Len(t, gr.Groups, 1)
	assert.Equal(t, 3, gr.Groups[0].Count)

	// The correlation id finds the chain's dead letters.
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?q=corr-1", &gr))
	require.Len(t, gr.Groups, 2)
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?q=declined", &gr))

	var lr LettersResponse
	cause := gr.Groups[0].Cause
	require.Equal(t, http.StatusOK, cl.getJSON("/api/letters?cause="+cause+"&limit=2", &lr))
	assert.Len(t, lr.Letters, 2)
	assert.Equal(t, 3, lr.Scan.Matched)
	require.Equal(t, http.StatusOK, cl.getJSON("/api/letters?cause="+cause+"&limit=2&offset=2", &lr))
	assert.Len(t, lr.Letters, 1)
	require.Equal(t, http.StatusOK, cl.getJSON("/api/letters?limit=100", &lr))
	assert.Len(t, lr.Letters, 14)
	for _, q := range []string{"page=9223372036854775807", "offset=9223372036854775807&limit=1000"} {
		require.Equal(t, http.StatusOK, cl.getJSON("/api/letters?"+q, &lr), q)
		assert.Empty(t, lr.Letters, q)
		assert.Positive(t, lr.Offset, q)
		status, _ := cl.do(http.MethodGet, "/letters?"+q, "", "", map[string]string{"Accept": "text/html"})
		assert.Equal(t, http.StatusOK, status, q)
	}
}

func TestLetterDetailRedactsUnlessExposed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 1, func(int) string { return "boom" })
	b.outboxDead("invoice.sent", 1, "no")
	for _, expose := range []bool{false, true} {
		cfg := b.config()
		cfg.ExposePayloads = expose
		cl := bearer(t, b.serve(b.console(cfg)), readToken)
		var lr LettersResponse
		require.Equal(t, http.StatusOK, cl.getJSON("/api/letters", &lr))
		require.Len(t, lr.Letters, 2)
		for _, l := range lr.Letters {
			status, body := cl.do(http.MethodGet, "/api/letters/"+l.Source+"/"+l.ID, "", "", nil)
			require.Equal(t, http.StatusOK, status, string(body))
			secrets := []string{"4111-secret", "stack-secret"}
			if strings.HasPrefix(l.Source, "outbox:") {
				secrets = []string{"outbox-secret"}
			}
			for _, secret := range secrets {
				assert.Equal(t, expose, strings.Contains(string(body), secret), "expose=%v %s: %s", expose, secret, body)
			}
			var d LetterDetail
			require.NoError(t, json.Unmarshal(body, &d))
			assert.Equal(t, !expose, d.Redacted)
			assert.NotEmpty(t, d.Event)
			// The page shows what the API shows.
			status, page := cl.do(http.MethodGet, "/letters/"+l.Source+"/"+l.ID, "", "", nil)
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, expose, strings.Contains(string(page), "secret"), "page, expose=%v", expose)
		}
		// Logs never see a payload either way; an unknown letter is 404.
		status, _ := cl.do(http.MethodGet, "/api/letters/stream:"+b.dlq+"/1-1", "", "", nil)
		assert.Equal(t, http.StatusNotFound, status)
		status, _ = cl.do(http.MethodGet, "/api/letters/outbox:nope/1", "", "", nil)
		assert.Equal(t, http.StatusNotFound, status)
	}
}

func TestRedriveGroupMovesEachLetterOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 40, func(i int) string { return fmt.Sprintf("order %d not found", i) })
	b.deadLetters("order.created", 5, func(int) string { return "other cause" })
	b.outboxDead("invoice.sent", 10, "refused")
	cfg := b.config()
	cfg.RedriveRate = 2000
	srv := b.serve(b.console(cfg))
	cl := bearer(t, srv, opToken)
	var gr GroupsResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?q=not+found", &gr))
	require.Len(t, gr.Groups, 1)
	cause := gr.Groups[0].Cause

	// Two redrives of one group at once: each letter moves once.
	var wg sync.WaitGroup
	tasks := make([]Task, 2)
	for i := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := cl.postJSON("/api/redrive", Selection{Filter: Filter{Cause: cause}}, &tasks[i])
			assert.Equal(t, http.StatusAccepted, status, string(body))
		}()
	}
	wg.Wait()
	var moved int64
	for _, tk := range tasks {
		done := cl.waitTask(tk.ID)
		assert.Equal(t, TaskDone, done.State, done.Error)
		assert.Equal(t, done.Total, done.Moved+done.Skipped)
		moved += done.Moved
	}
	assert.EqualValues(t, 40, moved)
	ctx := context.Background()
	assert.EqualValues(t, 40, b.rdb.XLen(ctx, b.stream).Val(), "redriven to the original stream, once each")
	assert.EqualValues(t, 5, b.rdb.XLen(ctx, b.dlq).Val(), "the other cause stays")

	// The outbox group: rows pending again.
	require.Equal(t, http.StatusOK, cl.getJSON("/api/groups?source=outbox:orders", &gr))
	require.Len(t, gr.Groups, 1)
	var tk Task
	status, body := cl.postJSON("/api/redrive", Selection{Filter: Filter{Cause: gr.Groups[0].Cause}}, &tk)
	require.Equal(t, http.StatusAccepted, status, string(body))
	done := cl.waitTask(tk.ID)
	assert.EqualValues(t, 10, done.Moved)
	st, err := b.ob.Status(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 0, st.Dead)
	assert.EqualValues(t, 10, st.Pending+st.Delayed)

	// The audit list has who, what and how many.
	var ar AuditResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/audit", &ar))
	var finished int64
	for _, e := range ar.Entries {
		assert.Equal(t, "ops", e.Who)
		if e.Action == "redrive.finished" {
			finished += e.Count
		}
	}
	assert.EqualValues(t, 50, finished)
}

func TestRedriveOneAndEmptySelection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 3, func(int) string { return "boom" })
	cl := bearer(t, b.serve(b.console(b.config())), opToken)
	status, _ := cl.postJSON("/api/redrive", Selection{}, nil)
	assert.Equal(t, http.StatusBadRequest, status, "an empty selection never means everything")
	var lr LettersResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/letters", &lr))
	var tk Task
	status, body := cl.postJSON("/api/redrive", Selection{Letters: []LetterRef{{Source: lr.Letters[0].Source, ID: lr.Letters[0].ID}}}, &tk)
	require.Equal(t, http.StatusAccepted, status, string(body))
	assert.EqualValues(t, 1, cl.waitTask(tk.ID).Moved)
	status, _ = cl.postJSON("/api/redrive", Selection{Letters: []LetterRef{{Source: lr.Letters[0].Source, ID: lr.Letters[0].ID}}}, nil)
	assert.Equal(t, http.StatusNotFound, status, "a redriven letter is gone")
	// A selection from the letters page's ticks, as a form.
	require.Equal(t, http.StatusOK, cl.getJSON("/api/letters", &lr))
	require.Len(t, lr.Letters, 2)
	form := "letter=" + url.QueryEscape(lr.Letters[0].Source+"/"+lr.Letters[0].ID) +
		"&letter=" + url.QueryEscape(lr.Letters[1].Source+"/"+lr.Letters[1].ID)
	status, body = cl.do(http.MethodPost, "/api/redrive", "application/x-www-form-urlencoded", form, nil)
	require.Equal(t, http.StatusAccepted, status, string(body))
	require.NoError(t, json.Unmarshal(body, &tk))
	assert.EqualValues(t, 2, tk.Total)
	assert.EqualValues(t, 2, cl.waitTask(tk.ID).Moved)
	status, _ = cl.postJSON("/api/redrive", Selection{All: true}, &tk)
	require.Equal(t, http.StatusAccepted, status)
	assert.EqualValues(t, 0, cl.waitTask(tk.ID).Total)
}

func TestPurgeNeedsConfirmation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 3, func(int) string { return "boom" })
	b.outboxDead("invoice.sent", 2, "no")
	cl := bearer(t, b.serve(b.console(b.config())), opToken)
	status, _ := cl.postJSON("/api/purge", PurgeRequest{Selection: Selection{All: true}}, nil)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.EqualValues(t, 3, b.rdb.XLen(context.Background(), b.dlq).Val())
	var pr PurgeResponse
	status, body := cl.postJSON("/api/purge", PurgeRequest{Selection: Selection{All: true}, Confirm: "purge"}, &pr)
	require.Equal(t, http.StatusOK, status, string(body))
	assert.EqualValues(t, 5, pr.Purged)
	assert.EqualValues(t, 0, b.rdb.XLen(context.Background(), b.dlq).Val())
	var ar AuditResponse
	cl.getJSON("/api/audit", &ar)
	require.NotEmpty(t, ar.Entries)
	assert.Equal(t, AuditEntry{Time: ar.Entries[0].Time, Who: "ops", Action: "purge", What: "all dead letters", Count: 5}, ar.Entries[0])
}

func TestTaskCancelAndCloseStopTasks(t *testing.T) {
	defer leaktest.RequireNone(t, "github.com/arcmill/arcmill/console", 5*time.Second)
	b := setup(t)
	b.deadLetters("order.created", 200, func(int) string { return "boom" })
	cfg := b.config()
	cfg.RedriveRate = 20 // slow: the task is still running when cancelled
	c, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(c)
	cl := bearer(t, srv, opToken)
	var tk Task
	status, body := cl.postJSON("/api/redrive", Selection{All: true}, &tk)
	require.Equal(t, http.StatusAccepted, status, string(body))
	status, _ = cl.postJSON("/api/tasks/"+tk.ID+"/cancel", nil, nil)
	require.Equal(t, http.StatusOK, status)
	done := cl.waitTask(tk.ID)
	assert.Equal(t, TaskCancelled, done.State)
	var tr TasksResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/api/tasks", &tr))
	require.Len(t, tr.Tasks, 1)
	assert.Equal(t, tk.ID, tr.Tasks[0].ID)
	status, _ = cl.postJSON("/api/tasks/nope/cancel", nil, nil)
	assert.Equal(t, http.StatusNotFound, status)
	moved := done.Moved
	assert.Less(t, moved, int64(200))
	assert.EqualValues(t, 200-moved, b.rdb.XLen(context.Background(), b.dlq).Val(), "nothing lost, nothing doubled")

	// Close cancels a running task and waits for it.
	status, _ = cl.postJSON("/api/redrive", Selection{All: true}, &tk)
	require.Equal(t, http.StatusAccepted, status)
	srv.Close()
	require.NoError(t, c.Close())
	snap, ok := c.tasks.get(tk.ID)
	require.True(t, ok)
	assert.Equal(t, TaskCancelled, snap.snapshot().State)
	_, err = c.startRedrive(context.Background(), "x", Selection{All: true})
	assert.True(t, errors.Is(err, ErrInvalidConfig))
	http.DefaultClient.CloseIdleConnections()
}

func TestArcRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	streamIDs := b.deadLetters("order.created", 2, func(int) string { return "boom" })
	outboxIDs := b.outboxDead("invoice.sent", 3, "refused")
	cl := bearer(t, b.serve(b.console(b.config())), opToken)

	status, body := cl.do(http.MethodGet, "/admin/outbox/health", "", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var health map[string]any
	require.NoError(t, json.Unmarshal(body, &health))
	assert.Equal(t, map[string]any{"pending": 0.0, "deadLetter": 5.0, "relayLagMs": 0.0, "healthy": true}, health)

	status, body = cl.do(http.MethodGet, "/admin/outbox/dead-letter?limit=4", "", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var items []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &items))
	require.Len(t, items, 4)
	for _, it := range items {
		for _, k := range []string{"event", "error", "attempts", "firstFailedAt", "lastFailedAt"} {
			assert.Contains(t, it, k)
		}
		assert.NotContains(t, string(it["error"]), "stack")
	}
	assert.NotContains(t, string(body), "secret", "payloads and stacks are redacted by default")
	assert.Contains(t, string(body), `"payload":"[redacted]"`)
	assert.Regexp(t, `"firstFailedAt":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`, string(body))
	status, _ = cl.do(http.MethodGet, "/admin/outbox/dead-letter?limit=x", "", "", nil)
	assert.Equal(t, http.StatusBadRequest, status)

	for _, id := range []string{outboxIDs[0], streamIDs[1]} {
		var rep ArcReplay
		status, body = cl.postJSON("/admin/outbox/dead-letter/"+id+"/replay", nil, &rep)
		require.Equal(t, http.StatusOK, status, string(body))
		assert.Equal(t, ArcReplay{ID: id, Replayed: true}, rep)
		status, _ = cl.postJSON("/admin/outbox/dead-letter/"+id+"/replay", nil, nil)
		assert.Equal(t, http.StatusNotFound, status, "a replayed letter is replayed once")
	}
	require.NoError(t, json.Unmarshal(must(cl.do(http.MethodGet, "/admin/outbox/health", "", "", nil)), &health))
	assert.Equal(t, 1.0, health["pending"])
	assert.Equal(t, 3.0, health["deadLetter"])

	// A custom prefix moves the routes.
	cfg := b.config()
	cfg.AdminPrefix = "/ops/outbox"
	cl2 := bearer(t, b.serve(b.console(cfg)), opToken)
	assert.Equal(t, http.StatusOK, cl2.getJSON("/ops/outbox/health", nil))
	assert.Equal(t, http.StatusNotFound, cl2.getJSON("/admin/outbox/health", nil))
}

func TestArcHealthUnhealthyOnLag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.outboxDead("invoice.sent", 1, "x")
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	ev := mustEvent(t, "late.event")
	require.NoError(t, b.ob.Write(ctx, tx, outboxEntry(b.stream, ev)))
	require.NoError(t, tx.Commit())
	cfg := b.config()
	cfg.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	status, body := bearer(t, b.serve(b.console(cfg)), opToken).do(http.MethodGet, "/admin/outbox/health", "", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	var h ArcHealth
	require.NoError(t, json.Unmarshal(body, &h))
	assert.False(t, h.Healthy)
	assert.EqualValues(t, 1, h.Pending)
	assert.GreaterOrEqual(t, h.RelayLagMs, int64(time.Minute/time.Millisecond))
}

func TestPagesRender(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deadLetters("order.created", 3, func(i int) string { return fmt.Sprintf("order %d <script>x</script>", i) })
	b.outboxDead("invoice.sent", 1, "refused")
	cfg := b.config()
	cfg.BasePath = "/console"
	c := b.console(cfg)
	mux := http.NewServeMux()
	mux.Handle("/console/", http.StripPrefix("/console", c))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cl := bearer(t, srv, readToken)
	var lr LettersResponse
	require.Equal(t, http.StatusOK, cl.getJSON("/console/api/letters", &lr))
	for _, p := range []string{"/", "/dead-letters", "/dead-letters?q=order", "/letters", "/letters?page=2&limit=1",
		"/letters/" + lr.Letters[0].Source + "/" + lr.Letters[0].ID, "/tasks", "/audit"} {
		status, body := cl.do(http.MethodGet, "/console"+p, "", "", map[string]string{"Accept": "text/html"})
		require.Equal(t, http.StatusOK, status, p)
		page := string(body)
		assert.Contains(t, page, `href="/console/assets/app.css"`, p)
		assert.NotContains(t, page, "<script>x</script>", "escaped on %s", p)
		assert.NotContains(t, page, "//cdn", p)
	}
	// The pager's links, and the groups' link to their letters, keep the
	// filter: not escaped into one opaque query value.
	_, body := cl.do(http.MethodGet, "/console/letters?type=order.created&limit=1", "", "", nil)
	assert.Contains(t, string(body), `rel="next" href="?type=order.created&amp;page=2"`)
	_, body = cl.do(http.MethodGet, "/console/dead-letters?type=order.created", "", "", nil)
	assert.Contains(t, string(body), `href="/console/letters?type=order.created"`)
	// A reader sees no button that changes something; an operator does.
	_, page := cl.do(http.MethodGet, "/console/dead-letters", "", "", nil)
	assert.NotContains(t, string(page), "/api/redrive")
	_, page = bearer(t, srv, opToken).do(http.MethodGet, "/console/dead-letters", "", "", nil)
	assert.Contains(t, string(page), `action="/console/api/redrive"`)
	status, body := cl.do(http.MethodGet, "/console/tasks/nope", "", "", map[string]string{"Accept": "text/html"})
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, string(body), "not found")
	// Arc's routes move with the console: under the prefix, as the doc says.
	var h ArcHealth
	op := bearer(t, srv, opToken)
	assert.Equal(t, http.StatusOK, op.getJSON("/console/admin/outbox/health", &h))
	assert.EqualValues(t, 4, h.DeadLetter)
	assert.Equal(t, http.StatusNotFound, op.getJSON("/admin/outbox/health", nil))
}

func TestNormalizeError(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"order 42 not found":                             "order <n> not found",
		"user 3f2b1c1e-1d2a-4b5c-8d9e-0123456789ab gone": "user <id> gone",
		`key "abc" exists`:                               "key <str> exists",
		"dial tcp 10.0.0.1:9092: connection refused":     "dial tcp <n>.<n>.<n>.<n>:<n>: connection refused",
		"tx deadbeef00112233 failed":                     "tx <hex> failed",
		"bad   cafe":                                     "bad cafe",
	} {
		assert.Equal(t, want, NormalizeError(in), in)
	}
	assert.Equal(t, causeOf("a", "r", "x 1"), causeOf("a", "r", "x 2"))
	assert.NotEqual(t, causeOf("a", "r", "x 1"), causeOf("b", "r", "x 1"))
}
