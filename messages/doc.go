// Package messages is what users of the consul-elect engine say to it and
// hear from it: the commands sent to the election root (Campaign, Resign,
// Withdraw, Proclaim, GetState, Stop) and the events it publishes (Event:
// LeadershipAcquired, LeadershipLost, LeaderChanged, ElectionError). It
// holds plain structs only, no behaviour.
//
// The engine's actors (package actors) form this tree:
//
//	election root        supervisor; the Props users spawn or embed
//	├── session          creates the one shared Consul session, recreates it when gone
//	├── renewal          renews within the fence window, owns the self-fence deadline
//	├── health watcher   with HealthCheckID or FastFailover: watches / feeds the check
//	├── key watcher      one blocking query over <KeyPrefix>/, fans changes out
//	└── lock[resource]   one per resource: follower → acquiring → leading → draining → releasing
//	    └── worker       Campaign.Worker, alive only while this candidate leads
//
// What the actors tell one another is the engine's own business and is not
// part of this package.
package messages
