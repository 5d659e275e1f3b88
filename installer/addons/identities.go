package addons

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// The identities the cluster's own client certificates get through RBAC
// instead of system:masters (which nothing can revoke): the admin
// certificate's group is bound to cluster-admin (kubeconfig.
// AdminClusterRoleBinding), and the API server's kubelet client to
// system:kubelet-api-admin (KubeletAPIAdminBinding), what kubectl logs,
// exec and port-forward need of the kubelets.
const (
	// KubeletAPIAdminBindingName names the ClusterRoleBinding of the API
	// server's kubelet client user to KubeletAPIAdminRole.
	KubeletAPIAdminBindingName = "tricenter:apiserver-kubelet-client"
	// KubeletAPIAdminRole is Kubernetes' own ClusterRole for full access to
	// the kubelet API (nodes/proxy, stats, log, metrics).
	KubeletAPIAdminRole = "system:kubelet-api-admin"
)

// Defaults of IdentityOptions.
const (
	DefaultIdentityTimeout = 2 * time.Minute
	defaultIdentityPoll    = 500 * time.Millisecond
)

// KubeletAPIAdminBinding binds the API server's kubelet client user
// (pki.KubeletClientUser) to system:kubelet-api-admin, as a server-side
// apply configuration of exactly the fields tricenter owns.
func KubeletAPIAdminBinding() *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	return rbacv1ac.ClusterRoleBinding(KubeletAPIAdminBindingName).
		WithLabels(map[string]string{ManagedByLabel: FieldManager}).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(KubeletAPIAdminRole)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup("rbac.authorization.k8s.io").WithKind("User").WithName(pki.KubeletClientUser))
}

// IdentityOptions configure ApplyIdentities.
type IdentityOptions struct {
	// Client applies the bindings and asks the API whether they answer.
	// It must not depend on them: the break-glass (system:masters) client.
	Client kubernetes.Interface
	// SwitchAdmin moves the admin certificate to kubeconfig.AdminGroup
	// (pki.Store.SwitchAdmin: verified with the new certificate before it
	// is stored); changed says a new certificate was stored. It is called
	// only once both bindings answer. Nil: no switch.
	SwitchAdmin func(ctx context.Context) (changed bool, err error)
	// Timeout bounds the wait for the bindings to answer (default
	// DefaultIdentityTimeout); Poll is the interval between questions.
	Timeout, Poll time.Duration
	Logger        *slog.Logger
}

// ApplyIdentities applies the admin group's and the kubelet client's
// ClusterRoleBindings (server-side, with o.Client), waits until the API
// authorizes through them (SubjectAccessReviews: the admin group may do
// anything, the kubelet client may reach nodes/proxy), and only then calls
// o.SwitchAdmin. Bindings that do not answer within o.Timeout end it with
// an error, the admin certificate untouched. changed lists what it
// created, repaired or switched; a converged cluster reports none.
func ApplyIdentities(ctx context.Context, o IdentityOptions) (changed []string, err error) {
	if o.Client == nil {
		return nil, errors.New("identities: no break-glass client")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &applier{cs: o.Client, log: o.Logger}
	crbs := o.Client.RbacV1().ClusterRoleBindings()
	for _, want := range []*rbacv1ac.ClusterRoleBindingApplyConfiguration{kubeconfig.AdminClusterRoleBinding(), KubeletAPIAdminBinding()} {
		if _, err := apply(ctx, a, crbs, "ClusterRoleBinding", "", want); err != nil {
			return a.changed, err
		}
	}
	if err := WaitBindings(ctx, o.Client, o.Timeout, o.Poll); err != nil {
		return a.changed, err
	}
	if o.SwitchAdmin == nil {
		return a.changed, nil
	}
	switched, err := o.SwitchAdmin(ctx)
	if err != nil {
		return a.changed, fmt.Errorf("switching the admin certificate to group %s: %w", kubeconfig.AdminGroup, err)
	}
	if switched {
		a.record("switched the admin certificate to group %s", kubeconfig.AdminGroup)
	}
	return a.changed, nil
}

// bindingChecks are the SubjectAccessReviews that say the bindings
// answer.
func bindingChecks() []authorizationv1.SubjectAccessReviewSpec {
	return []authorizationv1.SubjectAccessReviewSpec{
		{User: pki.AdminUser, Groups: []string{kubeconfig.AdminGroup, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}},
		{User: pki.KubeletClientUser, Groups: []string{"system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "proxy"}},
	}
}

// WaitBindings waits until the API (through cs) authorizes the admin
// group to do anything on anything and the kubelet client user to get
// nodes/proxy: the RBAC authorizer reads bindings from an informer, so an
// applied binding answers a moment later.
func WaitBindings(ctx context.Context, cs kubernetes.Interface, timeout, poll time.Duration) error {
	for _, spec := range bindingChecks() {
		what := fmt.Sprintf("user %s (groups %v) may %s %s", spec.User, spec.Groups, spec.ResourceAttributes.Verb, resourceName(spec.ResourceAttributes))
		err := waitAllowed(ctx, timeout, poll, what, func(ctx context.Context) (bool, string, error) {
			sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx,
				&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
			if err != nil {
				return false, "", err
			}
			return sar.Status.Allowed, sar.Status.Reason, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// WaitSelfAdmin waits until cs's own credential may do anything on
// anything (a SelfSubjectAccessReview): a new admin certificate is stored
// only once the API says so.
func WaitSelfAdmin(ctx context.Context, cs kubernetes.Interface, timeout, poll time.Duration) error {
	ra := &authorizationv1.ResourceAttributes{Verb: "*", Group: "*", Resource: "*"}
	return waitAllowed(ctx, timeout, poll, "the new admin certificate may * *", func(ctx context.Context) (bool, string, error) {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: ra}},
			metav1.CreateOptions{})
		if err != nil {
			return false, "", err
		}
		return r.Status.Allowed, r.Status.Reason, nil
	})
}

func resourceName(ra *authorizationv1.ResourceAttributes) string {
	r := ra.Resource
	if ra.Subresource != "" {
		r += "/" + ra.Subresource
	}
	return r
}

// waitAllowed polls ask until it says allowed, ctx ends or timeout
// passes; the error names what was asked and the last answer.
func waitAllowed(ctx context.Context, timeout, poll time.Duration, what string, ask func(context.Context) (bool, string, error)) error {
	if timeout <= 0 {
		timeout = DefaultIdentityTimeout
	}
	if poll <= 0 {
		poll = defaultIdentityPoll
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, reason, err := ask(ctx)
		if err == nil && ok {
			return nil
		}
		last := "not allowed"
		if err != nil {
			last = err.Error()
		} else if reason != "" {
			last += ": " + reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API did not authorize %s within %v (last answer: %s): check the ClusterRoleBindings %s and %s",
				what, timeout, last, kubeconfig.AdminBindingName, KubeletAPIAdminBindingName)
		case <-time.After(poll):
		}
	}
}
