package main

import (
	"context"
	"fmt"
	"net"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/arcmill/arcmill/adapters/redisstream"
	"github.com/arcmill/arcmill/console"
	"github.com/arcmill/arcmill/middleware"
)

const consoleUsage = `Usage: arcmill console [flags]

Serves the operator console (package console) standalone: an overview of
the streams, their consumer groups and dead letters, and of the outbox;
dead letters grouped by cause, redriven (rate-capped, tracked) or purged;
keys sequenced handlers parked behind a dead letter (/parked), released or
discarded; an audit list; Arc's outbox admin routes under /admin/outbox.

It refuses a non-loopback --listen without a token: it can delete and
republish production events. A token gives the operator role (bearer
token, or basic auth as user "operator"); --read-token the read-only one.

Examples:
  arcmill console                                  # http://127.0.0.1:8080, arc:events
  arcmill console --stream orders --stream billing --dsn postgres://127.0.0.1/shop
  ARCMILL_CONSOLE_TOKEN=$(openssl rand -hex 24) arcmill console --listen :8080
`

func consoleCmd(ctx context.Context, e env, args []string) error {
	var (
		r                redisFlags
		db               dbFlags
		streams          stringList
		listen           string
		token, readToken string
		rate             float64
		expose           bool
		seqPrefix        string
	)
	fs := newFlags(e, "console", consoleUsage)
	r.register(fs)
	db.register(fs)
	fs.Var(&streams, "stream", "a `stream` to show with its <stream>:dlq (repeatable; default arc:events)")
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "`address` to serve on")
	fs.StringVar(&token, "token", getenv("ARCMILL_CONSOLE_TOKEN", ""), "operator `token` (ARCMILL_CONSOLE_TOKEN)")
	fs.StringVar(&readToken, "read-token", getenv("ARCMILL_CONSOLE_READ_TOKEN", ""), "read-only `token` (ARCMILL_CONSOLE_READ_TOKEN)")
	fs.Float64Var(&rate, "rate", console.DefaultRedriveRate, "redrive at most this many dead letters a second")
	fs.BoolVar(&expose, "expose-payloads", false, "show event payloads and error stacks (redacted otherwise, as in Arc)")
	fs.StringVar(&seqPrefix, "seq-prefix", middleware.DefaultSequencePrefix, "the sequenced handlers' key `prefix`, for the Parked page")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("console takes no arguments, got %q", pos)
	}
	var auth console.Auth
	if token != "" {
		auth.Credentials = append(auth.Credentials, console.Credential{Name: "operator", Token: token, Password: token, Role: console.Operator})
	}
	if readToken != "" {
		auth.Credentials = append(auth.Credentials, console.Credential{Name: "reader", Token: readToken, Password: readToken, Role: console.ReadOnly})
	}
	// Refuse before connecting to anything.
	if err := console.CheckListen(listen, auth); err != nil {
		return usageErr("%v", err)
	}
	if len(streams) == 0 {
		streams = stringList{redisstream.ArcStream}
	}
	client, err := r.connect(ctx, e.stderr)
	if err != nil {
		return err
	}
	defer client.Close()
	cfg := console.Config{Redis: client, Auth: auth, RedriveRate: rate, ExposePayloads: expose, SequencePrefix: seqPrefix,
		Logger: watermill.NewStdLoggerWithOut(e.stderr, false, false)}
	for _, s := range streams {
		cfg.Streams = append(cfg.Streams, console.Stream{Name: s})
	}
	if db.dsn != "" {
		ob, closeDB, err := db.open(ctx)
		if err != nil {
			return err
		}
		defer closeDB()
		cfg.Outboxes = []console.Outbox{{Outbox: ob}}
	}
	c, err := console.New(cfg)
	if err != nil {
		return usageErr("%v", err)
	}
	return console.Serve(ctx, listen, c, func(a net.Addr) {
		fmt.Fprintf(e.stderr, "arcmill console on http://%s/ (Ctrl-C to stop)\n", a)
	})
}
