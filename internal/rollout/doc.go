// Package rollout holds the decision logic of deployments: the per-device state machine, plans
// and their waves, the gates between waves, and the constraints that say when and how many
// devices may update (maintenance windows, minimum intervals, concurrency limits, action types).
//
// It is pure: every function takes the time, the randomness and the current state as arguments
// and returns the next state or a decision, so the scheduler can keep all state in its store and
// resume after a crash. It is not for storage, transports or scheduling loops; those call it.
package rollout
