package outbox

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/stdlib"
)

// errNotPgx: LISTEN needs the pgx driver's raw connection.
var errNotPgx = errors.New("outbox: LISTEN/NOTIFY needs the pgx database/sql driver (github.com/jackc/pgx/v5/stdlib)")

// listen holds one connection LISTENing on the table's channel and wakes
// the workers on each notification, which PostgreSQL delivers when a
// transaction that inserted rows commits. Polling goes on regardless, so
// a lost connection only costs latency; it is re-opened after a second.
func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if errors.Is(err, errNotPgx) {
			r.cfg.Logger.Info("Outbox relay polls only", watermill.LogFields{"reason": err.Error()})
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Error("Outbox relay lost its LISTEN connection; polling until it is back", err, nil)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	conn, err := r.o.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, `LISTEN "`+r.o.cfg.Table+`"`); err != nil {
			return err
		}
		r.Wake() // rows committed before LISTEN took effect
		if r.testListening != nil {
			r.testListening()
		}
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				// The connection may be mid-protocol after a cancelled wait:
				// never hand it back to the pool.
				_ = pc.Close(context.Background())
				return errors.Join(err, driver.ErrBadConn)
			}
			r.Wake()
		}
	})
}
