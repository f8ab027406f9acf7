package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

func assetsFS() fs.FS {
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

func parsePages(base string) (*template.Template, error) {
	funcs := template.FuncMap{
		"base": func() string { return base },
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"ms": func(ms int64) string {
			return (time.Duration(ms) * time.Millisecond).Round(time.Millisecond).String()
		},
		"path": url.PathEscape,
		// Encoded values are safe in a URL as they are: as a string, the
		// template would escape their "=" and "&" too, losing the filter.
		"query": func(v url.Values) template.URL { return template.URL(v.Encode()) },
		"pretty": func(raw json.RawMessage) string {
			var b bytes.Buffer
			if json.Indent(&b, raw, "", "  ") != nil {
				return string(raw)
			}
			return b.String() // in the event's own key order
		},
		"percent": func(done, total int64) int64 {
			if total == 0 {
				return 100
			}
			return done * 100 / total
		},
		"add": func(a, b int) int { return a + b },
		"lag": func(n int64) string {
			if n < 0 {
				return "?"
			}
			return strconv.FormatInt(n, 10)
		},
	}
	t, err := template.New("console").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: parsing the page templates: %w", err)
	}
	return t, nil
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string
	User  Principal
	CSRF  string
	// Operator shows the buttons that change something.
	Operator bool
	Data     any
}

func (c *Console) page(r *http.Request, title string, data any) pageData {
	p, _ := PrincipalFrom(r.Context())
	return pageData{Title: title, User: p, CSRF: c.csrfToken(p), Operator: p.Role >= Operator, Data: data}
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title, nav string, data any) {
	pd := c.page(r, title, data)
	pd.Nav = nav
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := c.pages.ExecuteTemplate(w, name, pd); err != nil {
		c.cfg.Logger.Error("Console: rendering "+name, err, nil)
	}
}

// overviewView is the overview page: the state, and a chart per stream
// and outbox (by "stream:<name>" / "outbox:<name>").
type overviewView struct {
	Overview
	Charts map[string]template.HTML
}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	v := overviewView{Overview: c.overview(r.Context()), Charts: map[string]template.HTML{}}
	for _, s := range v.Streams {
		name := kindStream + ":" + s.Name
		v.Charts[name] = chart("Stream "+s.Name+": lag, pending, dead letters and appends over the last minutes", c.samples.get(name))
	}
	for _, o := range v.Outboxes {
		name := kindOutbox + ":" + o.Name
		v.Charts[name] = chart("Outbox "+o.Name+": undelivered, in flight and dead rows over the last minutes", c.samples.get(name))
	}
	c.render(w, r, "overview.html", "Overview", "overview", v)
}

// groupsView is the dead-letters page.
type groupsView struct {
	Groups  []Group
	Scan    Scan
	Filter  Filter
	Sources []string
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request) {
	f := filterFrom(r.URL.Query())
	gs, scan, err := c.groups(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var srcs []string
	for _, s := range c.sources("") {
		srcs = append(srcs, s.key())
	}
	c.render(w, r, "groups.html", "Dead letters", "dead-letters", groupsView{Groups: gs, Scan: scan, Filter: f, Sources: srcs})
}

// lettersView is a page of dead letters.
type lettersView struct {
	Letters  []Letter
	Scan     Scan
	Filter   Filter
	Query    url.Values
	Page     int
	Pages    int
	PrevPage int
	NextPage int
}

func (c *Console) lettersPage(w http.ResponseWriter, r *http.Request) {
	f := filterFrom(r.URL.Query())
	offset, limit := c.paging(r)
	ls, scan, err := c.letters(r.Context(), f, offset, limit)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := lettersView{Letters: ls, Scan: scan, Filter: f, Query: f.Values(), Page: offset/limit + 1,
		Pages: max(1, (scan.Matched+limit-1)/limit)}
	if v.Page > 1 {
		v.PrevPage = v.Page - 1
	}
	if v.Page < v.Pages {
		v.NextPage = v.Page + 1
	}
	c.render(w, r, "letters.html", "Dead letters", "dead-letters", v)
}

func (c *Console) letterPage(w http.ResponseWriter, r *http.Request) {
	l, err := c.find(r.Context(), r.PathValue("source"), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, "letter.html", "Dead letter "+l.ID, "dead-letters", c.detail(l))
}

func (c *Console) tasksPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "tasks.html", "Tasks", "tasks", c.tasks.list())
}

func (c *Console) taskPage(w http.ResponseWriter, r *http.Request) {
	t, ok := c.tasks.get(r.PathValue("id"))
	if !ok {
		c.fail(w, r, fmt.Errorf("%w: task %q", ErrNotFound, r.PathValue("id")))
		return
	}
	c.render(w, r, "task.html", "Task", "tasks", t.snapshot())
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "audit.html", "Audit", "audit", c.audit.list())
}
