package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

const defaultPath = "/tether/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type provider struct {
	cfg    config
	pc     nodeutil.ProviderConfig
	client kubernetes.Interface
	net    *network

	mu     sync.Mutex
	pods   map[string]*podRun // namespace/name
	notify func(*corev1.Pod)
	closed bool

	pending      map[string]*corev1.Pod
	pendingOrder []string
	notifySig    chan struct{}
}

type podRun struct {
	pod       *corev1.Pod // as given to CreatePod (env resolved by VK)
	ctx       context.Context
	cancel    context.CancelFunc
	dir       string
	sb        *sandbox
	inits     []*ctrRun
	ctrs      []*ctrRun
	initDone  bool
	phase     corev1.PodPhase
	reason    string
	message   string
	startTime metav1.Time
	conds     map[corev1.PodConditionType]*corev1.PodCondition
	deleting  bool
	grace     time.Duration
	done      chan struct{}
}

type ctrRun struct {
	spec    corev1.Container
	init    bool
	status  corev1.ContainerStatus
	runs    int // starts so far; log file <runs-1>.log is the current one
	pid     int
	running bool
	exited  chan struct{} // closed when the current run ends
}

func newProvider(c config, pc nodeutil.ProviderConfig, client kubernetes.Interface, n *network) (*provider, error) {
	if err := os.MkdirAll(filepath.Join(c.runDir, "containers"), 0o755); err != nil {
		return nil, err
	}
	p := &provider{cfg: c, pc: pc, client: client, net: n, pods: map[string]*podRun{}, notify: func(*corev1.Pod) {},
		pending: map[string]*corev1.Pod{}, notifySig: make(chan struct{}, 1)}
	go p.notifyLoop()
	return p, nil
}

func key(ns, name string) string { return ns + "/" + name }

// NotifyPods implements node.PodNotifier.
func (p *provider) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

// notifyLocked queues the pod's current status for VK. p.mu must be held.
// Updates are coalesced per pod and delivered in order by one goroutine, so an
// older status never overtakes a newer one.
func (p *provider) notifyLocked(pr *podRun) {
	k := key(pr.pod.Namespace, pr.pod.Name)
	if cur, ok := p.pods[k]; ok && cur != pr {
		// A pod recreated under this name (a StatefulSet's) owns it now: VK matches status
		// by name, so the old run's last words would land on the new pod.
		return
	}
	pod := p.podWithStatusLocked(pr)
	if _, ok := p.pending[k]; !ok {
		p.pendingOrder = append(p.pendingOrder, k)
	}
	p.pending[k] = pod
	select {
	case p.notifySig <- struct{}{}:
	default:
	}
}

// podWithStatusLocked is the pod with its current status. Metadata comes from the
// informer when it still has this pod: VK writes the whole object with UpdateStatus,
// and stale metadata (e.g. a finalizer the Job controller has removed since) is
// refused for pods being deleted ("no new finalizers can be added").
func (p *provider) podWithStatusLocked(pr *podRun) *corev1.Pod {
	src := pr.pod
	if cur, err := p.pc.Pods.Pods(pr.pod.Namespace).Get(pr.pod.Name); err == nil && cur.UID == pr.pod.UID {
		src = cur
	}
	pod := src.DeepCopy()
	pod.Status = *p.statusLocked(pr)
	return pod
}

func (p *provider) notifyLoop() {
	for range p.notifySig {
		for {
			p.mu.Lock()
			if len(p.pendingOrder) == 0 {
				p.mu.Unlock()
				break
			}
			k := p.pendingOrder[0]
			p.pendingOrder = p.pendingOrder[1:]
			pod := p.pending[k]
			delete(p.pending, k)
			cb := p.notify
			p.mu.Unlock()
			cb(pod)
		}
	}
}

func (p *provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(pod.Namespace, pod.Name)
	if old, ok := p.pods[k]; ok && old.pod.UID == pod.UID {
		return nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	pr := &podRun{
		pod:       pod.DeepCopy(),
		ctx:       rctx,
		cancel:    cancel,
		dir:       filepath.Join(p.cfg.runDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		phase:     corev1.PodPending,
		startTime: metav1.Now(),
		conds:     map[corev1.PodConditionType]*corev1.PodCondition{},
		done:      make(chan struct{}),
		grace:     30 * time.Second,
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		pr.grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	for _, c := range pod.Spec.InitContainers {
		pr.inits = append(pr.inits, newCtr(c, true))
	}
	for _, c := range pod.Spec.Containers {
		pr.ctrs = append(pr.ctrs, newCtr(c, false))
	}
	p.pods[k] = pr
	p.notifyLocked(pr)
	go p.runPod(pr)
	return nil
}

func newCtr(c corev1.Container, init bool) *ctrRun {
	return &ctrRun{spec: c, init: init, status: corev1.ContainerStatus{
		Name:    c.Name,
		Image:   c.Image,
		ImageID: "",
		State:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
	}}
}

// UpdatePod: pod specs are immutable apart from images and a few fields the test
// node does not act on.
func (p *provider) UpdatePod(ctx context.Context, pod *corev1.Pod) error { return nil }

func (p *provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	pr, ok := p.pods[key(pod.Namespace, pod.Name)]
	if !ok || pr.pod.UID != pod.UID {
		p.mu.Unlock()
		return errdefs.NotFoundf("pod %s/%s not found", pod.Namespace, pod.Name)
	}
	if pod.DeletionGracePeriodSeconds != nil {
		pr.grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	pr.deleting = true
	p.mu.Unlock()
	pr.cancel()
	go func() {
		<-pr.done
		p.mu.Lock()
		p.notifyLocked(pr)
		p.mu.Unlock()
		// Let VK write the terminal status, then finish the deletion as a kubelet
		// does once the containers are gone (VK alone waits out the whole grace period).
		time.Sleep(time.Second)
		zero := int64(0)
		uid := pod.UID
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.client.CoreV1().Pods(pod.Namespace).Delete(dctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
		})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.G(ctx).WithError(err).Warn("deleting terminated pod")
		}
		time.Sleep(time.Second)
		p.mu.Lock()
		if cur, ok := p.pods[key(pod.Namespace, pod.Name)]; ok && cur == pr {
			delete(p.pods, key(pod.Namespace, pod.Name))
		}
		p.mu.Unlock()
		_ = os.RemoveAll(pr.dir)
	}()
	return nil
}

// GetPod does not know a pod that is being deleted: VK asks by name before creating a pod,
// and a pod recreated under the same name right after a delete (a StatefulSet's) would
// otherwise be taken for the old one and never created.
func (p *provider) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.pods[key(ns, name)]
	if !ok || pr.deleting {
		return nil, errdefs.NotFoundf("pod %s/%s not found", ns, name)
	}
	return p.podWithStatusLocked(pr), nil
}

func (p *provider) GetPodStatus(ctx context.Context, ns, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *provider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, pr := range p.pods {
		out = append(out, p.podWithStatusLocked(pr))
	}
	return out, nil
}

// shutdown stops every pod (node exit): processes get SIGTERM, sandboxes go.
func (p *provider) shutdown() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	var all []*podRun
	for _, pr := range p.pods {
		if pr.grace > 5*time.Second {
			pr.grace = 5 * time.Second
		}
		all = append(all, pr)
	}
	p.mu.Unlock()
	for _, pr := range all {
		pr.cancel()
	}
	for _, pr := range all {
		select {
		case <-pr.done:
		case <-time.After(15 * time.Second):
		}
	}
}

func (p *provider) setCond(pr *podRun, t corev1.PodConditionType, ok bool, reason string) {
	st := corev1.ConditionFalse
	if ok {
		st = corev1.ConditionTrue
	}
	c := pr.conds[t]
	if c == nil || c.Status != st {
		pr.conds[t] = &corev1.PodCondition{Type: t, Status: st, Reason: reason, LastTransitionTime: metav1.Now()}
	}
}

// statusLocked builds the pod status the way a kubelet reports it.
func (p *provider) statusLocked(pr *podRun) *corev1.PodStatus {
	st := &corev1.PodStatus{
		Phase:     pr.phase,
		Reason:    pr.reason,
		Message:   pr.message,
		StartTime: &pr.startTime,
		HostIP:    p.cfg.nodeIP(),
		HostIPs:   []corev1.HostIP{{IP: p.cfg.nodeIP()}},
		// Set by the API server at creation and immutable: a different value makes
		// every status update fail validation.
		QOSClass: pr.pod.Status.QOSClass,
	}
	if pr.sb != nil {
		st.PodIP = pr.sb.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	allReady := len(pr.ctrs) > 0
	for _, c := range pr.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status)
	}
	for _, c := range pr.ctrs {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status)
		if !c.status.Ready {
			allReady = false
		}
	}
	terminal := pr.phase == corev1.PodSucceeded || pr.phase == corev1.PodFailed
	p.setCond(pr, corev1.PodScheduled, true, "")
	p.setCond(pr, corev1.PodReadyToStartContainers, pr.sb != nil && !pr.sb.closed, "")
	p.setCond(pr, corev1.PodInitialized, pr.initDone, reasonIf(!pr.initDone, "ContainersNotInitialized"))
	ready := allReady && !terminal
	reason := ""
	if !ready {
		reason = "ContainersNotReady"
		if terminal {
			reason = "PodCompleted"
		}
	}
	p.setCond(pr, corev1.ContainersReady, ready, reason)
	p.setCond(pr, corev1.PodReady, ready, reason)
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		st.Conditions = append(st.Conditions, *pr.conds[t])
	}
	return st
}

func reasonIf(b bool, r string) string {
	if b {
		return r
	}
	return ""
}

func (c config) nodeIP() string {
	h := c.listen
	if i := strings.LastIndex(h, ":"); i >= 0 {
		h = h[:i]
	}
	return h
}

// runPod is one pod's lifetime: sandbox, init containers in order, then the
// containers with their restart policy, then teardown.
func (p *provider) runPod(pr *podRun) {
	defer close(pr.done)
	ctx := pr.ctx
	logger := log.G(ctx).WithField("pod", key(pr.pod.Namespace, pr.pod.Name))
	sb, err := p.net.createSandbox(string(pr.pod.UID))
	p.mu.Lock()
	if err != nil {
		logger.WithError(err).Error("sandbox")
		pr.phase = corev1.PodFailed
		pr.reason = "SandboxCreateFailed"
		pr.message = err.Error()
		p.notifyLocked(pr)
		p.mu.Unlock()
		return
	}
	pr.sb = sb
	p.notifyLocked(pr)
	p.mu.Unlock()
	defer func() {
		p.net.deleteSandbox(sb)
		p.mu.Lock()
		if pr.phase != corev1.PodSucceeded && pr.phase != corev1.PodFailed {
			pr.phase = corev1.PodFailed
			if pr.deleting {
				pr.phase = phaseAfterDelete(pr)
			}
		}
		for _, c := range append(append([]*ctrRun{}, pr.inits...), pr.ctrs...) {
			if c.status.State.Terminated == nil {
				last := c.status.State.Running
				c.status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "the pod was deleted before the container finished",
					FinishedAt: metav1.Now(),
				}}
				if last != nil {
					c.status.State.Terminated.StartedAt = last.StartedAt
					c.status.State.Terminated.Reason = "Error"
					c.status.State.Terminated.Message = ""
				}
			}
			c.status.Ready = false
			f := false
			c.status.Started = &f
		}
		p.notifyLocked(pr)
		p.mu.Unlock()
	}()
	if err := p.preparePodFiles(pr); err != nil {
		p.mu.Lock()
		pr.phase = corev1.PodFailed
		pr.reason = "CreateContainerConfigError"
		pr.message = err.Error()
		p.mu.Unlock()
		return
	}

	for _, c := range pr.inits {
		for {
			code, ok := p.superviseOnce(pr, c)
			if ctx.Err() != nil {
				return
			}
			if ok && code == 0 {
				break
			}
			if pr.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				p.mu.Lock()
				pr.phase = corev1.PodFailed
				p.mu.Unlock()
				return
			}
			if !sleepCtx(ctx, 2*time.Second) {
				return
			}
		}
	}
	p.mu.Lock()
	pr.initDone = true
	pr.phase = corev1.PodPending
	p.notifyLocked(pr)
	p.mu.Unlock()

	var wg sync.WaitGroup
	for _, c := range pr.ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.supervise(pr, c)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	pr.phase = corev1.PodSucceeded
	for _, c := range pr.ctrs {
		if t := c.status.State.Terminated; t == nil || t.ExitCode != 0 {
			pr.phase = corev1.PodFailed
		}
	}
	p.mu.Unlock()
}

func phaseAfterDelete(pr *podRun) corev1.PodPhase {
	if pr.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		return corev1.PodSucceeded
	}
	return corev1.PodFailed
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// supervise runs a container and restarts it per the pod's restart policy.
func (p *provider) supervise(pr *podRun, c *ctrRun) {
	backoff := 2 * time.Second
	for {
		began := time.Now()
		code, started := p.superviseOnce(pr, c)
		if pr.ctx.Err() != nil {
			return
		}
		if started {
			pol := pr.pod.Spec.RestartPolicy
			if pol == corev1.RestartPolicyNever || (pol == corev1.RestartPolicyOnFailure && code == 0) {
				return
			}
			if time.Since(began) > 30*time.Second {
				backoff = 2 * time.Second
			}
			p.mu.Lock()
			c.status.LastTerminationState = c.status.State
			c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backoff, c.spec.Name, pr.pod.Name, pr.pod.Namespace, pr.pod.UID),
			}}
			p.updatePhaseLocked(pr)
			p.notifyLocked(pr)
			p.mu.Unlock()
			if !sleepCtx(pr.ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 20*time.Second)
			p.mu.Lock()
			c.status.RestartCount++
			p.mu.Unlock()
			continue
		}
		// Not started (image or config error): retry as a kubelet does.
		if !sleepCtx(pr.ctx, 10*time.Second) {
			return
		}
	}
}

// updatePhaseLocked: Running once every container has started at least once.
func (p *provider) updatePhaseLocked(pr *podRun) {
	if pr.phase == corev1.PodSucceeded || pr.phase == corev1.PodFailed || !pr.initDone {
		return
	}
	anyRunning := false
	for _, c := range pr.ctrs {
		if c.runs == 0 {
			pr.phase = corev1.PodPending
			return
		}
		if c.running {
			anyRunning = true
		}
	}
	if anyRunning || pr.pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		pr.phase = corev1.PodRunning
	}
}

func (p *provider) setWaiting(pr *podRun, c *ctrRun, reason, msg string) {
	p.mu.Lock()
	c.status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	c.status.Ready = false
	p.notifyLocked(pr)
	p.mu.Unlock()
}

// superviseOnce starts the container once and waits for it. started is false when
// it could not be started at all (image pull or config error).
func (p *provider) superviseOnce(pr *podRun, c *ctrRun) (code int, started bool) {
	prog, err := p.cfg.resolveImage(c.spec.Image)
	if err != nil {
		p.setWaiting(pr, c, "ErrImagePull", err.Error())
		if !sleepCtx(pr.ctx, 3*time.Second) {
			return 0, false
		}
		p.setWaiting(pr, c, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: %v", c.spec.Image, err))
		return 0, false
	}
	cmd, root, err := p.buildCmd(pr, c, prog)
	if err != nil {
		p.setWaiting(pr, c, "CreateContainerConfigError", err.Error())
		return 0, false
	}
	p.mu.Lock()
	n := c.runs
	p.mu.Unlock()
	logDir := filepath.Join(pr.dir, "logs", c.spec.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		p.setWaiting(pr, c, "CreateContainerError", err.Error())
		return 0, false
	}
	logFile, err := os.OpenFile(filepath.Join(logDir, fmt.Sprintf("%d.log", n)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		p.setWaiting(pr, c, "CreateContainerError", err.Error())
		return 0, false
	}
	defer logFile.Close()
	lw := &criLogWriter{f: logFile}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	id := newID()
	if err := cmd.Start(); err != nil {
		p.setWaiting(pr, c, "RunContainerError", err.Error())
		return 0, false
	}
	startedAt := metav1.Now()
	var copyWG sync.WaitGroup
	copyWG.Add(2)
	go func() { defer copyWG.Done(); lw.copyFrom(stdout, "stdout") }()
	go func() { defer copyWG.Done(); lw.copyFrom(stderr, "stderr") }()
	pid := cmd.Process.Pid
	pst, _ := procStartTime(pid)
	st := &containerState{
		ID: id, Pid: pid, PidStartTime: pst, Namespace: pr.pod.Namespace, Pod: pr.pod.Name,
		PodUID: string(pr.pod.UID), Container: c.spec.Name, Image: c.spec.Image, Netns: pr.sb.path,
		PodIP: pr.sb.ip.String(), Root: root, StartedAt: startedAt.UTC().Format(time.RFC3339Nano),
	}
	stateDir := filepath.Join(p.cfg.runDir, "containers")
	if err := writeState(stateDir, st); err != nil {
		log.G(pr.ctx).WithError(err).Warn("writing container state file")
	}
	exited := make(chan struct{})
	p.mu.Lock()
	c.runs++
	c.pid = pid
	c.running = true
	c.exited = exited
	t := true
	c.status.Started = &t
	c.status.ContainerID = "tether-test://" + id
	c.status.ImageID = imageID(c.spec.Image)
	c.status.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	c.status.Ready = !c.init && c.spec.ReadinessProbe == nil
	p.updatePhaseLocked(pr)
	p.notifyLocked(pr)
	p.mu.Unlock()

	if c.spec.ReadinessProbe != nil && !c.init {
		go p.probeLoop(pr, c, exited)
	}
	// Stop on pod deletion: SIGTERM to the process group, SIGKILL after the grace.
	go func() {
		select {
		case <-exited:
			return
		case <-pr.ctx.Done():
		}
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		p.mu.Lock()
		g := pr.grace
		p.mu.Unlock()
		select {
		case <-exited:
		case <-time.After(g):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()
	werr := cmd.Wait()
	// The container's own children keep the pipes open: kill the group first.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	copyWG.Wait()
	close(exited)
	_ = os.Remove(filepath.Join(stateDir, id+".json"))
	code = 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	} else if werr != nil {
		code = 128
	}
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	p.mu.Lock()
	c.running = false
	c.status.Ready = false
	f := false
	c.status.Started = &f
	c.status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason, StartedAt: startedAt, FinishedAt: metav1.Now(),
		ContainerID: "tether-test://" + id,
	}}
	if code == 128 {
		c.status.State.Terminated.Reason = "StartError"
		c.status.State.Terminated.Message = lastLogLine(filepath.Join(logDir, fmt.Sprintf("%d.log", n)))
	}
	p.notifyLocked(pr)
	p.mu.Unlock()
	return code, true
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildCmd makes the container-init command line for one container run.
func (p *provider) buildCmd(pr *podRun, c *ctrRun, prog *imageProgram) (*exec.Cmd, string, error) {
	envs, err := p.resolveEnv(pr, &c.spec)
	if err != nil {
		return nil, "", err
	}
	env := envs.vals
	// Docker/kubelet rules: command replaces ENTRYPOINT (and drops CMD); args replace CMD.
	var full []string
	switch {
	case len(c.spec.Command) > 0:
		full = append(append(full, c.spec.Command...), c.spec.Args...)
	case len(c.spec.Args) > 0:
		full = append(append(full, prog.entrypoint...), c.spec.Args...)
	default:
		full = append(append(full, prog.entrypoint...), prog.cmd...)
	}
	for i := range full {
		full[i] = expandVars(full[i], env)
	}
	if len(full) == 0 {
		return nil, "", fmt.Errorf("container %s has no command and image %s no entrypoint", c.spec.Name, c.spec.Image)
	}
	uid, gid := -1, -1
	sc := effectiveSC(pr.pod, &c.spec)
	if sc.uid != nil {
		uid = int(*sc.uid)
		gid = 0
	}
	if sc.gid != nil {
		gid = int(*sc.gid)
	}
	if sc.nonRoot && (sc.uid == nil || *sc.uid == 0) {
		return nil, "", fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pr.pod.Name+"_"+pr.pod.Namespace+"("+string(pr.pod.UID)+")", c.spec.Name)
	}
	root := filepath.Join(pr.dir, "roots", c.spec.Name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	flags := []string{"container-init", "--netns", pr.sb.path, "--root", root, "--hostname", podHostname(pr.pod)}
	if c.spec.WorkingDir != "" {
		flags = append(flags, "--workdir", c.spec.WorkingDir)
	}
	if uid >= 0 {
		flags = append(flags, "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(gid))
	}
	for _, f := range []string{"resolv.conf", "hosts", "hostname"} {
		flags = append(flags, "--bind", filepath.Join(pr.dir, "etc", f)+":/etc/"+f+":ro")
	}
	if prog.hostBin != "" {
		flags = append(flags, "--bind", prog.hostBin+":"+prog.binPath+":ro")
	}
	mounts, err := p.volumeBinds(pr, c)
	if err != nil {
		return nil, "", err
	}
	flags = append(flags, mounts...)
	flags = append(flags, "--")
	flags = append(flags, full...)
	cmd := exec.Command(self, flags...)
	for _, k := range envs.order {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, root, nil
}

type secCtx struct {
	uid, gid *int64
	nonRoot  bool
}

func effectiveSC(pod *corev1.Pod, c *corev1.Container) secCtx {
	var s secCtx
	if psc := pod.Spec.SecurityContext; psc != nil {
		s.uid, s.gid = psc.RunAsUser, psc.RunAsGroup
		s.nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			s.uid = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			s.gid = csc.RunAsGroup
		}
		if csc.RunAsNonRoot != nil {
			s.nonRoot = *csc.RunAsNonRoot
		}
	}
	return s
}

// expandVars does the kubelet's $(VAR) expansion of command and args.
func expandVars(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			if s[i+1] == '$' {
				b.WriteByte('$')
				i++
				continue
			}
			if s[i+1] == '(' {
				if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
					name := s[i+2 : i+2+j]
					if v, ok := env[name]; ok {
						b.WriteString(v)
						i += 2 + j
						continue
					}
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	h := pod.Name
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// criLogWriter writes container output in the CRI log format
// ("<RFC3339Nano> <stream> <F|P> <line>"), which the logs endpoint parses.
type criLogWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *criLogWriter) copyFrom(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			tag := "F"
			if !strings.HasSuffix(line, "\n") {
				tag = "P"
				line += "\n"
			}
			w.mu.Lock()
			_, _ = fmt.Fprintf(w.f, "%s %s %s %s", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, line)
			w.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	l := lines[len(lines)-1]
	if parts := strings.SplitN(l, " ", 4); len(parts) == 4 {
		return parts[3]
	}
	return l
}

// RunInContainer runs cmd inside the container's namespaces and root (like
// kubectl exec, without a TTY).
func (p *provider) RunInContainer(ctx context.Context, ns, podName, ctrName string, cmd []string, attach api.AttachIO) error {
	p.mu.Lock()
	pr, ok := p.pods[key(ns, podName)]
	var c *ctrRun
	if ok {
		for _, x := range pr.ctrs {
			if x.spec.Name == ctrName {
				c = x
			}
		}
	}
	var pid int
	if c != nil && c.running {
		pid = c.pid
	}
	p.mu.Unlock()
	if pid == 0 {
		return errdefs.NotFoundf("container %s in pod %s/%s is not running", ctrName, ns, podName)
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	args := append([]string{"-t", strconv.Itoa(pid), "-n", "-m", "-u", "-i", "-r", "-w", "--"}, cmd...)
	x := exec.CommandContext(ctx, "nsenter", args...)
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv != "" {
			x.Env = append(x.Env, kv)
		}
	}
	x.Stdin = attach.Stdin()
	x.Stdout = attach.Stdout()
	x.Stderr = attach.Stderr()
	if attach.TTY() && x.Stderr == nil {
		x.Stderr = attach.Stdout()
	}
	return x.Run()
}

func (p *provider) AttachToContainer(ctx context.Context, ns, podName, ctrName string, attach api.AttachIO) error {
	return errdefs.InvalidInput("attach is not supported by the tether test node")
}

func (p *provider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	now := metav1.Now()
	return &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.cfg.nodeName, StartTime: now}}, nil
}

func (p *provider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	return nil, nil
}
