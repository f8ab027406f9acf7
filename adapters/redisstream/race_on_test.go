//go:build race

package redisstream

// raceDetector is true in a -race build.
const raceDetector = true
