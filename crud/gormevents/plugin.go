package gormevents

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/crud"
)

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by configuration errors.
	ErrInvalidConfig = errors.New("gormevents: invalid config")
	// ErrNoTransaction is returned by a write of a registered model that
	// runs outside any transaction.
	ErrNoTransaction = errors.New("gormevents: the write runs outside a transaction; " +
		"use db.Transaction or leave SkipDefaultTransaction off")
	// ErrBulk is returned by an update or delete by condition of a model
	// registered with BulkError.
	ErrBulk = errors.New("gormevents: update or delete by condition emits no event")
)

// PluginName is the plugin's name in GORM's registry.
const PluginName = "arcmill:crud-events"

// skipKey is the statement setting WithoutEvents sets.
const skipKey = "arcmill:crud-events:skip"

// BulkMode says what an update or delete by condition does, when the rows
// it changes are not in the program's hands.
type BulkMode int

const (
	// BulkSkip lets it run and emits nothing, as Arc's bulk operations.
	BulkSkip BulkMode = iota
	// BulkError refuses it with ErrBulk, so that no change goes unheard.
	BulkError
)

// Model configures the events of one model.
type Model struct {
	// Resource is Arc's resource name. Defaults to the Go type name with
	// its first letter in lower case (Product: "product").
	Resource string
	// IDField is the Go name of the field whose value becomes
	// meta.resourceId. Defaults to the primary key.
	IDField string
	// Document returns the payload's data for a row (a pointer to the
	// model). Defaults to the model itself, as encoding/json writes it.
	Document func(row any) any
	// DisableEvents turns the model's events off (Arc's documented
	// disableEvents).
	DisableEvents bool
	// Bulk is what an update or delete by condition does. Defaults to
	// BulkSkip.
	Bulk BulkMode
}

// Config configures the plugin.
type Config struct {
	// Emitter writes the events into the outbox. Required.
	Emitter *crud.Emitter
}

// Validate reports whether the configuration can be used.
func (c Config) Validate() error {
	if c.Emitter == nil {
		return fmt.Errorf("%w: Emitter is required", ErrInvalidConfig)
	}
	return nil
}

// Plugin is the GORM plugin. Register models before or after db.Use.
type Plugin struct {
	cfg    Config
	mu     sync.RWMutex
	models map[reflect.Type]Model
}

// New returns the plugin.
func New(cfg Config) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Plugin{cfg: cfg, models: map[reflect.Type]Model{}}, nil
}

// Name is the plugin's name (gorm.Plugin).
func (p *Plugin) Name() string { return PluginName }

// Register opts model (a struct or a pointer to one) into events.
func (p *Plugin) Register(model any, m Model) error {
	t := reflect.TypeOf(model)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return fmt.Errorf("%w: model %T is not a struct", ErrInvalidConfig, model)
	}
	if m.Resource == "" {
		r, n := utf8.DecodeRuneInString(t.Name())
		m.Resource = string(unicode.ToLower(r)) + t.Name()[n:]
	}
	if m.IDField != "" {
		if _, ok := t.FieldByName(m.IDField); !ok {
			return fmt.Errorf("%w: %s has no field %q", ErrInvalidConfig, t, m.IDField)
		}
	}
	if m.Bulk != BulkSkip && m.Bulk != BulkError {
		return fmt.Errorf("%w: unknown Bulk mode %d", ErrInvalidConfig, m.Bulk)
	}
	p.mu.Lock()
	p.models[t] = m
	p.mu.Unlock()
	return nil
}

// WithoutEvents returns db with the plugin's events off for its calls. The
// result is a new session, safe to reuse for several calls.
func WithoutEvents(db *gorm.DB) *gorm.DB { return db.Set(skipKey, true).Session(&gorm.Session{}) }

// Initialize registers the callbacks (gorm.Plugin): after each of GORM's
// create, update and delete steps (and their after-hooks), before the
// commit, so the event joins the write's transaction.
func (p *Plugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	if err := cb.Create().After("gorm:after_create").Before("gorm:commit_or_rollback_transaction").
		Register(PluginName+":create", p.callback(crud.Create)); err != nil {
		return err
	}
	if err := cb.Update().After("gorm:after_update").Before("gorm:commit_or_rollback_transaction").
		Register(PluginName+":update", p.callback(crud.Update)); err != nil {
		return err
	}
	return cb.Delete().After("gorm:after_delete").Before("gorm:commit_or_rollback_transaction").
		Register(PluginName+":delete", p.callback(crud.Delete))
}

func (p *Plugin) model(s *schema.Schema) (Model, bool) {
	if s == nil {
		return Model{}, false
	}
	p.mu.RLock()
	m, ok := p.models[s.ModelType]
	p.mu.RUnlock()
	return m, ok && !m.DisableEvents
}

func (p *Plugin) callback(op crud.Operation) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.Error != nil || db.Statement.Schema == nil {
			return
		}
		if skip, _ := db.Get(skipKey); skip == true {
			return
		}
		m, ok := p.model(db.Statement.Schema)
		if !ok {
			return
		}
		if op != crud.Create && db.RowsAffected == 0 {
			return // nothing changed (or a condition matched no row)
		}
		rows := p.rows(db, m, op)
		if rows == nil {
			if m.Bulk == BulkError {
				_ = db.AddError(ErrBulk)
			}
			return
		}
		if len(rows) == 0 {
			return
		}
		tx, err := sqlTx(db.Statement.ConnPool)
		if err != nil {
			_ = db.AddError(err)
			return
		}
		ctx := db.Statement.Context
		scope := crud.ScopeFrom(ctx)
		events := make([]arc.Event, 0, len(rows))
		for _, row := range rows {
			c := crud.Change{Op: op, Resource: m.Resource, Doc: row.doc, Scope: scope, ResourceID: row.id}
			ev, err := c.Event()
			if err != nil {
				_ = db.AddError(fmt.Errorf("gormevents: %s event: %w", m.Resource, err))
				return
			}
			events = append(events, ev)
		}
		if err := p.cfg.Emitter.Write(ctx, tx, events...); err != nil {
			_ = db.AddError(fmt.Errorf("gormevents: writing %d %s event(s) to the outbox: %w", len(events), m.Resource, err))
		}
	}
}

// row is one changed row: its document and its resource id.
type row struct {
	doc any
	id  string
}

// rows returns the changed rows the statement holds: each element of a
// slice or array model, or the model itself. It returns nil for an update
// or delete whose model carries no primary key (a change by condition).
func (p *Plugin) rows(db *gorm.DB, m Model, op crud.Operation) []row {
	rv := reflect.Indirect(db.Statement.ReflectValue)
	var elems []reflect.Value
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			elems = append(elems, reflect.Indirect(rv.Index(i)))
		}
	case reflect.Struct:
		elems = []reflect.Value{rv}
	default:
		return nil // a map or a Table(...) write: no model rows
	}
	s := db.Statement.Schema
	out := make([]row, 0, len(elems))
	for _, e := range elems {
		if e.Kind() != reflect.Struct || e.Type() != s.ModelType {
			return nil
		}
		if op != crud.Create && !hasPrimaryKey(db, s, e) {
			return nil
		}
		r := row{id: p.resourceID(db, s, m, e)}
		ptr := e.Addr().Interface()
		if m.Document != nil {
			r.doc = m.Document(ptr)
		} else {
			r.doc = ptr
		}
		out = append(out, r)
	}
	return out
}

func hasPrimaryKey(db *gorm.DB, s *schema.Schema, e reflect.Value) bool {
	if len(s.PrimaryFields) == 0 {
		return false
	}
	for _, f := range s.PrimaryFields {
		if _, zero := f.ValueOf(db.Statement.Context, e); zero {
			return false
		}
	}
	return true
}

// resourceID is the value of the id field (default: the primary key; a
// composite key joined with ":"), as a string.
func (p *Plugin) resourceID(db *gorm.DB, s *schema.Schema, m Model, e reflect.Value) string {
	var fields []*schema.Field
	if m.IDField != "" {
		if f := s.LookUpField(m.IDField); f != nil {
			fields = []*schema.Field{f}
		}
	} else {
		fields = s.PrimaryFields
	}
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		v, zero := f.ValueOf(db.Statement.Context, e)
		if zero {
			return ""
		}
		parts = append(parts, fmt.Sprint(v))
	}
	return strings.Join(parts, ":")
}

// sqlTx finds the *sql.Tx under GORM's connection.
func sqlTx(pool gorm.ConnPool) (*sql.Tx, error) {
	switch c := pool.(type) {
	case *sql.Tx:
		return c, nil
	case *gorm.PreparedStmtTX:
		if tx, ok := c.Tx.(*sql.Tx); ok {
			return tx, nil
		}
	}
	return nil, ErrNoTransaction
}
