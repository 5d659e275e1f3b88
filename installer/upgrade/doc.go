// Package upgrade is the logic of `tricenter upgrade` (Engine.Upgrade):
// from the versions observed on the cluster and the target versions, it
// validates the path (Validate), orders the work into a plan of steps
// (BuildPlan) and drives the plan so that a run killed at any point
// resumes where it stopped (Execute, with a Journal saved after every
// change). It does no I/O of its own: the engine observes the cluster and
// runs each step (Executor), the state directory keeps the record.
//
// # Version rules
//
// Kubernetes (https://kubernetes.io/releases/version-skew-policy/):
//
//   - one minor at a time: v1.36.x → v1.37.y is an upgrade; v1.35.x →
//     v1.37.y or v1.36.x → v1.38.y skips a minor and is refused, naming the
//     minors to go through first;
//   - patch upgrades within a minor are upgrades like any other; patch
//     downgrades within a minor (backing a bad patch release out) run only
//     when asked (Options.AllowPatchDowngrade, --allow-patch-downgrade):
//     upstream does not promise them, but a patch release changes no API
//     and no storage format;
//   - minor downgrades are refused: Kubernetes does not support them (the
//     way back is an etcd snapshot taken before the upgrade);
//   - a kubelet is never newer than the oldest kube-apiserver: the plan
//     upgrades every control-plane server before any kubelet;
//   - a cluster found half upgraded (a run that stopped, with or without
//     its record) is valid when every component is between where it started
//     and the target: each within one minor below the target.
//
// etcd (https://etcd.io/docs/v3.6/upgrades/upgrade_3_6/):
//
//   - one minor at a time, never a skip, never a minor downgrade (etcd's
//     own downgrade procedure is not something an upgrade runs);
//   - v3.5 → v3.6 needs every member on a recent v3.5 first. etcd requires
//     v3.5.20 or later (https://etcd.io/blog/2025/upgrade_from_3.5_to_3.6_issue/:
//     members of v3.5.1–v3.5.19 may come back as learners) and, since the
//     zombie members fix, v3.5.26 or later
//     (https://etcd.io/blog/2025/zombie_members_upgrade/). tricenter takes
//     every v3.5 member to v3.5.35, the newest v3.5 it ships
//     (EtcdBridge), before any member moves to v3.6: the plan holds both
//     rounds.
//
// # Order
//
// etcd members one at a time (followers first, the leader last, after its
// leadership moved to an upgraded member; the cluster healthy between
// members), then the control-plane servers one at a time (the API VIP held
// while kube-apiserver, kube-controller-manager and kube-scheduler are
// replaced and restarted, until /readyz answers again), then the nodes: the
// control-plane and etcd servers' own kubelets one at a time, then the
// workers in batches of at most Options.MaxUnavailablePerRack servers per
// rack, one center at a time. Centers go remote-dr first, then local-dr,
// then production: the new version runs where least is at stake first.
package upgrade
