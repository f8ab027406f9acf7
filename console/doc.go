// Package console is arcmill's operator console: an http.Handler a service
// mounts on its own mux (or `arcmill console` serves standalone) that shows
// and fixes the event flow of Redis streams, their dead-letter streams and
// arcmill outboxes.
//
// # What it serves
//
//   - an overview: per stream its length, consumer groups (pending, lag,
//     consumers and their idle times) and dead letters; per outbox its
//     pending, in-flight and dead rows and the oldest pending row's age;
//   - dead letters of every source in one list, grouped by cause (event
//     type, reason and the error message with ids and numbers masked, as
//     NServiceBus's ServicePulse groups failures), filtered and paged;
//     one opens to its envelope and event;
//   - redrive of one dead letter, a group or everything, as a tracked,
//     rate-capped task whose progress survives a page reload; each letter
//     moves atomically (redisstream.RedriveEntry, Outbox.Redrive), so a
//     letter is never redriven twice; purge with confirmation;
//   - an audit list of every mutation: who, what, how many;
//   - a JSON API under /api/ for everything the pages show and do (the
//     pages call it), and Arc's outbox admin routes under
//     Config.AdminPrefix (Arc's default /admin/outbox): GET health,
//     GET dead-letter?limit=, POST dead-letter/{id}/replay.
//
// # Mounting
//
//	c, err := console.New(console.Config{Redis: rdb, Streams: []console.Stream{{Name: "arc:events"}},
//		Auth: console.Auth{Credentials: []console.Credential{{Name: "ops", Token: token, Role: console.Operator}}}})
//	mux.Handle("/console/", http.StripPrefix("/console", c))
//
// Set Config.BasePath to the prefix the console is mounted under, so that
// its links point back into it. Close the console when the service stops:
// it cancels running tasks and waits for them.
//
// # Security
//
// The console can delete and republish production events. With no
// authentication configured it answers loopback clients only, and Serve
// (and CheckListen) refuse a non-loopback address. Credentials give bearer
// tokens or basic-auth passwords a role: ReadOnly sees, Operator also
// mutates. Auth.Middleware runs the service's own authentication first; it
// names the caller with WithPrincipal. Every mutation needs the Operator
// role, passes net/http's cross-origin protection and, unless it comes with
// a bearer token (which a browser never sends on its own), carries the
// console's CSRF token (header X-CSRF-Token or form field csrf). Payloads
// and stacks are redacted unless Config.ExposePayloads is set, as in Arc.
package console
