// Package gormevents is a GORM plugin that writes Arc's CRUD events
// (<resource>.created, .updated, .deleted; see package crud) into
// arcmill's outbox from GORM's create, update and delete callbacks, inside
// the transaction of the write: a change that rolls back emits nothing, a
// change that commits is relayed at least once, with the bytes Arc's
// arcCorePlugin would have published.
//
// # A module of its own
//
// This package is the Go module github.com/arcmill/arcmill/crud/gormevents,
// nested in arcmill's repository, so that a service that does not use GORM
// never downloads GORM or its drivers: the core module's go.mod lists none
// of them. It requires the arcmill module it sits in (a replace directive
// points it at ../.. for development; a release tags both, as
// crud/gormevents/vX.Y.Z beside vX.Y.Z). The tests need the three GORM
// drivers (PostgreSQL, MySQL/MariaDB, and github.com/glebarez/sqlite, pure Go,
// no cgo); the plugin itself needs only gorm.io/gorm.
//
// # Use
//
//	em, _ := crud.NewEmitter(crud.EmitterConfig{Outbox: ob})
//	plugin, _ := gormevents.New(gormevents.Config{Emitter: em})
//	plugin.Register(&Product{}, gormevents.Model{Resource: "product"})
//	db.Use(plugin)
//	db.WithContext(r.Context()).Create(&p) // product.created, same tx
//
// Events are opt-in per model: a model nobody registered emits nothing.
// Model sets the resource name, the id field (meta.resourceId) and the
// payload's data (the document, by default the model as encoding/json
// writes it); Model.DisableEvents turns a registered model off (the
// disableEvents option Arc documents but never built), and WithoutEvents
// turns one call off. The request scope (correlation id, user,
// organization) comes from the statement's context (crud.ScopeFrom): pass
// the request's context with db.WithContext.
//
// # What each GORM call emits
//
//	call                                          emits
//	Create(&m) / Save(&m) of a new row            one .created
//	Create(&[]M{...}) / CreateInBatches           one .created per row, in order
//	Save(&m) / Model(&m).Updates(...) / Update    one .updated (m with a primary key)
//	Model(&[]M{...}).Update(...)                  one .updated per element
//	Delete(&m) (soft delete too)                  one .deleted (m with a primary key)
//	Delete(&[]M{...})                             one .deleted per element
//	Update/Delete by condition (Where(...), no    none, by default: the rows are not
//	  primary key in the model)                     known (Model.Bulk: BulkError refuses
//	                                                the call instead)
//	an update or delete that changed no row       none
//	a restore (Unscoped().Model(&m).Update(       one .updated: arcmill has no .restored
//	  "deleted_at", nil))                           (Arc documents it, never emits it)
//	Create with ON CONFLICT (upsert)              one .created per row given
//
// The document is the model as the program holds it after the call: GORM
// writes back generated keys and the updated fields, but a model loaded in
// part, or built with only its key for a delete, gives a partial
// document. Load the whole row first when consumers need it (Arc reads
// the document before deleting it).
//
// # Transactions
//
// GORM runs each create, update and delete in a transaction of its own
// unless SkipDefaultTransaction is set; inside db.Transaction the events
// join the caller's. A write outside any transaction (SkipDefaultTransaction
// and no db.Transaction) cannot carry its event atomically, and fails with
// ErrNoTransaction rather than emit an event that might not match the data.
package gormevents
