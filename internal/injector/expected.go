package injector

import (
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Expected returns a copy of pod as the mutating policy leaves an opted-in
// pod, given the data of the parameters ConfigMap. It is the tests'
// reference, written apart from the policy's CEL so that each checks the
// other: an integration or end-to-end test creates pod through the API
// server and compares what comes back with this (after the API server's
// defaulting, e.g. by a dry-run create of the result).
//
// It does not judge: a pod the validating policy refuses, or one the
// mutating policy skips, gets the agent here all the same.
func Expected(pod *corev1.Pod, params map[string]string) *corev1.Pod {
	out := pod.DeepCopy()
	s := &out.Spec
	mount := corev1.VolumeMount{Name: CertVolume, MountPath: CertDir, ReadOnly: true}
	for i := range s.InitContainers {
		s.InitContainers[i].VolumeMounts = append(s.InitContainers[i].VolumeMounts, mount)
	}
	for i := range s.Containers {
		s.Containers[i].VolumeMounts = append(s.Containers[i].VolumeMounts, mount)
	}
	s.Volumes = append(s.Volumes, certVolume(), tokenVolume())
	s.InitContainers = slices.Insert(s.InitContainers, 0, agent(pod, params))
	return out
}

func agent(pod *corev1.Pod, params map[string]string) corev1.Container {
	probe := func(h corev1.ProbeHandler, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: h, PeriodSeconds: 10, FailureThreshold: failures}
	}
	get := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(HTTPPort)}}
	}
	startup := probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/agent", "probe"}}}, 180)
	startup.PeriodSeconds = 2
	return corev1.Container{
		Name:           ContainerName,
		Image:          params["image"],
		Command:        []string{"/agent", "sidecar"},
		RestartPolicy:  ptr.To(corev1.ContainerRestartPolicyAlways),
		Env:            env(pod, params),
		Ports:          []corev1.ContainerPort{{Name: HTTPPortName, ContainerPort: HTTPPort}},
		StartupProbe:   startup,
		ReadinessProbe: probe(get("/readyz"), 0), // 0: the API server's default
		LivenessProbe:  probe(get("/healthz"), 3),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(params["cpu-request"]),
				corev1.ResourceMemory: resource.MustParse(params["memory-request"]),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(params["memory-limit"])},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: CertVolume, MountPath: CertDir},
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
		},
	}
}

func env(pod *corev1.Pod, params map[string]string) []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	out := []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("POD_UID", "metadata.uid"),
		field("POD_IPS", "status.podIPs"),
		{Name: "CERT_DIR", Value: CertDir},
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain != "" {
		out = append(out,
			corev1.EnvVar{Name: "POD_HOSTNAME", Value: pod.Spec.Hostname},
			corev1.EnvVar{Name: "POD_SUBDOMAIN", Value: pod.Spec.Subdomain})
	}
	for _, a := range Annotations {
		v, set := pod.Annotations[a.Name]
		if a.Secret {
			continue
		}
		if !set {
			v, set = params[a.Var]
		}
		if set {
			out = append(out, corev1.EnvVar{Name: a.Var, Value: v})
		}
	}
	for _, a := range Annotations {
		v := pod.Annotations[a.Name]
		if secret, key, _ := strings.Cut(v, "/"); a.Secret && secretRef.MatchString(v) {
			out = append(out, corev1.EnvVar{Name: a.Var, ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key},
			}})
		}
	}
	return out
}

var secretRef = regexp.MustCompile(SecretRefPattern)

func certVolume() corev1.Volume {
	return corev1.Volume{Name: CertVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("1Mi")),
	}}}
}

// tokenVolume is what the kubelet's automount projects, under another name.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		},
	}}}
}
