package addons

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// fakeAuthorizer answers SubjectAccessReviews on client-go's fake
// clientset: allowed once `after` reviews have been refused, as an RBAC
// authorizer whose informer has not seen the binding yet would. It
// records, in order, the binding writes and reviews it sees.
type fakeAuthorizer struct {
	mu     sync.Mutex
	after  int // refusals before the first allowed answer; <0: never allowed
	asked  int
	events []string
}

func (f *fakeAuthorizer) event(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func (f *fakeAuthorizer) install(cs *fake.Clientset) {
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		f.mu.Lock()
		f.asked++
		sar.Status.Allowed = f.after >= 0 && f.asked > f.after
		f.events = append(f.events, "review "+sar.Spec.User)
		f.mu.Unlock()
		return true, sar, nil
	})
	cs.PrependReactor("patch", "clusterrolebindings", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.event("apply " + a.(k8stesting.PatchAction).GetName())
		return false, nil, nil
	})
}

func (f *fakeAuthorizer) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// TestIdentitiesNoSwitchBeforeBindingsAnswer: with bindings the (fake)
// authorizer never honours, the bindings are applied, the wait times out
// naming them, and the admin certificate is never switched.
func TestIdentitiesNoSwitchBeforeBindingsAnswer(t *testing.T) {
	cs := fake.NewClientset()
	fa := &fakeAuthorizer{after: -1}
	fa.install(cs)
	switched := false
	_, err := ApplyIdentities(context.Background(), IdentityOptions{Client: cs, Timeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond,
		SwitchAdmin: func(context.Context) (bool, error) { switched = true; return true, nil }})
	if err == nil || !strings.Contains(err.Error(), kubeconfig.AdminBindingName) {
		t.Fatalf("err = %v, want a timeout naming %s", err, kubeconfig.AdminBindingName)
	}
	if switched {
		t.Fatal("the admin certificate was switched before the binding answered")
	}
	for _, n := range []string{kubeconfig.AdminBindingName, KubeletAPIAdminBindingName} {
		if _, err := cs.RbacV1().ClusterRoleBindings().Get(context.Background(), n, metav1.GetOptions{}); err != nil {
			t.Errorf("binding %s not applied: %v", n, err)
		}
	}
	if fa.asked < 2 {
		t.Errorf("the authorizer was asked %d times in 300ms, want polling", fa.asked)
	}
}

// TestIdentitiesOrder: bindings first, then reviews until both answer
// (the fake refuses the first three), then the switch; a converged re-run
// changes nothing.
func TestIdentitiesOrder(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	fa := &fakeAuthorizer{after: 3}
	fa.install(cs)
	bound := false
	sw := func(context.Context) (bool, error) {
		fa.event("switch")
		if bound {
			return false, nil
		}
		bound = true
		return true, nil
	}
	changed, err := ApplyIdentities(ctx, IdentityOptions{Client: cs, Poll: time.Millisecond, SwitchAdmin: sw})
	if err != nil {
		t.Fatal(err)
	}
	ev := fa.seen()
	sws := slices.Index(ev, "switch")
	lastApply := slices.Index(ev, "apply "+KubeletAPIAdminBindingName)
	firstReview := slices.IndexFunc(ev, func(e string) bool { return strings.HasPrefix(e, "review") })
	if sws != len(ev)-1 || lastApply < 0 || firstReview < lastApply {
		t.Fatalf("events %q: want the applies, then the reviews, then the switch last", ev)
	}
	if !slices.Contains(ev[:sws], "review "+pki.KubeletClientUser) || !slices.Contains(ev[:sws], "review "+pki.AdminUser) {
		t.Fatalf("events %q: the switch came before both bindings answered", ev)
	}
	want := []string{"created ClusterRoleBinding " + kubeconfig.AdminBindingName, "created ClusterRoleBinding " + KubeletAPIAdminBindingName,
		"switched the admin certificate to group " + kubeconfig.AdminGroup}
	if !slices.Equal(changed, want) {
		t.Fatalf("changes %q, want %q", changed, want)
	}
	again, err := ApplyIdentities(ctx, IdentityOptions{Client: cs, Poll: time.Millisecond, SwitchAdmin: sw})
	if err != nil || len(again) != 0 {
		t.Fatalf("converged re-run: changes %q, err %v", again, err)
	}
}

// TestKubeletAPIAdminBinding: the kubelet client user bound to
// system:kubelet-api-admin, with the add-ons' label.
func TestKubeletAPIAdminBinding(t *testing.T) {
	cs := fake.NewClientset()
	got, err := cs.RbacV1().ClusterRoleBindings().Apply(context.Background(), KubeletAPIAdminBinding(), applyOptions)
	if err != nil {
		t.Fatal(err)
	}
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"}
	wantSubj := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "kube-apiserver-kubelet-client"}
	if got.RoleRef != wantRef || len(got.Subjects) != 1 || got.Subjects[0] != wantSubj || got.Labels[ManagedByLabel] != FieldManager {
		t.Fatalf("binding %+v %+v %v", got.RoleRef, got.Subjects, got.Labels)
	}
}
