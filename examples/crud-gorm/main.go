// Command crud-gorm is a small HTTP service whose GORM writes emit Arc's
// CRUD events (product.created, product.updated, product.deleted) through
// arcmill's outbox: each event is stored in the transaction of its write
// and relayed to Redis Streams in Arc's layout, so an Arc service reading
// the stream hears about Go-side changes exactly when they commit. See
// README.md.
//
//	go run . [-addr :8080] [-db crud-gorm.db] [-redis 127.0.0.1:6379]
//
// With -addr it serves until interrupted; without, it runs a scripted
// session against itself and prints what reached Redis.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/crud"
	"github.com/arcmill/arcmill/crud/gormevents"
	"github.com/arcmill/arcmill/outbox"
)

// Product is the service's resource. Its JSON is the document Arc
// consumers receive as payload.data.
type Product struct {
	ID    uint   `gorm:"primaryKey" json:"id"`
	Name  string `json:"name"`
	Price int    `json:"price"`
}

// The example's own stream: a run touches no real service's stream.
const defaultStream = "arcmill-example:crud:events"

func main() {
	addr := flag.String("addr", "", "serve HTTP on this address (empty: run the scripted session)")
	dbPath := flag.String("db", filepath.Join(os.TempDir(), "arcmill-crud-gorm.db"), "SQLite file")
	redisAddr := flag.String("redis", envOr("ARCMILL_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	stream := flag.String("stream", defaultStream, "the stream to deliver to")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *addr, *dbPath, *redisAddr, *stream); err != nil {
		fmt.Fprintln(os.Stderr, "crud-gorm:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// service is the HTTP API over GORM.
type service struct{ db *gorm.DB }

func (s service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /products", s.create)
	mux.HandleFunc("PATCH /products/{id}", s.update)
	mux.HandleFunc("DELETE /products/{id}", s.remove)
	// The scope of every request (request id, user, organization) goes in
	// its context; the plugin reads it from the statement's context. The
	// user id goes through RouteUserID, as an Arc CRUD route stringifies
	// it; a missing header is no user, no organization.
	return crud.Middleware(crud.MiddlewareConfig{
		Identify: func(r *http.Request) (userID, organizationID crud.Value) {
			return crud.RouteUserID(crud.StringOrAbsent(r.Header.Get("X-User"))),
				crud.StringOrAbsent(r.Header.Get("X-Org"))
		},
	})(mux)
}

func (s service) create(w http.ResponseWriter, r *http.Request) {
	var p Product
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.ID = 0
	// A product and its stock check in one transaction: when the check
	// fails, the insert and its product.created event roll back together.
	err := s.db.WithContext(r.Context()).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&p).Error; err != nil {
			return err
		}
		if p.Price < 0 {
			return errors.New("price must not be negative")
		}
		return nil
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s service) update(w http.ResponseWriter, r *http.Request) {
	var p Product
	db := s.db.WithContext(r.Context())
	if err := db.First(&p, r.PathValue("id")).Error; err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	var patch struct{ Price *int }
	if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || patch.Price == nil {
		http.Error(w, "want {\"price\": n}", http.StatusBadRequest)
		return
	}
	if err := db.Model(&p).Update("price", *patch.Price).Error; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s service) remove(w http.ResponseWriter, r *http.Request) {
	var p Product
	db := s.db.WithContext(r.Context())
	// Load the whole document first: Arc's .deleted carries it.
	if err := db.First(&p, r.PathValue("id")).Error; err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err := db.Delete(&p).Error; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// setup opens the database, the outbox and the plugin, and starts the
// relay. stop ends the relay and closes everything.
func setup(ctx context.Context, dbPath, redisAddr, stream string) (svc service, stop func() error, err error) {
	db, err := gorm.Open(sqlite.Open("file:"+dbPath+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		return svc, nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return svc, nil, err
	}
	closers := []func() error{sqlDB.Close}
	stop = func() error {
		var errs []error
		for _, c := range slices.Backward(closers) {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (service, func() error, error) { return svc, nil, errors.Join(err, stop()) }

	ob, err := outbox.New(sqlDB, outbox.Config{Dialect: outbox.SQLite, Table: "crud_outbox"})
	if err != nil {
		return fail(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		return fail(err)
	}
	em, err := crud.NewEmitter(crud.EmitterConfig{Outbox: ob, Topic: stream})
	if err != nil {
		return fail(err)
	}
	plugin, err := gormevents.New(gormevents.Config{Emitter: em})
	if err != nil {
		return fail(err)
	}
	if err := plugin.Register(&Product{}, gormevents.Model{Resource: "product"}); err != nil {
		return fail(err)
	}
	if err := db.Use(plugin); err != nil {
		return fail(err)
	}
	if err := db.AutoMigrate(&Product{}); err != nil {
		return fail(err)
	}

	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	closers = append(closers, client.Close)
	pub, err := redisstream.NewPublisher(redisstream.ArcPublisher(client))
	if err != nil {
		return fail(err)
	}
	relay, err := ob.NewRelay(pub, outbox.RelayConfig{})
	if err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	closers = append(closers, func() error {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, outbox.ErrRelayClosed) {
			return err
		}
		return nil
	})
	select {
	case <-relay.Running():
	case err := <-done:
		return fail(err)
	}
	return service{db: db}, stop, nil
}

func run(ctx context.Context, out io.Writer, addr, dbPath, redisAddr, stream string) (err error) {
	svc, stop, err := setup(ctx, dbPath, redisAddr, stream)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	if addr != "" {
		srv := &http.Server{Addr: addr, Handler: svc.routes(), ReadHeaderTimeout: 5 * time.Second}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		fmt.Fprintf(out, "serving on %s; events go to %s\n", addr, stream)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return session(ctx, out, svc, redisAddr, stream)
}

// session drives the service over HTTP: a create that fails (rolled
// back: no event), a create, an update and a delete; then it waits for
// this session's events on the stream and prints them.
func session(ctx context.Context, out io.Writer, svc service, redisAddr, stream string) error {
	srv := httptest.NewServer(svc.routes())
	defer srv.Close()
	call := func(method, path, body string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, bytes.NewBufferString(body))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("X-User", "u-7")
		req.Header.Set("X-Org", "org-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	var requests []string // the request ids whose events must arrive
	resp, _, err := call("POST", "/products", `{"name":"Broken","price":-1}`)
	if err != nil {
		return err
	}
	rolledBack := resp.Header.Get(crud.RequestIDHeader)
	fmt.Fprintf(out, "POST /products (negative price) -> %d, rolled back: no event\n", resp.StatusCode)

	resp, body, err := call("POST", "/products", `{"name":"Mug","price":12}`)
	if err != nil {
		return err
	}
	var p Product
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("create: %d %s", resp.StatusCode, body)
	}
	requests = append(requests, resp.Header.Get(crud.RequestIDHeader))
	id := strconv.FormatUint(uint64(p.ID), 10)
	fmt.Fprintf(out, "POST /products -> %d\n", resp.StatusCode)
	for _, step := range []struct{ method, body string }{{"PATCH", `{"price":15}`}, {"DELETE", ""}} {
		resp, _, err := call(step.method, "/products/"+id, step.body)
		if err != nil {
			return err
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s /products/%s: %d", step.method, id, resp.StatusCode)
		}
		requests = append(requests, resp.Header.Get(crud.RequestIDHeader))
		fmt.Fprintf(out, "%s /products/{id} -> %d\n", step.method, resp.StatusCode)
	}

	// Wait for this session's events (found by their correlation ids),
	// polling the stream: the relay publishes them shortly after each
	// commit.
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer client.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		found, stray, err := sessionEvents(ctx, client, stream, requests, rolledBack)
		if err != nil {
			return err
		}
		if stray {
			return errors.New("the rolled-back create emitted an event")
		}
		if len(found) == len(requests) {
			fmt.Fprintf(out, "%d events on %s:\n", len(found), stream)
			for _, f := range found {
				fmt.Fprintln(out, " ", f)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events reached %s", len(found), len(requests), stream)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sessionEvents returns the Arc JSON of the stream's events whose
// correlation ids are the given requests', in order, and whether one
// carries the rolled-back request's id.
func sessionEvents(ctx context.Context, client *redis.Client, stream string, requests []string, rolledBack string) ([]string, bool, error) {
	entries, err := client.XRevRangeN(ctx, stream, "+", "-", 1000).Result()
	if err != nil {
		return nil, false, err
	}
	found := make([]string, len(requests))
	n := 0
	for _, e := range entries {
		data, _ := e.Values["data"].(string)
		var ev arc.Event
		if arc.Unmarshal([]byte(data), &ev) != nil {
			continue
		}
		if ev.Meta.CorrelationID == rolledBack {
			return nil, true, nil
		}
		if i := slices.Index(requests, ev.Meta.CorrelationID); i >= 0 && found[i] == "" {
			found[i] = data
			n++
		}
	}
	if n < len(requests) {
		return found[:0], false, nil
	}
	return found, false, nil
}
