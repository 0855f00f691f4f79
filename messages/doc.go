// Package messages is the whole conversation of the consul-elect engine: the
// commands a user sends, the events the engine publishes, and the messages its
// actors exchange. It holds plain structs only, no behaviour.
//
// The actors (package actors) form this tree; the comments on each message say
// who sends it and who reacts:
//
//	election root        supervisor; the Props users spawn or embed
//	├── session          creates the one shared Consul session, recreates it when gone
//	├── renewal          renews it every TTL/2, owns the self-fence deadline
//	├── health watcher   only with HealthCheckID: watches that check
//	├── key watcher      one blocking query over <KeyPrefix>/, fans changes out
//	└── lock[resource]   one per resource: follower → acquiring → leader → …
//
// Messages an actor sends only to itself (results of its own HTTP calls and
// timers, tagged with a generation) are private to that actor.
package messages
