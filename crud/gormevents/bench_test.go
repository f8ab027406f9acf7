package gormevents

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/arcmill/arcmill/outbox"
)

// BenchmarkCreate measures what the plugin adds to a GORM create (one
// row, in GORM's own transaction), beside the same create without the
// plugin and the same create plus one extra plain row in its transaction
// (the target: the plugin costs about that one extra row).
//
//	cd crud/gormevents && go test -run '^$' -bench BenchmarkCreate -benchmem
func BenchmarkCreate(b *testing.B) {
	for _, d := range []outbox.Dialect{outbox.PostgreSQL, outbox.MySQL, outbox.SQLite} {
		b.Run(d.String(), func(b *testing.B) {
			f := newFixture(b, d) // the plugin is on f.db, registered for Product
			require.NoError(b, f.db.AutoMigrate(&extraRow{}))
			b.Cleanup(func() { require.NoError(b, f.db.Migrator().DropTable(&extraRow{})) })
			b.Run("without-plugin", func(b *testing.B) {
				db := WithoutEvents(f.db)
				for b.Loop() {
					require.NoError(b, db.Create(&Product{Name: "Mug", Price: 12}).Error)
				}
			})
			b.Run("plus-one-row", func(b *testing.B) {
				db := WithoutEvents(f.db)
				for b.Loop() {
					require.NoError(b, db.Transaction(func(tx *gorm.DB) error {
						if err := tx.Create(&Product{Name: "Mug", Price: 12}).Error; err != nil {
							return err
						}
						return tx.Create(&extraRow{Data: `{"type":"product.created"}`}).Error
					}))
				}
			})
			b.Run("with-plugin", func(b *testing.B) {
				for b.Loop() {
					require.NoError(b, f.db.Create(&Product{Name: "Mug", Price: 12}).Error)
				}
			})
		})
	}
}

// extraRow is the plain extra row of the reference case.
type extraRow struct {
	ID   uint
	Data string
}
