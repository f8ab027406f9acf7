package console

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync"
)

// Console is the operator console, an http.Handler. Close it when done.
type Console struct {
	cfg     Config
	csrfKey []byte
	cop     *http.CrossOriginProtection
	handler http.Handler
	pages   *template.Template
	audit   *audit
	tasks   tasks

	targets map[string]bool // the streams a redrive may write to

	indexMu sync.Mutex
	indexes map[string]*streamIndex // by dead-letter stream

	closing   context.Context // cancelled by Close: ends live tails
	close     context.CancelFunc
	tailSlots chan struct{} // one per live tail, DefaultMaxTails
	tailWG    sync.WaitGroup
	samples   *sampler // nil with NoSampling
}

// New returns the console for cfg, which it validates.
func New(cfg Config) (*Console, error) {
	cfg.Streams = append([]Stream(nil), cfg.Streams...)
	cfg.Outboxes = append([]Outbox(nil), cfg.Outboxes...)
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, csrfKey: cfg.CSRFKey, cop: http.NewCrossOriginProtection(),
		audit: &audit{size: cfg.AuditSize, logger: cfg.Logger}, indexes: map[string]*streamIndex{}}
	c.targets = map[string]bool{}
	for _, s := range cfg.Streams {
		c.targets[s.Name] = true
	}
	if len(c.csrfKey) == 0 {
		c.csrfKey = make([]byte, 32)
		_, _ = rand.Read(c.csrfKey) // crypto/rand.Read never fails
	}
	tmpl, err := parsePages(cfg.BasePath)
	if err != nil {
		return nil, err
	}
	c.pages = tmpl
	c.closing, c.close = context.WithCancel(context.Background())
	c.tailSlots = make(chan struct{}, DefaultMaxTails)
	if cfg.SampleInterval > 0 {
		c.samples = &sampler{series: map[string][]Sample{}, added: map[string]int64{}, done: make(chan struct{}),
			keep: int(cfg.SampleWindow / cfg.SampleInterval)}
		go c.samples.run(c.closing, c, cfg.SampleInterval)
	}
	c.handler = c.authn(c.routes())
	return c, nil
}

// ServeHTTP serves the pages, the JSON API and Arc's admin routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	c.handler.ServeHTTP(w, r)
}

// Close cancels the running tasks and waits for them to stop. A task
// stops between two dead letters; each move is atomic, so a redrive run
// again goes on where this one stopped.
func (c *Console) Close() error {
	c.close()
	c.tasks.close()
	c.tailWG.Wait()
	if c.samples != nil {
		<-c.samples.done
	}
	return nil
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	read := func(h http.HandlerFunc) http.HandlerFunc { return c.require(ReadOnly, h) }
	// Pages.
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assetsFS())))
	mux.HandleFunc("GET /{$}", read(c.overviewPage))
	mux.HandleFunc("GET /dead-letters", read(c.groupsPage))
	mux.HandleFunc("GET /letters", read(c.lettersPage))
	mux.HandleFunc("GET /letters/{source}/{id}", read(c.letterPage))
	mux.HandleFunc("GET /tasks", read(c.tasksPage))
	mux.HandleFunc("GET /tasks/{id}", read(c.taskPage))
	mux.HandleFunc("GET /audit", read(c.auditPage))
	mux.HandleFunc("GET /tail", read(c.tailPage))
	mux.HandleFunc("GET /explore", read(c.explorePage))
	mux.HandleFunc("GET /parked", read(c.parkedPage))
	// JSON API.
	mux.HandleFunc("GET /api/overview", read(c.apiOverview))
	mux.HandleFunc("GET /api/groups", read(c.apiGroups))
	mux.HandleFunc("GET /api/letters", read(c.apiLetters))
	mux.HandleFunc("GET /api/letters/{source}/{id}", read(c.apiLetter))
	mux.HandleFunc("POST /api/redrive", c.mutation(c.apiRedrive))
	mux.HandleFunc("POST /api/purge", c.mutation(c.apiPurge))
	mux.HandleFunc("GET /api/tasks", read(c.apiTasks))
	mux.HandleFunc("GET /api/tasks/{id}", read(c.apiTask))
	mux.HandleFunc("POST /api/tasks/{id}/cancel", c.mutation(c.apiCancel))
	mux.HandleFunc("GET /api/audit", read(c.apiAudit))
	mux.HandleFunc("GET /api/whoami", read(c.apiWhoami))
	mux.HandleFunc("GET /api/tail", read(c.apiTail))
	mux.HandleFunc("GET /api/samples", read(c.apiSamples))
	mux.HandleFunc("GET /api/explore", read(c.apiExplore))
	mux.HandleFunc("GET /api/parked", read(c.apiParked))
	mux.HandleFunc("POST /api/parked/release", c.mutation(c.apiParkedRelease))
	mux.HandleFunc("POST /api/parked/discard", c.mutation(c.apiParkedDiscard))
	// Arc's outbox admin routes: restricted to operators, as Arc's are to
	// platform operators.
	p := c.cfg.AdminPrefix
	mux.HandleFunc("GET "+p+"/health", c.require(Operator, c.arcHealth))
	mux.HandleFunc("GET "+p+"/dead-letter", c.require(Operator, c.arcDeadLetters))
	mux.HandleFunc("POST "+p+"/dead-letter/{id}/replay", c.mutation(c.arcReplay))
	return mux
}

// apiError is the JSON body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

// refuse answers an error: JSON for the API (and any client that does not
// ask for HTML), a short page for a browser.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if c.wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = c.pages.ExecuteTemplate(w, "error.html", c.page(r, "Error", map[string]any{"Status": status, "Message": msg}))
		return
	}
	writeJSON(w, status, apiError{Error: msg})
}

// fail answers err with the status its sentinel calls for.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrInvalidConfig):
		status = http.StatusBadRequest
	default:
		c.cfg.Logger.Error("Console request failed", err, nil)
	}
	c.refuse(w, r, status, err.Error())
}

// wantsHTML reports whether an error answer should be a page: never on
// the API or Arc's routes, whose clients read JSON.
func (c *Console) wantsHTML(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, c.cfg.AdminPrefix+"/") {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
