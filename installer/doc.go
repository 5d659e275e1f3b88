// Package installer is tricenter's engine: the one place where an
// inventory becomes a running, verified cluster. The CLI (cmd/tricenter)
// and the Terraform provider (provider/) build an Engine and call it; they
// hold no orchestration of their own.
//
//	e, err := installer.New(installer.Config{Cluster: c, Store: store, Logger: log, Progress: rep})
//	plan, err := e.Plan(ctx, installer.Options{})   // dry run of every phase: what changes on which host
//	res, err := e.Apply(ctx, installer.Options{})   // phases in order, then the gates
//	plan, res, err = e.PlanApply(ctx, installer.Options{}, confirm) // one locked run: plan, ask, apply what the plan found pending
//	st, err := e.Status(ctx)                        // observed reality
//	res, err = e.Reset(ctx, installer.Options{})    // tear down in a quorum-safe order
//
// Components run in a fixed order (etcd, bgp, control-plane, nodes,
// addons), each a list of phases on one phase.Manager (one SSH pool, one
// mutation gate: a dry run and the real run are the same code). State that
// must survive between runs — the PKI and the recorded allocations — sits
// behind Store: the CLI's state directory is one implementation, the
// provider keeps the same files in Terraform state.
package installer
