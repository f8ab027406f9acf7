package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/arcmill/arcmill/middleware"
)

// DefaultParkedPageSize is how many parked keys the Parked page and GET
// /api/parked show without a limit= (at most 1000 with one).
const DefaultParkedPageSize = 100

// ParkedResponse is GET /api/parked: a page of the keys sequenced handlers
// parked behind a dead letter (middleware.Sequencer), handlers sorted by
// group and handler, each handler's keys oldest first. Query: group=,
// handler=, and offset=, limit= or page= as for /api/letters.
type ParkedResponse struct {
	Sequences []middleware.ParkedSequence `json:"sequences"`
	// Events counts the events held by the page's sequences (not every
	// page's: that would read every key).
	Events int64 `json:"events"`
	// Offset and Limit are the page's.
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	// Total counts the keys parked that group= and handler= match, on
	// every page.
	Total int64 `json:"total"`
}

// ParkedRequest is POST /api/parked/release and /api/parked/discard: the
// key, and the handler (and group) where the key is parked for several.
type ParkedRequest struct {
	Group   string `json:"group"`
	Handler string `json:"handler"`
	Key     string `json:"key"`
	// Confirm must be "discard" to discard: parked events are dropped for
	// good.
	Confirm string `json:"confirm,omitempty"`
}

// ParkedResult answers a release or a discard.
type ParkedResult struct {
	Key string `json:"key"`
	// Count is how many parked events were released or discarded.
	Count   int64  `json:"count"`
	Message string `json:"message"`
}

// sequenceAdmin is the Sequencers' store, on the console's Redis.
func (c *Console) sequenceAdmin() (middleware.SequenceAdmin, error) {
	if c.cfg.Redis == nil {
		return middleware.SequenceAdmin{}, fmt.Errorf("%w: parked sequences live in Redis: set Config.Redis", ErrNotFound)
	}
	return middleware.SequenceAdmin{Client: c.cfg.Redis, Prefix: c.cfg.SequencePrefix}, nil
}

func (c *Console) parked(r *http.Request) (ParkedResponse, error) {
	admin, err := c.sequenceAdmin()
	if err != nil {
		return ParkedResponse{}, err
	}
	q := r.URL.Query()
	offset, limit := pagingOf(r, DefaultParkedPageSize)
	p, err := admin.ListPage(r.Context(), middleware.ParkedFilter{Group: q.Get("group"), Handler: q.Get("handler"),
		Offset: offset, Limit: limit})
	if err != nil {
		return ParkedResponse{}, err
	}
	resp := ParkedResponse{Sequences: p.Sequences, Offset: offset, Limit: limit, Total: p.Total}
	if resp.Sequences == nil {
		resp.Sequences = []middleware.ParkedSequence{}
	}
	for _, s := range p.Sequences {
		resp.Events += s.Parked
	}
	return resp, nil
}

func (c *Console) apiParked(w http.ResponseWriter, r *http.Request) {
	resp, err := c.parked(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// parkedView is a page of parked keys.
type parkedView struct {
	ParkedResponse
	Group, Handler string
	// Query keeps the filter, and a limit= given, in the page links.
	Query url.Values
	// First and Last number the page's keys from 1 (Last < First: none).
	First, Last int
	Page        int
	Pages       int
	PrevPage    int
	NextPage    int
}

func (c *Console) parkedPage(w http.ResponseWriter, r *http.Request) {
	resp, err := c.parked(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	v := parkedView{ParkedResponse: resp, Group: q.Get("group"), Handler: q.Get("handler"), Query: url.Values{},
		First: resp.Offset + 1, Last: resp.Offset + len(resp.Sequences), Page: resp.Offset/resp.Limit + 1,
		Pages: max(1, int((resp.Total+int64(resp.Limit)-1)/int64(resp.Limit)))}
	for _, k := range []string{"group", "handler"} {
		if q.Get(k) != "" {
			v.Query.Set(k, q.Get(k))
		}
	}
	if resp.Limit != DefaultParkedPageSize {
		v.Query.Set("limit", strconv.Itoa(resp.Limit))
	}
	if v.Page > 1 {
		v.PrevPage = min(v.Page-1, v.Pages) // past the end: back to the last page
	}
	if v.Page < v.Pages {
		v.NextPage = v.Page + 1
	}
	c.render(w, r, "parked.html", "Parked sequences", "parked", v)
}

// readParked reads a ParkedRequest from a JSON body or form fields.
func readParked(r *http.Request) (ParkedRequest, error) {
	var req ParkedRequest
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			return req, fmt.Errorf("%w: the body is not a parked-sequence request: %v", ErrInvalidConfig, err)
		}
	} else {
		r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
		if err := r.ParseForm(); err != nil {
			return req, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		req = ParkedRequest{Group: r.PostForm.Get("group"), Handler: r.PostForm.Get("handler"), Key: r.PostForm.Get("key"),
			Confirm: r.PostForm.Get("confirm")}
	}
	if req.Key == "" {
		return req, fmt.Errorf("%w: no key given", ErrInvalidConfig)
	}
	return req, nil
}

func (c *Console) apiParkedRelease(w http.ResponseWriter, r *http.Request) {
	c.parkedAction(w, r, "release")
}

func (c *Console) apiParkedDiscard(w http.ResponseWriter, r *http.Request) {
	c.parkedAction(w, r, "discard")
}

// parkedAction releases or discards one parked sequence, and audits it.
func (c *Console) parkedAction(w http.ResponseWriter, r *http.Request, action string) {
	req, err := readParked(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if action == "discard" && req.Confirm != "discard" {
		c.refuse(w, r, http.StatusBadRequest, `a discard drops the parked events for good: confirm it with "confirm": "discard"`)
		return
	}
	admin, err := c.sequenceAdmin()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f := middleware.ParkedFilter{Group: req.Group, Handler: req.Handler, Key: req.Key}
	var n int64
	if action == "release" {
		n, err = admin.Release(r.Context(), f)
	} else {
		n, err = admin.Discard(r.Context(), f)
	}
	switch {
	case errors.Is(err, middleware.ErrNotParked):
		err = fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, middleware.ErrAmbiguousSequence):
		err = fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p, _ := PrincipalFrom(r.Context())
	what := fmt.Sprintf("parked key %q", req.Key)
	if req.Handler != "" {
		what += fmt.Sprintf(" of handler %q", req.Handler)
	}
	c.audit.record(AuditEntry{Time: c.cfg.Now().UTC(), Who: p.Name, Action: action + "-parked", What: what, Count: n})
	msg := fmt.Sprintf("Released %q: %d parked event(s) run next, in order.", req.Key, n)
	if action == "discard" {
		msg = fmt.Sprintf("Discarded %q: %d parked event(s) dropped.", req.Key, n)
	}
	writeJSON(w, http.StatusOK, ParkedResult{Key: req.Key, Count: n, Message: msg})
}
