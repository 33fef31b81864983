// The hollow node: kubemark's hollow kubelet (k8s.io/kubernetes/pkg/kubemark, the real
// kubelet code: PLEG, pod workers, restart back-off, status manager) with the real prober
// instead of kubemark's always-ready FakeManager, on a CRI runtime built around
// k8s.io/cri-client's fake one that gives each pod sandbox an address of the node's
// podCIDR (on the node namespace's pods device) and runs each container as an HTTP
// server on its sandbox address and ports. `hollow-node kill` stops a pod's containers
// through the CRI socket, as a container that dies: the kubelet finds out by its PLEG.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	internalapi "k8s.io/cri-api/pkg/apis"
	kubeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	fakeremote "k8s.io/cri-client/pkg/fake"
	"k8s.io/cri-client/pkg/util"
	cadvisortest "k8s.io/kubernetes/pkg/kubelet/cadvisor/testing"
	"k8s.io/kubernetes/pkg/kubelet/cm"
	"k8s.io/kubernetes/pkg/kubemark"
)

func init() { commands["hollow-node"] = newHollowCommand }

type hollowFlags struct {
	name, kubeconfig, endpoint, nodeIP, device, rootDir string
	leaseSeconds                                        int32
	statusEvery, appStart                               time.Duration
}

func newHollowCommand() *cobra.Command {
	var f hollowFlags
	cmd := &cobra.Command{
		Use:   "hollow-node",
		Short: "kubemark's hollow kubelet with the real prober and a pod-serving fake CRI runtime",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runHollow(cmd.Context(), &f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.name, "name", "", "node name (the Node must exist)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "the node's kubeconfig (system:node:NAME)")
	fs.StringVar(&f.endpoint, "runtime-endpoint", "", "unix socket the fake CRI runtime serves")
	fs.StringVar(&f.nodeIP, "node-ip", "", "the node's InternalIP")
	fs.StringVar(&f.rootDir, "root-dir", "", "folder for the kubelet's root and pod-log folders (TMPDIR)")
	fs.StringVar(&f.device, "pods-device", "pods0", "device that gets each sandbox's address")
	fs.Int32Var(&f.leaseSeconds, "node-lease-duration-seconds", 40, "kubelet nodeLeaseDurationSeconds")
	fs.DurationVar(&f.statusEvery, "node-status-update-frequency", 10*time.Second, "kubelet nodeStatusUpdateFrequency")
	fs.DurationVar(&f.appStart, "app-start-time", 0, "from a container's start to its app listening")
	cmd.AddCommand(newKillCommand())
	return cmd
}

func runHollow(ctx context.Context, f *hollowFlags) error {
	if f.name == "" || f.kubeconfig == "" || f.endpoint == "" || f.rootDir == "" {
		return fmt.Errorf("--name, --kubeconfig, --runtime-endpoint and --root-dir are required")
	}
	// kubemark makes its folders with os.MkdirTemp("", ...): keep them in ours
	if err := os.MkdirAll(f.rootDir, 0o700); err != nil {
		return err
	}
	if err := os.Setenv("TMPDIR", f.rootDir); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", f.kubeconfig, err)
	}
	cfg.UserAgent = "hollow-kubelet"
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		return err
	}
	flags, kc := kubemark.GetHollowKubeletConfig(&kubemark.HollowKubeletOptions{
		NodeName: f.name, MaxPods: 110, NodeLabels: map[string]string{},
	})
	flags.NodeIP = f.nodeIP
	flags.CertDirectory = filepath.Join(flags.RootDirectory, "pki")
	kc.EnableServer, kc.ReadOnlyPort, kc.HealthzPort = false, 0, 0
	kc.NodeLeaseDurationSeconds = f.leaseSeconds
	kc.NodeStatusUpdateFrequency.Duration = f.statusEvery
	hb := *cfg
	hb.Timeout = min(f.statusEvery, time.Duration(f.leaseSeconds)*time.Second)
	hb.QPS = -1
	heartbeat, err := clientset.NewForConfig(&hb)
	if err != nil {
		return err
	}
	rt := newPodRuntime(f.device, f.appStart)
	if err := rt.start(f.endpoint); err != nil {
		return err
	}
	runtimeService, err := remote.NewRemoteRuntimeServiceBuilder().
		WithEndpoint(f.endpoint).WithConnectionTimeout(15 * time.Second).Build(ctx)
	if err != nil {
		return fmt.Errorf("runtime client: %w", err)
	}
	hk := kubemark.NewHollowKubelet(flags, kc, client, heartbeat,
		&cadvisortest.Fake{NodeName: f.name}, rt.ImageService, runtimeService,
		cm.NewStubContainerManager())
	hk.KubeletDeps.ProbeManager = nil // the kubelet builds the real prober.Manager
	hk.Run(ctx)
	return nil
}

// podRuntime is cri-client's fake runtime with pod networking and serving containers.
type podRuntime struct {
	*fakeremote.RemoteRuntime
	device  string
	mu      sync.Mutex
	cidr    *net.IPNet
	ips     map[string]string // sandbox id -> address
	sandbox map[string]*kubeapi.PodSandboxConfig
	apps    map[string]*app // container id -> its servers
	// startDelay: from the container's start to its app listening
	startDelay time.Duration
}

func newPodRuntime(device string, startDelay time.Duration) *podRuntime {
	return &podRuntime{
		RemoteRuntime: fakeremote.NewFakeRemoteRuntime(), device: device, startDelay: startDelay,
		ips: map[string]string{}, sandbox: map[string]*kubeapi.PodSandboxConfig{},
		apps: map[string]*app{},
	}
}

func (r *podRuntime) start(endpoint string) error {
	// a restarted node has no pods: drop addresses a killed predecessor left
	if out, err := exec.Command("ip", "addr", "flush", "dev", r.device).CombinedOutput(); err != nil {
		return fmt.Errorf("ip addr flush dev %s: %v: %s", r.device, err, out)
	}
	_ = os.Remove(endpoint)
	l, err := util.CreateListener("unix://" + endpoint)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", endpoint, err)
	}
	srv := grpc.NewServer()
	kubeapi.RegisterRuntimeServiceServer(srv, r)
	kubeapi.RegisterImageServiceServer(srv, r)
	r.RuntimeService.FakeStatus = &kubeapi.RuntimeStatus{Conditions: []*kubeapi.RuntimeCondition{
		{Type: kubeapi.RuntimeReady, Status: true}, {Type: kubeapi.NetworkReady, Status: true},
	}}
	go func() { _ = srv.Serve(l) }()
	return nil
}

// UpdateRuntimeConfig learns the node's podCIDR, as a CNI's host-local IPAM range.
func (r *podRuntime) UpdateRuntimeConfig(ctx context.Context, req *kubeapi.UpdateRuntimeConfigRequest) (*kubeapi.UpdateRuntimeConfigResponse, error) {
	if c := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); c != "" {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.cidr = n
		r.mu.Unlock()
	}
	return r.RemoteRuntime.UpdateRuntimeConfig(ctx, req)
}

// RunPodSandbox gives the sandbox the lowest free address of the podCIDR above .1.
func (r *podRuntime) RunPodSandbox(ctx context.Context, req *kubeapi.RunPodSandboxRequest) (*kubeapi.RunPodSandboxResponse, error) {
	ip, err := r.allocate()
	if err != nil {
		return nil, err
	}
	if err := r.ip("replace", ip); err != nil {
		r.release(ip)
		return nil, err
	}
	resp, err := r.RemoteRuntime.RunPodSandbox(ctx, req)
	if err != nil {
		_ = r.ip("del", ip)
		r.release(ip)
		return nil, err
	}
	id := resp.PodSandboxId
	r.RuntimeService.Lock()
	r.RuntimeService.Sandboxes[id].Network.Ip = ip
	r.RuntimeService.Unlock()
	r.mu.Lock()
	delete(r.ips, "pending:"+ip)
	r.ips[id], r.sandbox[id] = ip, req.Config
	r.mu.Unlock()
	return resp, nil
}

func (r *podRuntime) allocate() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cidr == nil {
		return "", fmt.Errorf("no podCIDR yet (the kubelet sends it once the Node has one)")
	}
	used := map[string]bool{}
	for _, ip := range r.ips {
		used[ip] = true
	}
	base := binary.BigEndian.Uint32(r.cidr.IP.To4())
	ones, bits := r.cidr.Mask.Size()
	for i := uint32(2); i < 1<<(bits-ones)-1; i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i)
		if !used[ip.String()] {
			ip := ip.String()
			r.ips["pending:"+ip] = ip
			return ip, nil
		}
	}
	return "", fmt.Errorf("podCIDR %s exhausted", r.cidr)
}

func (r *podRuntime) release(ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, v := range r.ips {
		if v == ip {
			delete(r.ips, id)
			delete(r.sandbox, id)
		}
	}
}

func (r *podRuntime) ip(op, ip string) error {
	out, err := exec.Command("ip", "addr", op, ip+"/32", "dev", r.device).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr %s %s dev %s: %v: %s", op, ip, r.device, err, out)
	}
	return nil
}

// StopPodSandbox stops the sandbox's containers and frees its address.
func (r *podRuntime) StopPodSandbox(ctx context.Context, req *kubeapi.StopPodSandboxRequest) (*kubeapi.StopPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.StopPodSandbox(ctx, req)
	if err != nil {
		return nil, err
	}
	r.RuntimeService.Lock()
	var ids []string
	for id, c := range r.RuntimeService.Containers {
		if c.SandboxID == req.PodSandboxId {
			ids = append(ids, id)
		}
	}
	r.RuntimeService.Unlock()
	for _, id := range ids {
		r.stopServing(id)
	}
	r.mu.Lock()
	ip, ok := r.ips[req.PodSandboxId]
	r.mu.Unlock()
	if ok {
		_ = r.ip("del", ip)
		r.release(ip)
	}
	return resp, nil
}

// StartContainer runs the container: after the app's start-up delay, an HTTP server
// (200, body the pod's name) on each of its pod's TCP container ports at the sandbox's
// address, as an app that listens once it has started.
func (r *podRuntime) StartContainer(ctx context.Context, req *kubeapi.StartContainerRequest) (*kubeapi.StartContainerResponse, error) {
	resp, err := r.RemoteRuntime.StartContainer(ctx, req)
	if err != nil {
		return nil, err
	}
	r.RuntimeService.Lock()
	sid := r.RuntimeService.Containers[req.ContainerId].SandboxID
	r.RuntimeService.Unlock()
	id := req.ContainerId
	r.mu.Lock()
	defer r.mu.Unlock()
	ip, conf := r.ips[sid], r.sandbox[sid]
	a := &app{}
	r.apps[id] = a
	if r.startDelay <= 0 {
		return resp, r.listen(a, ip, conf)
	}
	a.timer = time.AfterFunc(r.startDelay, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.apps[id] == a {
			if err := r.listen(a, ip, conf); err != nil {
				fmt.Fprintf(os.Stderr, "container %s: %v\n", id, err)
			}
		}
	})
	return resp, nil
}

// app is a running container's HTTP servers (none until its start-up delay is over).
type app struct {
	timer   *time.Timer
	servers []*http.Server
}

func (r *podRuntime) listen(a *app, ip string, conf *kubeapi.PodSandboxConfig) error {
	for _, pm := range conf.GetPortMappings() {
		if pm.Protocol != kubeapi.Protocol_TCP {
			continue
		}
		srv, err := serve(net.JoinHostPort(ip, strconv.Itoa(int(pm.ContainerPort))), conf.GetMetadata().GetName())
		if err != nil {
			return err
		}
		a.servers = append(a.servers, srv)
	}
	return nil
}

func serve(addr, body string) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("container listen on %s: %w", addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) })}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

func (r *podRuntime) stopServing(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.apps[id]
	if !ok {
		return
	}
	delete(r.apps, id)
	if a.timer != nil {
		a.timer.Stop()
	}
	for _, s := range a.servers {
		_ = s.Close() // the process is gone: listeners and connections close
	}
}

// StopContainer ends the container's servers; with timeout 0 (a kill from outside, not
// the kubelet's graceful stop) it exits as a SIGKILLed process: 137, reason Error.
func (r *podRuntime) StopContainer(ctx context.Context, req *kubeapi.StopContainerRequest) (*kubeapi.StopContainerResponse, error) {
	r.stopServing(req.ContainerId)
	resp, err := r.RemoteRuntime.StopContainer(ctx, req)
	if err == nil && req.Timeout == 0 {
		r.RuntimeService.Lock()
		if c, ok := r.RuntimeService.Containers[req.ContainerId]; ok {
			c.ExitCode, c.Reason = 137, "Error"
		}
		r.RuntimeService.Unlock()
	}
	return resp, err
}

// RemoveContainer ends a container's servers if it still ran.
func (r *podRuntime) RemoveContainer(ctx context.Context, req *kubeapi.RemoveContainerRequest) (*kubeapi.RemoveContainerResponse, error) {
	r.stopServing(req.ContainerId)
	return r.RemoteRuntime.RemoveContainer(ctx, req)
}

func newKillCommand() *cobra.Command {
	var endpoints []string
	var namespace, pod string
	cmd := &cobra.Command{
		Use:   "kill",
		Short: "stop a pod's running containers through the CRI (timeout 0), as if they died",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return kill(cmd.Context(), endpoints, namespace, pod)
		},
	}
	cmd.Flags().StringArrayVar(&endpoints, "runtime-endpoint", nil, "a hollow node's CRI socket (repeat: the one running the pod is used)")
	cmd.Flags().StringVar(&namespace, "namespace", "", "the pod's namespace")
	cmd.Flags().StringVar(&pod, "pod", "", "the pod's name")
	return cmd
}

func kill(ctx context.Context, endpoints []string, namespace, pod string) error {
	filter := &kubeapi.ContainerFilter{
		State: &kubeapi.ContainerStateValue{State: kubeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{
			"io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.name": pod,
		},
	}
	var errs []string
	for _, ep := range endpoints {
		rs, err := remote.NewRemoteRuntimeServiceBuilder().
			WithEndpoint("unix://" + ep).WithConnectionTimeout(2 * time.Second).Build(ctx)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		cs, err := rs.ListContainers(ctx, filter)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		if len(cs) > 0 {
			return stopAll(ctx, rs, cs)
		}
	}
	return fmt.Errorf("no running container of %s/%s on %d hollow node(s) %v", namespace, pod, len(endpoints), errs)
}

func stopAll(ctx context.Context, rs internalapi.RuntimeService, cs []*kubeapi.Container) error {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	for _, c := range cs {
		if err := rs.StopContainer(ctx, c.Id, 0); err != nil {
			return err
		}
	}
	fmt.Printf("fault_at=%.6f\n", float64(ts.Sec)+float64(ts.Nsec)/1e9)
	for _, c := range cs {
		fmt.Printf("killed %s (%s)\n", c.Metadata.GetName(), c.Id)
	}
	return nil
}
