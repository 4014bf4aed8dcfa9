package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// preparePodFiles writes the pod's /etc files and its volumes under pr.dir.
func (p *provider) preparePodFiles(pr *podRun) error {
	pod := pr.pod
	etc := filepath.Join(pr.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	host := podHostname(pod)
	fqdn := host
	if pod.Spec.Subdomain != "" {
		fqdn = fmt.Sprintf("%s.%s.%s.svc.cluster.local", host, pod.Spec.Subdomain, pod.Namespace)
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s %s\n", pr.sb.ip, fqdn, host)
	for _, ha := range pod.Spec.HostAliases {
		hosts += ha.IP + "\t" + strings.Join(ha.Hostnames, " ") + "\n"
	}
	resolv := fmt.Sprintf("search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5\n", pod.Namespace, p.cfg.dnsIP)
	if dc := pod.Spec.DNSConfig; dc != nil && pod.Spec.DNSPolicy == corev1.DNSNone {
		resolv = ""
		if len(dc.Searches) > 0 {
			resolv += "search " + strings.Join(dc.Searches, " ") + "\n"
		}
		for _, ns := range dc.Nameservers {
			resolv += "nameserver " + ns + "\n"
		}
	}
	files := map[string]string{"hosts": hosts, "resolv.conf": resolv, "hostname": host + "\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, v := range pod.Spec.Volumes {
		if err := p.prepareVolume(pr, v); err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return nil
}

func (p *provider) volDir(pr *podRun, name string) string {
	return filepath.Join(pr.dir, "volumes", name)
}

func (p *provider) prepareVolume(pr *podRun, v corev1.Volume) error {
	dir := p.volDir(pr, v.Name)
	ns := pr.pod.Namespace
	switch {
	case v.HostPath != nil:
		hp := v.HostPath
		t := corev1.HostPathUnset
		if hp.Type != nil {
			t = *hp.Type
		}
		_, err := os.Stat(hp.Path)
		switch t {
		case corev1.HostPathDirectoryOrCreate:
			return os.MkdirAll(hp.Path, 0o755)
		case corev1.HostPathFileOrCreate:
			if err != nil {
				if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
					return err
				}
				return os.WriteFile(hp.Path, nil, 0o644)
			}
		case corev1.HostPathUnset:
		default:
			if err != nil {
				return fmt.Errorf("hostPath type check failed: %s is not a %s", hp.Path, t)
			}
		}
		return nil
	case v.EmptyDir != nil:
		return os.MkdirAll(dir, 0o777)
	case v.ConfigMap != nil:
		cm, err := p.pc.ConfigMaps.ConfigMaps(ns).Get(v.ConfigMap.Name)
		if err != nil {
			if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
				return os.MkdirAll(dir, 0o755)
			}
			return fmt.Errorf("configmap %q not found", v.ConfigMap.Name)
		}
		return writeKeys(dir, mergeData(cm.Data, cm.BinaryData), v.ConfigMap.Items)
	case v.Secret != nil:
		s, err := p.pc.Secrets.Secrets(ns).Get(v.Secret.SecretName)
		if err != nil {
			if v.Secret.Optional != nil && *v.Secret.Optional {
				return os.MkdirAll(dir, 0o755)
			}
			return fmt.Errorf("secret %q not found", v.Secret.SecretName)
		}
		return writeKeys(dir, s.Data, v.Secret.Items)
	case v.DownwardAPI != nil:
		return writeKeys(dir, p.downward(pr, v.DownwardAPI.Items), nil)
	case v.Projected != nil:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, src := range v.Projected.Sources {
			switch {
			case src.ConfigMap != nil:
				cm, err := p.pc.ConfigMaps.ConfigMaps(ns).Get(src.ConfigMap.Name)
				if err != nil {
					if src.ConfigMap.Optional != nil && *src.ConfigMap.Optional {
						continue
					}
					return fmt.Errorf("configmap %q not found", src.ConfigMap.Name)
				}
				if err := writeKeys(dir, mergeData(cm.Data, cm.BinaryData), src.ConfigMap.Items); err != nil {
					return err
				}
			case src.Secret != nil:
				s, err := p.pc.Secrets.Secrets(ns).Get(src.Secret.Name)
				if err != nil {
					if src.Secret.Optional != nil && *src.Secret.Optional {
						continue
					}
					return fmt.Errorf("secret %q not found", src.Secret.Name)
				}
				if err := writeKeys(dir, s.Data, src.Secret.Items); err != nil {
					return err
				}
			case src.DownwardAPI != nil:
				if err := writeKeys(dir, p.downward(pr, src.DownwardAPI.Items), nil); err != nil {
					return err
				}
			case src.ServiceAccountToken != nil:
				tok, err := p.saToken(pr, src.ServiceAccountToken)
				if err != nil {
					// A pod without a token still runs; tools inside it then see no token.
					log.G(pr.ctx).WithError(err).Warn("service account token")
					continue
				}
				if err := writeKeys(dir, map[string][]byte{src.ServiceAccountToken.Path: []byte(tok)}, nil); err != nil {
					return err
				}
			}
		}
		return nil
	default:
		// Other volume kinds (PVCs, CSI, ...) become empty directories.
		return os.MkdirAll(dir, 0o777)
	}
}

func mergeData(s map[string]string, b map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range s {
		out[k] = []byte(v)
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	paths := map[string]string{}
	if len(items) > 0 {
		for _, it := range items {
			paths[it.Key] = it.Path
		}
	} else {
		for k := range data {
			paths[k] = k
		}
	}
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := data[k]
		if !ok {
			continue
		}
		f := filepath.Join(dir, filepath.Clean("/"+paths[k]))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, v, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (p *provider) downward(pr *podRun, items []corev1.DownwardAPIVolumeFile) map[string][]byte {
	out := map[string][]byte{}
	pod := pr.pod
	kv := func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%q\n", k, m[k])
		}
		return b.String()
	}
	for _, it := range items {
		if it.FieldRef == nil {
			continue
		}
		var v string
		switch it.FieldRef.FieldPath {
		case "metadata.name":
			v = pod.Name
		case "metadata.namespace":
			v = pod.Namespace
		case "metadata.uid":
			v = string(pod.UID)
		case "metadata.labels":
			v = kv(pod.Labels)
		case "metadata.annotations":
			v = kv(pod.Annotations)
		case "spec.nodeName":
			v = p.cfg.nodeName
		case "spec.serviceAccountName":
			v = pod.Spec.ServiceAccountName
		}
		out[it.Path] = []byte(v)
	}
	return out
}

func (p *provider) saToken(pr *podRun, src *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pr.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pr.pod.Name, UID: pr.pod.UID},
	}}
	if src.Audience != "" {
		tr.Spec.Audiences = []string{src.Audience}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.client.CoreV1().ServiceAccounts(pr.pod.Namespace).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return res.Status.Token, nil
}

// volumeBinds turns the container's volumeMounts into container-init --bind flags.
func (p *provider) volumeBinds(pr *podRun, c *ctrRun) ([]string, error) {
	var out []string
	for _, m := range c.spec.VolumeMounts {
		var vol *corev1.Volume
		for i := range pr.pod.Spec.Volumes {
			if pr.pod.Spec.Volumes[i].Name == m.Name {
				vol = &pr.pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("volumeMount %q names no volume", m.Name)
		}
		src := p.volDir(pr, m.Name)
		ro := m.ReadOnly
		switch {
		case vol.HostPath != nil:
			src = vol.HostPath.Path
			if _, err := os.Stat(src); err != nil {
				// Like Docker: a missing unchecked hostPath becomes a directory.
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		case vol.ConfigMap != nil, vol.Secret != nil, vol.Projected != nil, vol.DownwardAPI != nil:
			ro = true
		}
		if m.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+m.SubPath))
			if _, err := os.Stat(src); err != nil {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		if strings.Contains(src, ":") || strings.Contains(m.MountPath, ":") {
			return nil, fmt.Errorf("volume paths with ':' are not supported by the test node")
		}
		flag := src + ":" + m.MountPath
		if ro {
			flag += ":ro"
		}
		out = append(out, "--bind", flag)
	}
	return out, nil
}
