package main

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The node resolves container env itself (VK's SkipDownwardAPIResolution): VK
// v1.14.1 resolves it before the pod has an IP and fails every pod that uses
// fieldRef status.podIP with "unsupported fieldPath: status.podIP".

var envNameRE = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

type envList struct {
	order []string
	vals  map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.order = append(e.order, k)
	}
	e.vals[k] = v
}

// resolveEnv builds a container's environment as a kubelet does: service links,
// envFrom, then env in order with $(VAR) expansion and valueFrom sources.
func (p *provider) resolveEnv(pr *podRun, c *corev1.Container) (*envList, error) {
	pod := pr.pod
	e := &envList{}
	e.set("PATH", defaultPath)
	e.set("HOSTNAME", podHostname(pod))
	e.set("HOME", "/root")
	p.serviceEnv(pod, e)
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, err := p.pc.ConfigMaps.ConfigMaps(pod.Namespace).Get(src.ConfigMapRef.Name)
			if err != nil {
				if src.ConfigMapRef.Optional != nil && *src.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", src.ConfigMapRef.Name)
			}
			for _, k := range sortedKeys(cm.Data) {
				if envNameRE.MatchString(src.Prefix + k) {
					e.set(src.Prefix+k, cm.Data[k])
				}
			}
		case src.SecretRef != nil:
			s, err := p.pc.Secrets.Secrets(pod.Namespace).Get(src.SecretRef.Name)
			if err != nil {
				if src.SecretRef.Optional != nil && *src.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", src.SecretRef.Name)
			}
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if envNameRE.MatchString(src.Prefix + k) {
					e.set(src.Prefix+k, string(s.Data[k]))
				}
			}
		}
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			e.set(ev.Name, expandVars(ev.Value, e.vals))
			continue
		}
		v, skip, err := p.envValueFrom(pr, c, ev.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", ev.Name, err)
		}
		if !skip {
			e.set(ev.Name, v)
		}
	}
	return e, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p *provider) envValueFrom(pr *podRun, c *corev1.Container, vf *corev1.EnvVarSource) (string, bool, error) {
	pod := pr.pod
	switch {
	case vf.FieldRef != nil:
		fp := vf.FieldRef.FieldPath
		switch {
		case fp == "metadata.name":
			return pod.Name, false, nil
		case fp == "metadata.namespace":
			return pod.Namespace, false, nil
		case fp == "metadata.uid":
			return string(pod.UID), false, nil
		case fp == "spec.nodeName":
			return p.cfg.nodeName, false, nil
		case fp == "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, false, nil
		case fp == "status.hostIP" || fp == "status.hostIPs":
			return p.cfg.nodeIP(), false, nil
		case fp == "status.podIP" || fp == "status.podIPs":
			return pr.sb.ip.String(), false, nil
		case strings.HasPrefix(fp, "metadata.labels['"):
			return pod.Labels[strings.TrimSuffix(strings.TrimPrefix(fp, "metadata.labels['"), "']")], false, nil
		case strings.HasPrefix(fp, "metadata.annotations['"):
			return pod.Annotations[strings.TrimSuffix(strings.TrimPrefix(fp, "metadata.annotations['"), "']")], false, nil
		}
		return "", false, fmt.Errorf("unsupported fieldPath %s", fp)
	case vf.ResourceFieldRef != nil:
		r := vf.ResourceFieldRef
		var q string
		if strings.HasPrefix(r.Resource, "limits.") {
			if v, ok := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(r.Resource, "limits."))]; ok {
				q = v.String()
			}
		} else if strings.HasPrefix(r.Resource, "requests.") {
			if v, ok := c.Resources.Requests[corev1.ResourceName(strings.TrimPrefix(r.Resource, "requests."))]; ok {
				q = v.String()
			}
		}
		if q == "" {
			q = "0"
		}
		return q, false, nil
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		opt := ref.Optional != nil && *ref.Optional
		cm, err := p.pc.ConfigMaps.ConfigMaps(pod.Namespace).Get(ref.Name)
		if err != nil {
			if opt {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if opt {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, false, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		opt := ref.Optional != nil && *ref.Optional
		s, err := p.pc.Secrets.Secrets(pod.Namespace).Get(ref.Name)
		if err != nil {
			if opt {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %q not found", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if opt {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), false, nil
	}
	return "", true, nil
}

// serviceEnv adds the docker-link style variables a kubelet sets for services:
// always the default/kubernetes ones, and the pod namespace's services when
// enableServiceLinks is on (the default).
func (p *provider) serviceEnv(pod *corev1.Pod, e *envList) {
	add := func(svc *corev1.Service) {
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			return
		}
		n := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
		e.set(n+"_SERVICE_HOST", svc.Spec.ClusterIP)
		e.set(n+"_SERVICE_PORT", strconv.Itoa(int(svc.Spec.Ports[0].Port)))
		for _, sp := range svc.Spec.Ports {
			if sp.Name != "" {
				e.set(n+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), strconv.Itoa(int(sp.Port)))
			}
		}
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		if svcs, err := p.pc.Services.Services(pod.Namespace).List(labels.Everything()); err == nil {
			sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
			for _, s := range svcs {
				if pod.Namespace == "default" && s.Name == "kubernetes" {
					continue
				}
				add(s)
			}
		}
	}
	if k, err := p.pc.Services.Services("default").Get("kubernetes"); err == nil {
		add(k)
	}
}
