package addons

import (
	"strconv"
	"sync"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
)

// newFakeAPI is a fake clientset for the logic of Apply: client-go's fake
// with its field-managed object tracker (server-side apply with real field
// ownership and conflicts), plus the one API-server behaviour Apply relies
// on that the fake lacks: a write that changes an object gives it a new
// resourceVersion, and a write that changes nothing keeps the old one.
// (TestAgainstRealAPIServer checks the same against a kube-apiserver.)
func newFakeAPI(t *testing.T, objs ...runtime.Object) *fake.Clientset {
	t.Helper()
	tr := &rvTracker{ObjectTracker: k8stesting.NewFieldManagedObjectTracker(scheme.Scheme,
		scheme.Codecs.UniversalDecoder(), applyconfigurations.NewTypeConverter(scheme.Scheme))}
	for _, o := range objs {
		if err := tr.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	cs := fake.NewClientset()
	cs.PrependReactor("*", "*", k8stesting.ObjectReaction(tr))
	return cs
}

// rvTracker keeps resourceVersions as the API server does.
type rvTracker struct {
	k8stesting.ObjectTracker
	mu sync.Mutex
	rv int
}

func (t *rvTracker) next() string {
	t.rv++
	return strconv.Itoa(t.rv)
}

func (t *rvTracker) Add(obj runtime.Object) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	m.SetResourceVersion(t.next())
	return t.ObjectTracker.Add(obj)
}

func (t *rvTracker) Create(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.CreateOptions) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	return t.write(gvr, ns, m.GetName(), func() error { return t.ObjectTracker.Create(gvr, obj, ns, opts...) })
}

func (t *rvTracker) Update(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.UpdateOptions) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	return t.write(gvr, ns, m.GetName(), func() error { return t.ObjectTracker.Update(gvr, obj, ns, opts...) })
}

func (t *rvTracker) Patch(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.PatchOptions) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	return t.write(gvr, ns, m.GetName(), func() error { return t.ObjectTracker.Patch(gvr, obj, ns, opts...) })
}

func (t *rvTracker) Apply(gvr schema.GroupVersionResource, cfg runtime.Object, ns string, opts ...metav1.PatchOptions) error {
	m, err := meta.Accessor(cfg)
	if err != nil {
		return err
	}
	return t.write(gvr, ns, m.GetName(), func() error { return t.ObjectTracker.Apply(gvr, cfg, ns, opts...) })
}

// write runs one write and gives the object a new resourceVersion when it
// changed (managed fields included, as the API server compares them).
func (t *rvTracker) write(gvr schema.GroupVersionResource, ns, name string, do func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	before, beforeErr := t.ObjectTracker.Get(gvr, ns, name)
	if err := do(); err != nil {
		return err
	}
	after, err := t.ObjectTracker.Get(gvr, ns, name)
	if err != nil {
		return err
	}
	if beforeErr == nil && sameButVersion(before, after) {
		return nil
	}
	m, err := meta.Accessor(after)
	if err != nil {
		return err
	}
	m.SetResourceVersion(t.next())
	// The stored object's managed fields are kept: this write changes
	// nothing a field manager tracks.
	return t.ObjectTracker.Update(gvr, after, ns)
}

func sameButVersion(x, y runtime.Object) bool {
	x, y = x.DeepCopyObject(), y.DeepCopyObject()
	for _, o := range []runtime.Object{x, y} {
		m, err := meta.Accessor(o)
		if err != nil {
			return false
		}
		m.SetResourceVersion("")
	}
	return apiequality.Semantic.DeepEqual(x, y)
}
