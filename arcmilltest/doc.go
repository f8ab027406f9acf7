// Package arcmilltest helps applications test code that publishes and
// consumes Arc events with arcmill, in the manner of River's rivertest.
//
// # Events
//
// Event builds a valid arc.Event for a test, failing the test on a bad
// type or payload. Options fix its id and timestamp (WithID,
// WithTimestamp), set any other meta (WithMeta), or number ids
// deterministically per test (Deterministic), so that golden files and
// assertions can name them.
//
// # Asserting on what was published
//
// RequirePublished reads a subscription's channel until an event of the
// wanted type arrives, acknowledging what it reads, and returns it; it
// fails the test after a timeout (DefaultTimeout, or WithTimeout).
// RecordingPublisher is a message.Publisher that keeps everything
// published through it; its RequirePublished waits for an event of a type
// to be recorded, and Events and Messages return what was recorded.
//
// # Asserting on the outbox
//
// RequireOutboxed finds the oldest pending row of an event type in an
// outbox table, inside the test's transaction or on the database, and
// returns its event: the assertion that a handler wrote its event in the
// same transaction as its state. It reads the table layout the outbox
// package documents (Outbox.Migrate creates it); the row stays pending.
//
// The helpers take any value with the methods of testing.TB they need
// (Helper, Fatalf), so *testing.T and *testing.B both work.
package arcmilltest
