package chaos

import "slices"

// Faults of Consul itself rather than of a candidate.
const (
	// SnapshotRestore: an operator restores a Consul snapshot taken while
	// the leader led, after it has handed over (a switchover, or its
	// session destroyed): the key and the sessions go back to the
	// snapshot's, and so do the indexes that blocking queries report. The
	// leader at the restore loses the key; the restored holder's session
	// leads again if it is alive, else it expires.
	SnapshotRestore FaultKind = "snapshot-restore"
	// RaftLeaderKill (3-server cluster): SIGKILL of the Consul server that
	// is raft leader; once the others have elected a new one, it is
	// started again and rejoins.
	RaftLeaderKill FaultKind = "raft-leader-kill"
	// ServerCut (3-server cluster): one Consul server (the raft leader or a
	// follower, as often as not) stops answering anyone for longer than the
	// TTL, then comes back: SIGSTOP, then SIGCONT, as a server cut off from
	// every other agent.
	ServerCut FaultKind = "server-cut"
)

// ClusterFaultKinds are the kinds of the 3-server cluster run
// (TestChaosCluster), in the order its reports show them.
var ClusterFaultKinds = []FaultKind{KillLeader, DestroySession, RaftLeaderKill, ServerCut, SnapshotRestore}

// reportKinds is the order of the reports' rows: every kind of the
// single-agent run, then those only the cluster run injects.
func reportKinds() []FaultKind {
	kinds := slices.Clone(FaultKinds)
	for _, k := range ClusterFaultKinds {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return kinds
}
