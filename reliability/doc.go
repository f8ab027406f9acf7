// Package reliability proves, rather than promises, that arcmill loses no
// event. Its tests run the whole pipeline (business transaction → outbox →
// relay processes → Redis Streams → consumer processes with the wildcard
// router, retry and dead letters → Arc handlers) while processes are killed
// with SIGKILL and Redis is restarted, and count every event at the end.
// RELIABILITY.md, at the module's root, describes each scenario, how to run
// it, and the last measured tables.
//
// The package holds no API: it is the test suite's home.
package reliability
