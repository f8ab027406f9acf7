package gormevents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/crud"
	"github.com/arcmill/arcmill/internal/testenv"
	"github.com/arcmill/arcmill/outbox"
)

// Product is a model that opts in; its JSON keys are Arc-style.
type Product struct {
	ID        uint           `gorm:"primaryKey" json:"id"`
	Name      string         `json:"name"`
	Price     int            `json:"price"`
	DeletedAt gorm.DeletedAt `json:"-"`
}

// Note is a model nobody registers.
type Note struct {
	ID   uint
	Text string
}

// Secret is registered with DisableEvents.
type Secret struct {
	ID  uint
	Key string
}

// Sku has a string id field that is not the primary key, and a document
// shaped by Model.Document.
type Sku struct {
	ID   uint
	Code string
	Qty  int
}

// fixture is a GORM database with the plugin, an outbox and a relay to a
// stream of its own.
type fixture struct {
	db     *gorm.DB
	relay  *outbox.Relay
	redis  *redis.Client
	stream string
	plugin *Plugin
}

func open(t testing.TB, d outbox.Dialect, prefix string) (*gorm.DB, *sql.DB) {
	t.Helper()
	var dial gorm.Dialector
	switch d {
	case outbox.PostgreSQL:
		dial = postgres.Open(testenv.PostgresDSN(t))
	case outbox.MySQL:
		dial = mysql.Open(testenv.MySQLDSN(t))
	case outbox.SQLite:
		dial = sqlite.Open("file:" + filepath.Join(t.TempDir(), "gorm.db") +
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	}
	// Tables of their own (the servers are shared): a prefix per fixture.
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: prefix}})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, sqlDB.Close()) })
	return db, sqlDB
}

var models = []any{&Product{}, &Note{}, &Secret{}, &Sku{}}

func newFixture(t testing.TB, d outbox.Dialect) *fixture {
	t.Helper()
	ctx := context.Background()
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	prefix := "gt_" + suffix + "_"
	db, sqlDB := open(t, d, prefix)
	f := &fixture{stream: "gormtest:" + suffix}
	obTable := prefix + "outbox"
	// The glebarez driver is not one outbox.DialectOf knows: say it.
	ob, err := outbox.New(sqlDB, outbox.Config{Dialect: d, Table: obTable})
	require.NoError(t, err)
	require.NoError(t, ob.Migrate(ctx))
	em, err := crud.NewEmitter(crud.EmitterConfig{Outbox: ob, Topic: f.stream})
	require.NoError(t, err)
	f.plugin, err = New(Config{Emitter: em})
	require.NoError(t, err)
	require.NoError(t, f.plugin.Register(&Product{}, Model{Resource: "product"}))
	require.NoError(t, f.plugin.Register(Secret{}, Model{DisableEvents: true}))
	require.NoError(t, f.plugin.Register(&Sku{}, Model{IDField: "Code", Bulk: BulkError,
		Document: func(row any) any { s := row.(*Sku); return map[string]any{"code": s.Code, "qty": s.Qty} }}))
	require.NoError(t, db.Use(f.plugin))
	require.NoError(t, db.AutoMigrate(models...))
	f.db = db
	t.Cleanup(func() {
		assert.NoError(t, db.Migrator().DropTable(append(models, obTable, obTable+"_lock")...))
		if d == outbox.PostgreSQL {
			assert.NoError(t, db.Exec("DROP FUNCTION IF EXISTS "+obTable+"_notify() CASCADE").Error)
		}
	})
	f.redis = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() {
		assert.NoError(t, f.redis.Del(context.Background(), f.stream).Err())
		assert.NoError(t, f.redis.Close())
	})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: f.redis, SkipServerCheck: true})
	require.NoError(t, err)
	f.relay, err = ob.NewRelay(pub, outbox.RelayConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, f.relay.Close()) })
	return f
}

// relayed runs one relay pass and returns the events on the stream so
// far, as their Arc JSON, each checked to be in Arc's layout.
func (f *fixture) relayed(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	_, err := f.relay.RelayBatch(ctx)
	require.NoError(t, err)
	entries, err := f.redis.XRange(ctx, f.stream, "-", "+").Result()
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		data, ok := e.Values["data"].(string)
		require.True(t, ok, "entry %s has no data field: %v", e.ID, e.Values)
		var ev arc.Event
		require.NoError(t, arc.Unmarshal([]byte(data), &ev))
		assert.Equal(t, ev.Type, e.Values["type"], "Arc's type field")
		out = append(out, data)
	}
	return out
}

// events decodes what relayed returns.
func events(t testing.TB, raw []string) []arc.Event {
	t.Helper()
	out := make([]arc.Event, len(raw))
	for i, r := range raw {
		require.NoError(t, arc.Unmarshal([]byte(r), &out[i]))
	}
	return out
}

var dialects = []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite}

func forDialects(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			fn(t, newFixture(t, d))
		})
	}
}

var scope = crud.NewScope("req-1", "u-7", "org-1")

// Create, update and delete each write Arc's event in the write's
// transaction; the bytes are those crud builds (and crud's goldens check
// against Node) for the same document, scope, id and time. The scope has a
// numeric user id and an empty-string organization, which Arc writes as
// 42 and "".
func TestPlugin_CreateUpdateDelete(t *testing.T) {
	scope := crud.Scope{RequestID: "req-1", UserID: crud.Int(42), OrganizationID: crud.String("")}
	forDialects(t, func(t *testing.T, f *fixture) {
		ctx := crud.WithScope(context.Background(), scope)
		db := f.db.WithContext(ctx)
		p := Product{Name: "Mug", Price: 12}
		require.NoError(t, db.Create(&p).Error)
		require.NoError(t, db.Model(&p).Update("price", 15).Error)
		require.NoError(t, db.Delete(&p).Error) // soft delete
		raw := f.relayed(t)
		require.Len(t, raw, 3)
		evs := events(t, raw)
		for i, want := range []struct {
			op    crud.Operation
			price int
		}{{crud.Create, 12}, {crud.Update, 15}, {crud.Delete, 15}} {
			ev := evs[i]
			assert.Equal(t, want.op.Type("product"), ev.Type)
			// Rebuild with crud from the same inputs: the bytes must match.
			doc := Product{ID: p.ID, Name: "Mug", Price: want.price}
			c := crud.Change{Op: want.op, Resource: "product", Doc: &doc, Scope: scope, ID: ev.Meta.ID, Time: ev.Meta.Timestamp}
			wantEv, err := c.Event()
			require.NoError(t, err)
			wantRaw, err := arc.Marshal(wantEv)
			require.NoError(t, err)
			assert.Equal(t, string(wantRaw), raw[i], "event %d", i)
			assert.Equal(t, "req-1", ev.Meta.CorrelationID)
			assert.Contains(t, raw[i], `"userId":42,"organizationId":"","timestamp"`)
			assert.Contains(t, raw[i], `"userId":"42","organizationId":""}}`)
		}
	})
}

// A write that rolls back (an error in the caller's transaction) emits
// nothing; the one that commits emits.
func TestPlugin_RolledBackEmitsNothing(t *testing.T) {
	forDialects(t, func(t *testing.T, f *fixture) {
		err := f.db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Create(&Product{Name: "ghost"}).Error)
			return errors.New("abort")
		})
		require.Error(t, err)
		assert.Empty(t, f.relayed(t))
		require.NoError(t, f.db.Transaction(func(tx *gorm.DB) error {
			return tx.Create(&Product{Name: "real"}).Error
		}))
		evs := events(t, f.relayed(t))
		require.Len(t, evs, 1)
		assert.Equal(t, "product.created", evs[0].Type)
	})
}

// Bulk operations: a batch create emits one event per row, in order; an
// update of a slice of models one per element; an update or delete by
// condition none (BulkSkip) or an error (BulkError); an update that
// matches no row none.
func TestPlugin_Bulk(t *testing.T) {
	forDialects(t, func(t *testing.T, f *fixture) {
		ps := []Product{{Name: "a", Price: 1}, {Name: "b", Price: 2}, {Name: "c", Price: 3}}
		require.NoError(t, f.db.Create(&ps).Error)
		require.NoError(t, f.db.CreateInBatches([]Product{{Name: "d"}, {Name: "e"}}, 1).Error)
		evs := events(t, f.relayed(t))
		require.Len(t, evs, 5)
		for i, name := range []string{"a", "b", "c", "d", "e"} {
			assert.Equal(t, "product.created", evs[i].Type)
			assert.Contains(t, string(evs[i].Payload), `"name":"`+name+`"`)
		}
		assert.Equal(t, fmt.Sprint(ps[0].ID), evs[0].Meta.ResourceID)

		require.NoError(t, f.db.Model(&ps).Update("price", 9).Error)
		evs = events(t, f.relayed(t))[5:]
		require.Len(t, evs, 3, "one .updated per element")

		res := f.db.Model(&Product{}).Where("price = ?", 9).Update("price", 10)
		require.NoError(t, res.Error)
		assert.EqualValues(t, 3, res.RowsAffected)
		require.NoError(t, f.db.Where("name = ?", "d").Delete(&Product{}).Error)
		require.NoError(t, f.db.Model(&Product{ID: 999999}).Update("price", 1).Error)
		assert.Len(t, f.relayed(t), 8, "by condition, or no row: nothing")

		require.NoError(t, f.db.Create(&Sku{Code: "S-1", Qty: 1}).Error)
		err := f.db.Model(&Sku{}).Where("qty > 0").Update("qty", 2).Error
		require.ErrorIs(t, err, ErrBulk)
		var sku Sku
		require.NoError(t, f.db.First(&sku).Error)
		assert.Equal(t, 1, sku.Qty, "BulkError rolled the update back")
	})
}

// Models opt in: an unregistered model, a DisableEvents model and a call
// under WithoutEvents emit nothing; IDField and Document shape the event.
func TestPlugin_OptInOptOutAndShape(t *testing.T) {
	forDialects(t, func(t *testing.T, f *fixture) {
		require.NoError(t, f.db.Create(&Note{Text: "x"}).Error)
		require.NoError(t, f.db.Create(&Secret{Key: "k"}).Error)
		quiet := WithoutEvents(f.db)
		require.NoError(t, quiet.Create(&Product{Name: "quiet"}).Error)
		require.NoError(t, quiet.Create(&Product{Name: "quiet too"}).Error, "a reusable session")
		assert.Empty(t, f.relayed(t))

		require.NoError(t, f.db.Create(&Sku{Code: "S-9", Qty: 4}).Error)
		evs := events(t, f.relayed(t))
		require.Len(t, evs, 1)
		assert.Equal(t, "sku.created", evs[0].Type, "default resource name")
		assert.Equal(t, "S-9", evs[0].Meta.ResourceID, "IDField")
		var pl struct{ Data map[string]any }
		require.NoError(t, json.Unmarshal(evs[0].Payload, &pl))
		assert.Equal(t, map[string]any{"code": "S-9", "qty": float64(4)}, pl.Data, "Document")
	})
}

// A write outside any transaction cannot carry its event: refused.
func TestPlugin_NoTransaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, outbox.SQLite)
	err := f.db.Session(&gorm.Session{SkipDefaultTransaction: true}).Create(&Product{Name: "x"}).Error
	require.ErrorIs(t, err, ErrNoTransaction)
}

func TestRegister_Validates(t *testing.T) {
	t.Parallel()
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	em, err := crud.NewEmitter(crud.EmitterConfig{Outbox: &outbox.Outbox{}})
	require.NoError(t, err)
	p, err := New(Config{Emitter: em})
	require.NoError(t, err)
	require.ErrorIs(t, p.Register(42, Model{}), ErrInvalidConfig)
	require.ErrorIs(t, p.Register(&Product{}, Model{IDField: "Nope"}), ErrInvalidConfig)
	require.ErrorIs(t, p.Register(&Product{}, Model{Bulk: 7}), ErrInvalidConfig)
}

// Save emits .created for a new row and .updated for an existing one; a
// restore of a soft-deleted row is an update, and emits .updated (arcmill
// has no .restored, as Arc never emits one).
func TestPlugin_SaveAndRestore(t *testing.T) {
	forDialects(t, func(t *testing.T, f *fixture) {
		p := Product{Name: "Lamp", Price: 30}
		require.NoError(t, f.db.Save(&p).Error)
		p.Price = 35
		require.NoError(t, f.db.Save(&p).Error)
		require.NoError(t, f.db.Delete(&p).Error)
		require.NoError(t, f.db.Unscoped().Model(&p).Update("deleted_at", nil).Error)
		evs := events(t, f.relayed(t))
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
			assert.Equal(t, fmt.Sprint(p.ID), ev.Meta.ResourceID)
		}
		assert.Equal(t, []string{"product.created", "product.updated", "product.deleted", "product.updated"}, types)
		var n int64
		require.NoError(t, f.db.Model(&Product{}).Where("id = ?", p.ID).Count(&n).Error)
		assert.EqualValues(t, 1, n, "restored")
	})
}

// With prepared statements, GORM wraps the transaction; the event still
// joins it.
func TestPlugin_PreparedStatements(t *testing.T) {
	forDialects(t, func(t *testing.T, f *fixture) {
		db := f.db.Session(&gorm.Session{PrepareStmt: true})
		require.NoError(t, db.Create(&Product{Name: "prepared"}).Error)
		err := db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Create(&Product{Name: "rolled back"}).Error)
			return errors.New("abort")
		})
		require.Error(t, err)
		evs := events(t, f.relayed(t))
		require.Len(t, evs, 1)
		assert.Contains(t, string(evs[0].Payload), `"name":"prepared"`)
	})
}
