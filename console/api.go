package console

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// maxPageLimit caps a page's limit= query.
const maxPageLimit = 1000

// maxPageOffset caps a page's offset, whether given as offset= or page=:
// far beyond any listing, and small enough that offset+limit and
// (page-1)*limit never overflow an int.
const maxPageOffset = 1 << 30

// paging reads offset and limit (or page) from the query.
func (c *Console) paging(r *http.Request) (offset, limit int) {
	return pagingOf(r, c.cfg.PageSize)
}

// pagingOf reads offset and limit (or page) from the query, limit
// defaulting to def and capped at maxPageLimit.
func pagingOf(r *http.Request, def int) (offset, limit int) {
	q := r.URL.Query()
	limit = def
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		limit = min(n, maxPageLimit)
	}
	if n, err := strconv.Atoi(q.Get("offset")); err == nil && n > 0 {
		offset = min(n, maxPageOffset)
	}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 {
		// Divide rather than multiply: page=9223372036854775807 must not wrap.
		offset = maxPageOffset
		if n-1 <= maxPageOffset/limit {
			offset = (n - 1) * limit
		}
	}
	return offset, limit
}

func (c *Console) apiOverview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.overview(r.Context()))
}

// GroupsResponse is GET /api/groups.
type GroupsResponse struct {
	Groups []Group `json:"groups"`
	Scan   Scan    `json:"scan"`
}

func (c *Console) apiGroups(w http.ResponseWriter, r *http.Request) {
	gs, scan, err := c.groups(r.Context(), filterFrom(r.URL.Query()))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, GroupsResponse{Groups: gs, Scan: scan})
}

// LettersResponse is GET /api/letters.
type LettersResponse struct {
	Letters []Letter `json:"letters"`
	Offset  int      `json:"offset"`
	Limit   int      `json:"limit"`
	Scan    Scan     `json:"scan"`
}

func (c *Console) apiLetters(w http.ResponseWriter, r *http.Request) {
	offset, limit := c.paging(r)
	ls, scan, err := c.letters(r.Context(), filterFrom(r.URL.Query()), offset, limit)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if ls == nil {
		ls = []Letter{}
	}
	writeJSON(w, http.StatusOK, LettersResponse{Letters: ls, Offset: offset, Limit: limit, Scan: scan})
}

func (c *Console) apiLetter(w http.ResponseWriter, r *http.Request) {
	l, err := c.find(r.Context(), r.PathValue("source"), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c.detail(l))
}

// readSelection reads a Selection from a JSON body, or from form fields
// (letter=<source>/<id> repeated, source, type, cause, q, all).
func readSelection(r *http.Request) (Selection, error) {
	var sel Selection
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			return sel, fmt.Errorf("%w: reading the body: %v", ErrInvalidConfig, err)
		}
		if err := json.Unmarshal(body, &sel); err != nil {
			return sel, fmt.Errorf("%w: the body is not a selection: %v", ErrInvalidConfig, err)
		}
		return sel, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return sel, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	for _, v := range r.PostForm["letter"] {
		i := strings.LastIndex(v, "/")
		if i <= 0 {
			return sel, fmt.Errorf("%w: letter %q is not <source>/<id>", ErrInvalidConfig, v)
		}
		sel.Letters = append(sel.Letters, LetterRef{Source: v[:i], ID: v[i+1:]})
	}
	sel.Filter = filterFrom(r.PostForm)
	sel.All = r.PostForm.Get("all") == "true"
	return sel, nil
}

func (c *Console) apiRedrive(w http.ResponseWriter, r *http.Request) {
	sel, err := readSelection(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p, _ := PrincipalFrom(r.Context())
	t, err := c.startRedrive(r.Context(), p.Name, sel)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, t)
}

// PurgeRequest is POST /api/purge: a selection and the confirmation.
type PurgeRequest struct {
	Selection
	// Confirm must be "purge": a purge cannot be undone.
	Confirm string `json:"confirm"`
}

// PurgeResponse is the answer to POST /api/purge.
type PurgeResponse struct {
	Purged int64 `json:"purged"`
}

func (c *Console) apiPurge(w http.ResponseWriter, r *http.Request) {
	var req PurgeRequest
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, rerr := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if rerr == nil {
			rerr = json.Unmarshal(body, &req)
		}
		if rerr != nil {
			c.fail(w, r, fmt.Errorf("%w: the body is not a purge request: %v", ErrInvalidConfig, rerr))
			return
		}
	} else {
		req.Selection, err = readSelection(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		req.Confirm = r.PostForm.Get("confirm")
	}
	if req.Confirm != "purge" {
		c.refuse(w, r, http.StatusBadRequest, `a purge cannot be undone: confirm it with "confirm": "purge"`)
		return
	}
	n, err := c.purge(r.Context(), req.Selection)
	p, _ := PrincipalFrom(r.Context())
	if n > 0 || err == nil {
		c.audit.record(AuditEntry{Time: c.cfg.Now().UTC(), Who: p.Name, Action: "purge", What: req.Selection.String(), Count: n})
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PurgeResponse{Purged: n})
}

// TasksResponse is GET /api/tasks.
type TasksResponse struct {
	Tasks []Task `json:"tasks"`
}

func (c *Console) apiTasks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, TasksResponse{Tasks: c.tasks.list()})
}

func (c *Console) apiTask(w http.ResponseWriter, r *http.Request) {
	t, ok := c.tasks.get(r.PathValue("id"))
	if !ok {
		c.fail(w, r, fmt.Errorf("%w: task %q", ErrNotFound, r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, t.snapshot())
}

func (c *Console) apiCancel(w http.ResponseWriter, r *http.Request) {
	t, ok := c.tasks.get(r.PathValue("id"))
	if !ok {
		c.fail(w, r, fmt.Errorf("%w: task %q", ErrNotFound, r.PathValue("id")))
		return
	}
	t.cancel()
	p, _ := PrincipalFrom(r.Context())
	s := t.snapshot()
	c.audit.record(AuditEntry{Time: c.cfg.Now().UTC(), Who: p.Name, Action: "cancel", What: s.What, Count: s.Moved, Task: s.ID})
	writeJSON(w, http.StatusOK, s)
}

// AuditResponse is GET /api/audit.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

func (c *Console) apiAudit(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, AuditResponse{Entries: c.audit.list()})
}

// Whoami is GET /api/whoami: the caller and the CSRF token their
// mutations carry.
type Whoami struct {
	Name string `json:"name"`
	Role string `json:"role"`
	CSRF string `json:"csrf"`
}

func (c *Console) apiWhoami(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	writeJSON(w, http.StatusOK, Whoami{Name: p.Name, Role: p.Role.String(), CSRF: c.csrfToken(p)})
}

// SamplesResponse is GET /api/samples: what the overview's charts draw.
type SamplesResponse struct {
	Series []Series `json:"series"`
}

func (c *Console) apiSamples(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, SamplesResponse{Series: c.samples.all()})
}
