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
//     per circuit breaker (Config.Breakers) its state; per wildcard router
//     (Config.Routers) its handled, failed, unrouted and malformed counts;
//   - dead letters of every source in one list, grouped by cause (event
//     type, reason and the error message with ids and numbers masked, as
//     NServiceBus's ServicePulse groups failures), filtered and paged;
//     one opens to its envelope and event;
//   - redrive of one dead letter, a group or everything, as a tracked,
//     rate-capped task whose progress survives a page reload; each letter
//     moves atomically (redisstream.RedriveEntry, Outbox.Redrive), so a
//     letter is never redriven twice; purge with confirmation;
//   - the keys sequenced handlers parked behind a dead letter
//     (middleware.Sequencer), a page at a time (DefaultParkedPageSize) with
//     their total, each page reading its own keys only; release or
//     discard one;
//   - an audit list of every mutation: who, what, how many;
//   - an event explorer: the causation tree of an event id or a
//     correlation id, from the newest DefaultExploreLimit entries of each
//     stream, the newest DefaultExploreLimit rows of each outbox given a
//     DB (Outbox.DB; without one, only its dead letters) and every dead
//     letter; each node says where it was found (stream and entry id,
//     outbox and row status) and its outcome where known (dead-lettered,
//     pending in the outbox, delivered by the relay);
//   - a live tail of a stream over Server-Sent Events, filtered by an Arc
//     pattern;
//   - charts of lag, pending, dead letters and appends per second, sampled
//     by the console (Config.SampleInterval) and drawn server-side as SVG;
//   - a JSON API for everything the pages show and do (the pages call it),
//     and Arc's outbox admin routes under Config.AdminPrefix (Arc's default
//     /admin/outbox).
//
// # JSON API
//
// Paths are relative to where the console is mounted. GETs need the
// ReadOnly role, POSTs the Operator role (and see Security).
//
//	GET  /api/overview                   Overview: streams, groups, consumers, outboxes
//	GET  /api/groups?source=&type=&q=    GroupsResponse: failure groups, largest first
//	GET  /api/letters?cause=&…&offset=&limit=  LettersResponse: a page of dead letters
//	GET  /api/letters/{source}/{id}      LetterDetail: one dead letter, redacted
//	POST /api/redrive                    Selection → Task (202): a rate-capped redrive
//	POST /api/purge                      PurgeRequest (confirm "purge") → PurgeResponse
//	GET  /api/parked?group=&handler=&offset=&limit=  ParkedResponse: a page of parked keys, and their total
//	POST /api/parked/release, /api/parked/discard  ParkedRequest → ParkedResult
//	GET  /api/tasks, /api/tasks/{id}     TasksResponse, Task: progress
//	POST /api/tasks/{id}/cancel          Task: stops between two letters
//	GET  /api/audit                      AuditResponse: mutations, newest first
//	GET  /api/explore?q=                 Exploration: a causation tree
//	GET  /api/tail?stream=&pattern=      text/event-stream of TailEvent
//	GET  /api/samples                    SamplesResponse: what the charts draw
//	GET  /api/whoami                     Whoami: the caller, role and CSRF token
//	GET  {AdminPrefix}/health            ArcHealth: {pending, deadLetter, relayLagMs, healthy}
//	GET  {AdminPrefix}/dead-letter?limit=  []ArcDeadLetter (Arc's DeadLetteredEvent)
//	POST {AdminPrefix}/dead-letter/{id}/replay  ArcReplay: by event id
//
// A source is "stream:<dead-letter stream>" or "outbox:<name>"; a
// Selection names letters, or a filter (source, type, cause, q), or sets
// all. Errors answer {"error": "..."} with 400, 401, 403, 404 or 500, and
// Arc's replay of a dead letter that cannot go back with 409.
//
// A stream dead letter goes back to the stream its original_stream field
// names, but only when that is one of Config.Streams: one naming any other
// key is listed with redrivable false and noRedrive saying why, a redrive
// skips it and Arc's replay refuses it. An outbox dead letter is picked by
// its row (its id, the sequence number), never by its event id, which the
// rows of one event written to several topics share.
//
// # Mounting
//
//	c, err := console.New(console.Config{Redis: rdb, Streams: []console.Stream{{Name: "arc:events"}},
//		Auth: console.Auth{Credentials: []console.Credential{{Name: "ops", Token: token, Role: console.Operator}}}})
//	mux.Handle("/console/", http.StripPrefix("/console", c))
//
// Set Config.BasePath to the prefix the console is mounted under, so that
// its links point back into it. Arc's admin routes move with the console:
// mounted under /console, they are at /console/admin/outbox (the prefix,
// then Config.AdminPrefix), so point Arc's clients there. Close the console when the service stops:
// it cancels running tasks and waits for them.
//
// # Security
//
// The console can delete and republish production events. With no
// authentication configured it answers loopback clients only, addressed
// by a Host of localhost, a name under .localhost or a loopback IP (so
// that a hostile page whose name rebinds to 127.0.0.1 cannot use the
// operator's browser against it), and no request that names a proxied
// client (Forwarded, X-Forwarded-For, X-Real-Ip, X-Forwarded-Host); Serve
// (and CheckListen) refuse a non-loopback address. A reverse proxy on the
// same machine that sends none of those headers makes every client look
// local: behind a proxy, configure Auth. Credentials give bearer
// tokens or basic-auth passwords a role: ReadOnly sees, Operator also
// mutates. Auth.Middleware runs the service's own authentication for every
// request the credentials do not authenticate, an unknown Authorization
// header included; it names the caller with WithPrincipal. Every mutation needs the Operator
// role, passes net/http's cross-origin protection and, unless it comes with
// a bearer token (which a browser never sends on its own), carries the
// console's CSRF token (header X-CSRF-Token or form field csrf; GET
// /api/whoami returns it). Payloads and stacks are redacted unless
// Config.ExposePayloads is set, as in Arc, in pages, the API, the live tail
// and the log; the log records mutations (who, what, how many), never a
// payload or a credential. Arc's admin routes need the Operator role, as
// Arc restricts them to platform operators.
package console
