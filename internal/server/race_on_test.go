//go:build race

package server_test

// raceDetector says the tests run under the race detector, which makes the 1,000-device
// simulation too slow; .ci/test runs that test once more without it.
const raceDetector = true
