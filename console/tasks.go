package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/internal/ctxsleep"
	"github.com/arcmill/arcmill/outbox"
)

// Task states.
const (
	TaskRunning   = "running"
	TaskDone      = "done"
	TaskFailed    = "failed"
	TaskCancelled = "cancelled"
)

// LetterRef names one dead letter.
type LetterRef struct {
	// Source is the letter's source key.
	Source string `json:"source"`
	// ID is its id in the source.
	ID string `json:"id"`
}

// Selection picks the dead letters a redrive or purge acts on: the listed
// letters, or every letter matching the filter (All must then be set when
// the filter is empty, so that an empty request never means everything).
type Selection struct {
	// Letters lists single dead letters.
	Letters []LetterRef `json:"letters,omitempty"`
	// Filter selects by source, type, cause or text.
	Filter
	// All confirms an empty filter: every dead letter.
	All bool `json:"all,omitempty"`
}

func (s Selection) empty() bool { return len(s.Letters) == 0 && s.Filter == (Filter{}) && !s.All }

// String describes the selection for the audit list.
func (s Selection) String() string {
	if len(s.Letters) > 0 {
		parts := make([]string, 0, min(len(s.Letters), 3))
		for _, l := range s.Letters[:min(len(s.Letters), 3)] {
			parts = append(parts, l.Source+"/"+l.ID)
		}
		if len(s.Letters) > 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(s.Letters)-3))
		}
		return "letters " + strings.Join(parts, ", ")
	}
	if s.Filter == (Filter{}) {
		return "all dead letters"
	}
	var parts []string
	for k, v := range map[string]string{"source": s.Source, "type": s.Type, "cause": s.Cause, "q": s.Query} {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	slices.Sort(parts)
	return "dead letters with " + strings.Join(parts, " ")
}

// Task is a redrive running in the background, as the API shows it.
type Task struct {
	// ID identifies the task.
	ID string `json:"id"`
	// Action is "redrive".
	Action string `json:"action"`
	// What describes the selection.
	What string `json:"what"`
	// By names who started it.
	By string `json:"by"`
	// State is TaskRunning, TaskDone, TaskFailed or TaskCancelled.
	State string `json:"state"`
	// Total is how many dead letters were selected.
	Total int64 `json:"total"`
	// Moved counts those redriven by this task.
	Moved int64 `json:"moved"`
	// Skipped counts those that could not be put back as they were, or
	// that were gone (redriven or purged meanwhile).
	Skipped int64 `json:"skipped"`
	// Rate is the cap in dead letters per second.
	Rate float64 `json:"rate"`
	// Error says why a failed task stopped.
	Error string `json:"error,omitempty"`
	// Started and Finished time the task (Finished is zero while running).
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// tasks runs and remembers the console's tasks.
type tasks struct {
	mu     sync.Mutex
	byID   map[string]*taskRun
	order  []string // oldest first
	wg     sync.WaitGroup
	closed bool
}

type taskRun struct {
	mu     sync.Mutex
	t      Task
	cancel context.CancelFunc
}

func (r *taskRun) snapshot() Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.t
}

// maxTasks is how many finished tasks are remembered.
const maxTasks = 100

func (ts *tasks) get(id string) (*taskRun, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.byID[id]
	return r, ok
}

func (ts *tasks) list() []Task {
	ts.mu.Lock()
	runs := make([]*taskRun, 0, len(ts.order))
	for i := len(ts.order) - 1; i >= 0; i-- {
		runs = append(runs, ts.byID[ts.order[i]])
	}
	ts.mu.Unlock()
	out := make([]Task, 0, len(runs))
	for _, r := range runs {
		out = append(out, r.snapshot())
	}
	return out
}

// errClosed refuses a task once the console is closing.
var errClosed = fmt.Errorf("%w: the console is closing", ErrInvalidConfig)

// start runs fn as a task unless the console is closing.
func (ts *tasks) start(t Task, fn func(ctx context.Context, r *taskRun) error) (*taskRun, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &taskRun{t: t, cancel: cancel}
	ts.mu.Lock()
	if ts.closed {
		ts.mu.Unlock()
		cancel()
		return nil, errClosed
	}
	if ts.byID == nil {
		ts.byID = map[string]*taskRun{}
	}
	ts.byID[t.ID] = r
	ts.order = append(ts.order, t.ID)
	ts.forget()
	ts.wg.Add(1)
	ts.mu.Unlock()
	go func() {
		defer ts.wg.Done()
		defer cancel()
		err := fn(ctx, r)
		r.mu.Lock()
		switch {
		case ctx.Err() != nil:
			r.t.State = TaskCancelled
		case err != nil:
			r.t.State, r.t.Error = TaskFailed, err.Error()
		default:
			r.t.State = TaskDone
		}
		r.t.Finished = time.Now().UTC()
		r.mu.Unlock()
	}()
	return r, nil
}

// forget drops the oldest finished tasks past maxTasks; ts.mu is held.
func (ts *tasks) forget() {
	for len(ts.order) > maxTasks {
		dropped := false
		for i, id := range ts.order {
			if r := ts.byID[id]; r.snapshot().State != TaskRunning {
				delete(ts.byID, id)
				ts.order = slices.Delete(ts.order, i, i+1)
				dropped = true
				break
			}
		}
		if !dropped {
			return
		}
	}
}

// close cancels every running task and waits for them.
func (ts *tasks) close() {
	ts.mu.Lock()
	ts.closed = true
	for _, r := range ts.byID {
		r.cancel()
	}
	ts.mu.Unlock()
	ts.wg.Wait()
}

// resolve lists the dead letters a selection names, as they are now.
func (c *Console) resolve(ctx context.Context, sel Selection) ([]letter, error) {
	if sel.empty() {
		return nil, fmt.Errorf("%w: an empty selection: name letters, a filter, or all", ErrInvalidConfig)
	}
	if len(sel.Letters) > 0 {
		out := make([]letter, 0, len(sel.Letters))
		for _, ref := range sel.Letters {
			l, err := c.find(ctx, ref.Source, ref.ID)
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
		return out, nil
	}
	var out []letter
	scan, err := c.each(ctx, sel.Filter, func(l letter) bool { out = append(out, l); return true })
	if err == nil && len(scan.Errors) > 0 {
		err = fmt.Errorf("console: %s", strings.Join(scan.Errors, "; "))
	}
	return out, err
}

// startRedrive selects the dead letters and redrives them in a task, at
// most RedriveRate a second, each one atomically.
func (c *Console) startRedrive(ctx context.Context, who string, sel Selection) (Task, error) {
	ls, err := c.resolve(ctx, sel)
	if err != nil {
		return Task{}, err
	}
	t := Task{ID: uuid.NewString(), Action: "redrive", What: sel.String(), By: who, State: TaskRunning,
		Total: int64(len(ls)), Rate: c.cfg.RedriveRate, Started: c.cfg.Now().UTC()}
	c.audit.record(AuditEntry{Time: t.Started, Who: who, Action: "redrive.started", What: t.What, Count: t.Total, Task: t.ID})
	r, err := c.tasks.start(t, func(ctx context.Context, r *taskRun) error {
		err := c.redriveAll(ctx, r, ls)
		s := r.snapshot()
		c.audit.record(AuditEntry{Time: c.cfg.Now().UTC(), Who: who, Action: "redrive.finished", What: s.What,
			Count: s.Moved, Task: s.ID})
		return err
	})
	if err != nil {
		return Task{}, err
	}
	return r.snapshot(), nil
}

// redriveAll moves the letters back, paced to the rate from the start.
func (c *Console) redriveAll(ctx context.Context, r *taskRun, ls []letter) error {
	start := time.Now()
	for i, l := range ls {
		if c.cfg.RedriveRate > 0 && i > 0 {
			due := start.Add(time.Duration(float64(i) / c.cfg.RedriveRate * float64(time.Second)))
			if !ctxsleep.Sleep(ctx, time.Until(due)) {
				return ctx.Err()
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		moved, err := c.redriveOne(ctx, l)
		if err != nil {
			return err
		}
		r.mu.Lock()
		if moved {
			r.t.Moved++
		} else {
			r.t.Skipped++
		}
		r.mu.Unlock()
	}
	return nil
}

// redriveOne moves one dead letter back; false when it cannot be put back
// or is gone.
func (c *Console) redriveOne(ctx context.Context, l letter) (bool, error) {
	switch l.src.kind {
	case kindStream:
		if !l.Redrivable {
			return false, nil
		}
		// The list holds summaries: read the entry whole (gone: a redrive
		// or purge took it meanwhile).
		full, err := c.find(ctx, l.Source, l.ID)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		// Checked again on the entry as it is now: only to a configured
		// stream, whatever it names.
		target, allowed := full.target()
		if !allowed {
			return false, nil
		}
		fields, ok := redisstream.RedriveFields(full.dl, full.readErr)
		if !ok {
			return false, nil
		}
		maxLen := int64(0)
		if target == l.src.stream.Name {
			maxLen = l.src.stream.MaxLen
		}
		moved, err := redisstream.RedriveEntry(ctx, c.cfg.Redis, l.src.name, l.ID, target, maxLen, fields)
		if moved {
			c.index(l.src).forget(l.ID)
		}
		return moved, err
	default:
		// By its row, not its event id: one event written to several
		// topics has a dead row per topic, and only this one was picked.
		seq, err := strconv.ParseInt(l.ID, 10, 64)
		if err != nil {
			return false, nil
		}
		n, err := l.src.outbox.Outbox.Redrive(ctx, outbox.RedriveOptions{Filter: outbox.Filter{Seqs: []int64{seq}}})
		return n == 1, err
	}
}

// purge deletes the selected dead letters and returns how many.
func (c *Console) purge(ctx context.Context, sel Selection) (int64, error) {
	ls, err := c.resolve(ctx, sel)
	if err != nil {
		return 0, err
	}
	var n int64
	streamIDs := map[string][]string{}
	seqs := map[string][]int64{} // by row: an event id may name several
	outboxes := map[string]*outbox.Outbox{}
	for _, l := range ls {
		if l.src.kind == kindStream {
			streamIDs[l.src.name] = append(streamIDs[l.src.name], l.ID)
			continue
		}
		seq, err := strconv.ParseInt(l.ID, 10, 64)
		if err != nil {
			continue // resolve read it from the table: never happens
		}
		seqs[l.src.name] = append(seqs[l.src.name], seq)
		outboxes[l.src.name] = l.src.outbox.Outbox
	}
	for name, ids := range seqs {
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 500)]
			ids = ids[len(chunk):]
			c, err := outboxes[name].PurgeDeadLetters(ctx, outbox.Filter{Seqs: chunk})
			n += c
			if err != nil {
				return n, fmt.Errorf("console: %w", err)
			}
		}
	}
	for stream, ids := range streamIDs {
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 500)]
			ids = ids[len(chunk):]
			deleted, err := c.cfg.Redis.XDel(ctx, stream, chunk...).Result()
			n += deleted
			if err != nil {
				return n, fmt.Errorf("console: purging %s: %w", stream, err)
			}
			x := c.index(source{name: stream})
			for _, id := range chunk {
				x.forget(id)
			}
		}
	}
	return n, nil
}
