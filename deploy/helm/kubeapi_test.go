package helm_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeKubernetes is a Kubernetes API server on 127.0.0.1 that knows only
// pods, enough for Prometheus's Kubernetes service discovery (role: pod) in
// every namespace: it lists them (GET /api/v1/pods), and watches them in
// both forms client-go uses, a watch from the list's resourceVersion and
// the streaming watch-list (watch=true&sendInitialEvents=true), which sends
// every pod as an ADDED event and then a bookmark marking the end of the
// initial events. Pods added while Prometheus watches reach it as events.
// It answers JSON whatever the client prefers, as an API server may.
type fakeKubernetes struct {
	URL string

	mu       sync.Mutex
	pods     []corev1.Pod
	version  int
	watchers map[chan watchEvent]bool
	requests []string // "list", "watch" or "watch-list", in order
	unknown  []string // requests for anything else
	done     chan struct{}
}

type watchEvent struct {
	Type   string `json:"type"`
	Object any    `json:"object"`
}

// startFakeKubernetes serves pods until the test ends.
func startFakeKubernetes(t *testing.T, pods []corev1.Pod) *fakeKubernetes {
	t.Helper()
	k := &fakeKubernetes{watchers: map[chan watchEvent]bool{}, done: make(chan struct{}), version: 1}
	for _, p := range pods {
		k.pods = append(k.pods, k.stamp(p))
	}
	srv := httptest.NewServer(http.HandlerFunc(k.serve))
	k.URL = srv.URL
	t.Cleanup(func() {
		close(k.done)
		srv.Close()
	})
	return k
}

// stamp gives a pod the type and version fields an API server fills in;
// the caller holds mu or owns k.
func (k *fakeKubernetes) stamp(p corev1.Pod) corev1.Pod {
	k.version++
	p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	p.ResourceVersion = strconv.Itoa(k.version)
	if p.UID == "" {
		p.UID = types.UID("uid-" + p.Namespace + "-" + p.Name)
	}
	return p
}

// add creates a pod and sends it to every open watch.
func (k *fakeKubernetes) add(p corev1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p = k.stamp(p)
	k.pods = append(k.pods, p)
	for w := range k.watchers {
		w <- watchEvent{"ADDED", p}
	}
}

// forms returns the kinds of request served so far, and any request for
// something the fake does not serve.
func (k *fakeKubernetes) forms() (served, unknown []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.requests), slices.Clone(k.unknown)
}

func (k *fakeKubernetes) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/api/v1/pods" {
		k.mu.Lock()
		k.unknown = append(k.unknown, r.Method+" "+r.URL.String())
		k.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound,
			Message: "the fake API server serves only pods"})
		return
	}
	q := r.URL.Query()
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		k.list(w)
		return
	}
	k.watch(w, r, q.Get("sendInitialEvents") == "true")
}

func (k *fakeKubernetes) list(w http.ResponseWriter) {
	k.mu.Lock()
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(k.version)}, Items: slices.Clone(k.pods)}
	k.requests = append(k.requests, "list")
	k.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(list)
}

// watch streams events until the client or the test goes away: with
// initial events, every pod and a bookmark first.
func (k *fakeKubernetes) watch(w http.ResponseWriter, r *http.Request, initial bool) {
	events := make(chan watchEvent, 64)
	k.mu.Lock()
	var first []watchEvent
	form := "watch"
	if initial {
		form = "watch-list"
		for _, p := range k.pods {
			first = append(first, watchEvent{"ADDED", p})
		}
		first = append(first, watchEvent{"BOOKMARK", corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.Itoa(k.version),
				Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}})
	}
	k.requests = append(k.requests, form)
	k.watchers[events] = true
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.watchers, events)
		k.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher := w.(http.Flusher)
	for _, e := range first {
		enc.Encode(e)
	}
	flusher.Flush()
	for {
		select {
		case e := <-events:
			enc.Encode(e)
			flusher.Flush()
		case <-r.Context().Done():
			return
		case <-k.done:
			return
		}
	}
}

// k8sPod.object is the pod as the API server holds it, in namespace ns on
// node: its containers and their ports, an init container where the pod
// has one, and its phase and IP.
func (p k8sPod) object(ns, node string) corev1.Pod {
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns, Labels: p.labels, Annotations: p.annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: p.name[:strings.LastIndex(p.name, "-")], UID: "rs"}}},
		Spec: corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(p.phase), PodIP: p.ip, HostIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if len(p.containers) == 0 {
		// A container without ports: discovery's target is the pod's IP.
		pod.Spec.Containers = []corev1.Container{{Name: "modelwatch", Image: "modelwatch"}}
	}
	for _, c := range p.containers {
		ct := corev1.Container{Name: c.container, Image: c.container,
			Ports: []corev1.ContainerPort{{Name: fmt.Sprint("p", c.port), ContainerPort: int32(c.port), Protocol: corev1.ProtocolTCP}}}
		if c.init {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, ct)
		} else {
			pod.Spec.Containers = append(pod.Spec.Containers, ct)
		}
	}
	return pod
}
