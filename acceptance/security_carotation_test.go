package acceptance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// checkCARotation rotates the Kubernetes CA on the running lab (tricenter certs rotate-ca) while the API is probed through
// the VIP from the core router every 100 ms and etcd takes writes: no probe
// may fail and no acknowledged write may be lost. The trust phase is
// probed with the admin kubeconfig's CA from before it (the old CA only,
// which the servers still present then), the phases after it with the
// bundle the state hands out from then on. Afterwards every server's CA
// files hold the new CA only, the admin kubeconfig from the state works,
// kube-root-ca.crt holds the new CA only and CoreDNS (which reaches the
// API with it) is Ready, also in a new pod, and a re-apply changes nothing.
func checkCARotation(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine) {
	t.Helper()
	store := e.PKIStore()
	before, err := store.Fingerprints()
	if err != nil {
		t.Fatal(err)
	}
	o := installer.RotateCAOptions{PodTrustWait: 75 * time.Second}
	// The Kubernetes CA is the one every component, node and pod trusts;
	// the etcd CAs' rotations (the peer CA split included) run against
	// real etcd members in installer/etcd (TestPeerCASplitRotationAgainstEtcd).
	for _, authority := range []string{pki.KubernetesCA} {
		start := time.Now()
		trust := startUpgradeProbes(t, ctx, k, e, "")
		to := o
		to.Until = pki.RotationTrust
		if _, err := e.RotateCA(ctx, authority, to); err != nil {
			trust.stop()
			t.Fatalf("rotating the %s CA, trust phase: %v", authority, err)
		}
		lostTrust, err := trust.finish(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		rest := startUpgradeProbes(t, ctx, k, e, "")
		res, err := e.RotateCA(ctx, authority, o)
		if err != nil {
			rest.stop()
			t.Fatalf("rotating the %s CA: %v", authority, err)
		}
		lostRest, err := rest.finish(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s CA rotated (%.12s → %.12s) in %v:\n  trust:   %s\n           %s\n  reissue, finish: %s\n           %s",
			authority, before[authority], res.Next, time.Since(start).Round(time.Second),
			trust.API.String(), trust.Etcd.String(), rest.API.String(), rest.Etcd.String())
		for _, p := range []*upgradeProbes{trust, rest} {
			if w := p.windows(); w != "" {
				t.Logf("the probes' failures:\n%s", w)
			}
		}
		if !res.Complete {
			t.Errorf("%s CA rotation not complete: %+v", authority, res.Steps)
		}
		if f := trust.API.Failed + rest.API.Failed; f > 0 || lostTrust+lostRest > 0 {
			t.Errorf("%s CA rotation: the API failed %d probes through the VIP and %d acknowledged etcd writes were lost",
				authority, f, lostTrust+lostRest)
		}
	}
	after, err := store.Fingerprints()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{pki.KubernetesCA} {
		if after[a] == "" || after[a] == before[a] {
			t.Errorf("the state's %s CA is %.12s, before %.12s: not rotated", a, after[a], before[a])
		}
	}
	for _, a := range []string{pki.EtcdCA, pki.EtcdPeerCA, pki.FrontProxyCA, pki.ServiceAccountAuthority} {
		if after[a] != before[a] {
			t.Errorf("the %s authority changed (%.12s → %.12s) though it was not rotated", a, before[a], after[a])
		}
	}
	checkServersHoldOnlyStateCAs(t, ctx, e, after)

	// The admin kubeconfig from the state.
	kc, err := e.AdminKubeconfig("")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := certFPs(rc.TLSClientConfig.CAData); err != nil || !slices.Equal(got, []string{after[pki.KubernetesCA]}) {
		t.Errorf("the admin kubeconfig trusts %v (%v), want the new Kubernetes CA only", got, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(nodes.Items) == 0 {
		t.Errorf("the admin kubeconfig from the state after the rotation: %v", err)
	}
	// Pods: kube-root-ca.crt holds the new CA only, and CoreDNS reaches
	// the API with it, in its running pods and in a new one.
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, installer.RootCAConfigMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got, err := certFPs([]byte(cm.Data["ca.crt"])); err != nil || !slices.Equal(got, []string{after[pki.KubernetesCA]}) {
			return fmt.Errorf("%s holds %v (%w)", installer.RootCAConfigMap, got, err)
		}
		return nil
	}); err != nil {
		t.Errorf("kube-root-ca.crt after the rotation: %v", err)
	}
	coreDNSReady := func() error {
		d, err := cs.AppsV1().Deployments(addons.Namespace).Get(ctx, addons.CoreDNSName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ReadyReplicas < want || d.Status.UpdatedReplicas < want || d.Status.Replicas != want {
			return fmt.Errorf("CoreDNS: %d of %d replicas Ready (%d in all)", d.Status.ReadyReplicas, want, d.Status.Replicas)
		}
		return nil
	}
	if err := pollUntil(ctx, 2*time.Minute, coreDNSReady); err != nil {
		t.Errorf("after the rotation: %v", err)
	}
	d, err := cs.AppsV1().Deployments(addons.Namespace).Get(ctx, addons.CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	pods, err := cs.CoreV1().Pods(addons.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("CoreDNS pods (%s): %v", sel, err)
	}
	old := pods.Items[0].Name
	if err := cs.CoreV1().Pods(addons.Namespace).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		ps, err := cs.CoreV1().Pods(addons.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		for _, p := range ps.Items {
			if p.Name == old {
				return fmt.Errorf("%s still there", old)
			}
		}
		return coreDNSReady()
	}); err != nil {
		t.Errorf("a new CoreDNS pod after the rotation: %v", err)
	}

	// A re-apply changes nothing.
	res, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("re-apply after the CA rotations: %v\ngates failed: %v", err, failedGates(res))
	}
	if !res.Converged() {
		t.Errorf("re-apply after the CA rotations changed %v", res.Changes)
	}
}

// checkServersHoldOnlyStateCAs reads every CA file (installer.HostCAFiles)
// on every server and checks each holds the state's CA of its authority
// and nothing else.
func checkServersHoldOnlyStateCAs(t *testing.T, ctx context.Context, e *installer.Engine, state map[string]string) {
	t.Helper()
	m := e.Manager(true)
	defer m.Close()
	var names []string
	for _, h := range e.Cluster().Hosts() {
		names = append(names, h.Name)
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, h := range hosts {
		for _, f := range installer.HostCAFiles {
			if f.Authority == pki.ServiceAccountAuthority {
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := h.Query(qctx, "if [ -f "+f.Path+" ]; then cat "+f.Path+"; fi")
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			if strings.TrimSpace(out) == "" {
				continue
			}
			files++
			got, err := certFPs([]byte(out))
			if err != nil || !slices.Equal(got, []string{state[f.Authority]}) {
				t.Errorf("%s:%s holds %v (%v), want the state's %s CA %.12s only", h.Name, f.Path, got, err, f.Authority, state[f.Authority])
			}
		}
	}
	if files == 0 {
		t.Error("no CA file found on any server")
	}
}

// certFPs are the fingerprints of every certificate of a PEM bundle.
func certFPs(b []byte) ([]string, error) {
	cs, err := pki.ParseCerts(b)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range cs {
		out = append(out, pki.Fingerprint(c))
	}
	return out, nil
}
