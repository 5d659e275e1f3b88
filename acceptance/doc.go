// Package acceptance holds the end-to-end tests that run tricenter against
// a lab on this machine: systemd-nspawn machines (acceptance/nspawn) reached
// over SSH like real servers, with the centers' latency emulated. The etcd
// tests drive the real bin/tricenter CLI and the installer library against
// real etcd members.
package acceptance
