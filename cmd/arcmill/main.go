// Command arcmill is the operator's tool for Arc events on Redis and in
// arcmill's SQL outbox: tail a stream or Pub/Sub channels, publish a test
// event, inspect, redrive and purge dead letters, and check an outbox's
// backlog.
//
//	arcmill tail 'order.*'                     follow arc:events
//	arcmill publish order.created '{"id":1}'   publish one Arc event
//	arcmill dlq list                           dead letters on arc:events:dlq
//	arcmill dlq redrive --type order.created   put them back, oldest first
//	arcmill outbox status --dsn postgres://…   pending, in flight, dead
//	arcmill schema check old.json new.json     breaking schema changes, for CI
//	arcmill --version                          module version, commit, Go version
//
// Connection settings come from flags or the environment:
// ARCMILL_REDIS_ADDR (an address or a redis:// or rediss:// URL; default
// 127.0.0.1:6379), ARCMILL_REDIS_USERNAME, ARCMILL_REDIS_PASSWORD (there is
// no password flag), ARCMILL_OUTBOX_DSN,
// ARCMILL_OUTBOX_DIALECT and ARCMILL_OUTBOX_TABLE.
//
// Exit codes: 0 success, 1 failure (a server, a bad event), 2 bad usage
// (including a pattern Arc would take literally, or a dlq command pointed
// at a stream of events), 3 nothing matched (a stream or SQLite file that
// does not exist, dlq show of an unknown id), 130 interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitInterrupted = 130
)

// errUsage marks a command-line mistake (exit 2); errNotFound exit 3.
var (
	errUsage    = errors.New("usage")
	errNotFound = errors.New("not found")
)

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

const mainUsage = `arcmill: operate Arc events on Redis and in arcmill's SQL outbox.

Usage:
  arcmill <command> [arguments] [flags]

Commands:
  tail [pattern]                 follow a stream or Pub/Sub channels, one event per line
  publish <type> [payload-json]  publish one Arc event (payload from stdin when not given)
  dlq list|show|redrive|purge    dead letters of a Redis stream or of the outbox
  dlq parked|release|discard     keys parked behind a dead letter (sequenced handlers)
  console                        the operator console in a browser (dead letters, streams, outbox)
  outbox status|purge            an outbox's backlog, and purging delivered rows
  doctor                         what the Redis server promises about acknowledged events
  schema check OLD NEW           the breaking changes between two event catalogs, for CI
  completion bash|zsh|fish       a shell completion script

Run "arcmill <command> --help" for a command's flags and examples;
"arcmill --version" prints the version, commit and Go version.

Environment:
  ARCMILL_REDIS_ADDR       Redis address or URL (default 127.0.0.1:6379; see --redis in a command's help)
  ARCMILL_REDIS_USERNAME   Redis ACL user
  ARCMILL_REDIS_PASSWORD   Redis password (there is no password flag; the URL may hold one)
  ARCMILL_REDIS_SENTINEL_PASSWORD  the Sentinels' password, with --sentinel-master
  ARCMILL_OUTBOX_DSN       outbox database: postgres://…, user:pass@tcp(host)/db (MySQL), file:path.db (SQLite)
  ARCMILL_OUTBOX_DIALECT   postgres, mysql or sqlite (default: guessed from the DSN)
  ARCMILL_OUTBOX_TABLE     outbox table (default arcmill_outbox)

Exit codes: 0 ok, 1 failure, 2 bad usage, 3 nothing matched (no such stream,
SQLite file or dead letter), 130 interrupted.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redis.SetLogger(quietRedisLog{})
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// env carries the process's streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{stdin, stdout, stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, mainUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		printVersion(stdout)
		return exitOK
	}
	commands := map[string]func(context.Context, env, []string) error{
		"tail": tailCmd, "publish": publishCmd, "dlq": dlqCmd, "outbox": outboxCmd, "completion": completionCmd,
		"doctor": doctorCmd, "console": consoleCmd, "schema": schemaCmd,
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "arcmill: unknown command %q\n\n%s", args[0], mainUsage)
		return exitUsage
	}
	err := cmd(ctx, e, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "arcmill: interrupted")
		return exitInterrupted
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "arcmill %s: %v\n", args[0], strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintf(stderr, "Run \"arcmill %s --help\" for usage.\n", args[0])
		return exitUsage
	case errors.Is(err, errNotFound):
		fmt.Fprintf(stderr, "arcmill %s: %v\n", args[0], strings.TrimPrefix(err.Error(), "not found: "))
		return exitNotFound
	default:
		fmt.Fprintf(stderr, "arcmill %s: %v%s\n", args[0], err, redisHint(err))
		return exitFailure
	}
}

// newFlags returns a flag set whose --help prints usage (with examples)
// to stdout; any other mistake is a usage error on stderr, without the
// help text (which would pollute a pipe).
func newFlags(e env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := func() {
		fmt.Fprint(e.stdout, usage, "\nFlags:\n")
		printFlags(e.stdout, fs)
	}
	helpFuncs[fs] = help
	return fs
}

// helpFuncs holds each flag set's help printer (one command per process).
var helpFuncs = map[*flag.FlagSet]func(){}

// parse parses flags and positional arguments in any order; after "--"
// everything is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				if h := helpFuncs[fs]; h != nil {
					h()
				}
				return nil, err
			}
			return nil, usageErr("%s", flagError(fs, err))
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// printFlags lists the flags as the docs write them, with two dashes
// (Go's flag package accepts both).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			line += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}

// flagError rewrites the flag package's errors in the docs' spelling:
// "invalid value "abc" for flag -limit: parse error" becomes
// "--limit: "abc" is not valid (a number)".
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Sprintf("unknown flag --%s", strings.TrimPrefix(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Sprintf("--%s needs a value", strings.TrimPrefix(name, "-"))
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		if value, flagAndWhy, ok := strings.Cut(rest, " for flag -"); ok {
			name, why, _ := strings.Cut(flagAndWhy, ": ")
			switch why {
			case "parse error":
				why = "not valid"
				if f := fs.Lookup(name); f != nil {
					if g, ok := f.Value.(flag.Getter); ok {
						switch g.Get().(type) {
						case int, int64, uint, uint64:
							why = "not a whole number"
						case float64:
							why = "not a number"
						case time.Duration:
							why = "not a duration (write 500ms, 30s, 5m, 72h)"
						case bool:
							why = "not true or false"
						}
					}
				}
			case "value out of range":
				why = "out of range"
			}
			return fmt.Sprintf("--%s %s: %s", name, value, why)
		}
	}
	return msg
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// isTerminal reports whether w is a terminal (for colours of progress and
// the default output format).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
