"""Schemas of core/v1 types (field names, types, merge keys) for the served kinds.

Types kcore does not model field by field (affinity, rarely used volume
sources, ephemeral containers) are free-form (`*`): accepted and kept as given.
"""
from kcore.api.schema import define

C = "io.k8s.api.core.v1"


def d(short, desc, fields, kind=None):
    return define(C, short, desc, fields, gvk=("", "v1", kind) if kind else None)


d("ObjectReference", "ObjectReference contains enough information to let you inspect or modify "
  "the referred object.", {"kind": "s", "namespace": "s", "name": "s", "uid": "s",
                           "apiVersion": "s", "resourceVersion": "s", "fieldPath": "s"})
d("LocalObjectReference", "LocalObjectReference contains enough information to let you locate "
  "the referenced object inside the same namespace.", {"name": "s"})
d("ObjectFieldSelector", "ObjectFieldSelector selects an APIVersioned field of an object.",
  {"apiVersion": "s", "fieldPath": "s!"})
d("ResourceFieldSelector", "ResourceFieldSelector represents container resources.",
  {"containerName": "s", "resource": "s!", "divisor": "q"})
d("ConfigMapKeySelector", "Selects a key from a ConfigMap.",
  {"name": "s", "key": "s!", "optional": "b"})
d("SecretKeySelector", "SecretKeySelector selects a key of a Secret.",
  {"name": "s", "key": "s!", "optional": "b"})
d("EnvVarSource", "EnvVarSource represents a source for the value of an EnvVar.", {
    "fieldRef": "ObjectFieldSelector", "resourceFieldRef": "ResourceFieldSelector",
    "configMapKeyRef": "ConfigMapKeySelector", "secretKeyRef": "SecretKeySelector"})
d("EnvVar", "EnvVar represents an environment variable present in a Container.", {
    "name": ("s!", "Name of the environment variable."),
    "value": ("s", "Variable references $(VAR_NAME) are expanded using the previously defined "
              "environment variables in the container."),
    "valueFrom": "EnvVarSource"})
d("ConfigMapEnvSource", "ConfigMapEnvSource selects a ConfigMap to populate the environment.",
  {"name": "s", "optional": "b"})
d("SecretEnvSource", "SecretEnvSource selects a Secret to populate the environment.",
  {"name": "s", "optional": "b"})
d("EnvFromSource", "EnvFromSource represents the source of a set of ConfigMaps or Secrets.",
  {"prefix": "s", "configMapRef": "ConfigMapEnvSource", "secretRef": "SecretEnvSource"})
d("ResourceClaim", "ResourceClaim references one entry in PodSpec.ResourceClaims.",
  {"name": "s!", "request": "s"})
d("ResourceRequirements", "ResourceRequirements describes the compute resource requirements.", {
    "limits": ("{q}", "Limits describes the maximum amount of compute resources allowed."),
    "requests": ("{q}", "Requests describes the minimum amount of compute resources "
                 "required."),
    "claims": "[ResourceClaim]"})
d("ContainerPort", "ContainerPort represents a network port in a single container.", {
    "name": "s", "hostPort": "i", "containerPort": ("i!", "Number of port to expose on the "
                                                    "pod's IP address."),
    "protocol": "s", "hostIP": "s"})
d("VolumeMount", "VolumeMount describes a mounting of a Volume within a container.", {
    "name": "s!", "readOnly": "b", "recursiveReadOnly": "s", "mountPath": "s!", "subPath": "s",
    "mountPropagation": "s", "subPathExpr": "s"})
d("VolumeDevice", "volumeDevice describes a mapping of a raw block device within a container.",
  {"name": "s!", "devicePath": "s!"})
d("ContainerResizePolicy", "ContainerResizePolicy represents resource resize policy.",
  {"resourceName": "s!", "restartPolicy": "s!"})
d("ExecAction", "ExecAction describes a \"run in container\" action.", {"command": "[s]"})
d("HTTPHeader", "HTTPHeader describes a custom header to be used in HTTP probes",
  {"name": "s!", "value": "s!"})
d("HTTPGetAction", "HTTPGetAction describes an action based on HTTP Get requests.", {
    "path": "s", "port": "ios!", "host": "s", "scheme": "s", "httpHeaders": "[HTTPHeader]"})
d("TCPSocketAction", "TCPSocketAction describes an action based on opening a socket",
  {"port": "ios!", "host": "s"})
d("GRPCAction", "GRPCAction specifies an action involving a GRPC service.",
  {"port": "i!", "service": "s"})
d("SleepAction", "SleepAction describes a \"sleep\" action.", {"seconds": "l!"})
d("Probe", "Probe describes a health check to be performed against a container.", {
    "exec": "ExecAction", "httpGet": "HTTPGetAction", "tcpSocket": "TCPSocketAction",
    "grpc": "GRPCAction", "initialDelaySeconds": "i", "timeoutSeconds": "i",
    "periodSeconds": "i", "successThreshold": "i", "failureThreshold": "i",
    "terminationGracePeriodSeconds": "l"})
d("LifecycleHandler", "LifecycleHandler defines a specific action that should be taken in a "
  "lifecycle hook.", {"exec": "ExecAction", "httpGet": "HTTPGetAction",
                      "tcpSocket": "TCPSocketAction", "sleep": "SleepAction"})
d("Lifecycle", "Lifecycle describes actions that the management system should take in response "
  "to container lifecycle events.", {"postStart": "LifecycleHandler",
                                     "preStop": "LifecycleHandler", "stopSignal": "s"})
d("Capabilities", "Adds and removes POSIX capabilities from running containers.",
  {"add": "[s]", "drop": "[s]"})
d("SELinuxOptions", "SELinuxOptions are the labels to be applied to the container",
  {"user": "s", "role": "s", "type": "s", "level": "s"})
d("SeccompProfile", "SeccompProfile defines a pod/container's seccomp profile settings.",
  {"type": "s!", "localhostProfile": "s"})
d("AppArmorProfile", "AppArmorProfile defines a pod or container's AppArmor settings.",
  {"type": "s!", "localhostProfile": "s"})
d("SecurityContext", "SecurityContext holds security configuration that will be applied to a "
  "container.", {
      "capabilities": "Capabilities", "privileged": "b", "seLinuxOptions": "SELinuxOptions",
      "windowsOptions": "*", "runAsUser": "l", "runAsGroup": "l", "runAsNonRoot": "b",
      "readOnlyRootFilesystem": "b", "allowPrivilegeEscalation": "b", "procMount": "s",
      "seccompProfile": "SeccompProfile", "appArmorProfile": "AppArmorProfile"})
d("Container", "A single application container that you want to run within a pod.", {
    "name": ("s!", "Name of the container specified as a DNS_LABEL."),
    "image": ("s", "Container image name."),
    "command": ("[s]", "Entrypoint array. Not executed within a shell."),
    "args": ("[s]", "Arguments to the entrypoint."),
    "workingDir": ("s", "Container's working directory."),
    "ports": ("[ContainerPort]@containerPort", "List of ports to expose from the container."),
    "envFrom": "[EnvFromSource]",
    "env": ("[EnvVar]@name", "List of environment variables to set in the container."),
    "resources": ("ResourceRequirements", "Compute Resources required by this container."),
    "resizePolicy": "[ContainerResizePolicy]",
    "restartPolicy": "s",
    "volumeMounts": ("[VolumeMount]@mountPath", "Pod volumes to mount into the container's "
                     "filesystem."),
    "volumeDevices": "[VolumeDevice]@devicePath",
    "livenessProbe": "Probe", "readinessProbe": "Probe", "startupProbe": "Probe",
    "lifecycle": "Lifecycle",
    "terminationMessagePath": "s", "terminationMessagePolicy": "s",
    "imagePullPolicy": ("s", "Image pull policy. One of Always, Never, IfNotPresent."),
    "securityContext": "SecurityContext",
    "stdin": "b", "stdinOnce": "b", "tty": "b"})
d("KeyToPath", "Maps a string key to a path within a volume.",
  {"key": "s!", "path": "s!", "mode": "i"})
d("HostPathVolumeSource", "Represents a host path mapped into a pod.",
  {"path": "s!", "type": "s"})
d("EmptyDirVolumeSource", "Represents an empty directory for a pod.",
  {"medium": "s", "sizeLimit": "q"})
d("SecretVolumeSource", "Adapts a Secret into a volume.", {
    "secretName": "s", "items": "[KeyToPath]", "defaultMode": "i", "optional": "b"})
d("ConfigMapVolumeSource", "Adapts a ConfigMap into a volume.", {
    "name": "s", "items": "[KeyToPath]", "defaultMode": "i", "optional": "b"})
d("PersistentVolumeClaimVolumeSource", "References the user's PVC in the same namespace.",
  {"claimName": "s!", "readOnly": "b"})
d("NFSVolumeSource", "Represents an NFS mount that lasts the lifetime of a pod.",
  {"server": "s!", "path": "s!", "readOnly": "b"})
_VOLUME = {"name": ("s!", "name of the volume. Must be a DNS_LABEL and unique within the pod."),
           "hostPath": "HostPathVolumeSource", "emptyDir": "EmptyDirVolumeSource",
           "secret": "SecretVolumeSource", "configMap": "ConfigMapVolumeSource",
           "persistentVolumeClaim": "PersistentVolumeClaimVolumeSource",
           "nfs": "NFSVolumeSource"}
for _src in ("projected", "downwardAPI", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
             "iscsi", "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc",
             "azureFile", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk",
             "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral", "image"):
    _VOLUME[_src] = "*"
d("Volume", "Volume represents a named volume in a pod that may be accessed by any container "
  "in the pod.", _VOLUME)
d("Toleration", "The pod this Toleration is attached to tolerates any taint that matches the "
  "triple <key,value,effect>.", {"key": "s", "operator": "s", "value": "s", "effect": "s",
                                 "tolerationSeconds": "l"})
d("Sysctl", "Sysctl defines a kernel parameter to be set", {"name": "s!", "value": "s!"})
d("PodSecurityContext", "PodSecurityContext holds pod-level security attributes.", {
    "seLinuxOptions": "SELinuxOptions", "windowsOptions": "*", "runAsUser": "l",
    "runAsGroup": "l", "runAsNonRoot": "b", "supplementalGroups": "[l]",
    "supplementalGroupsPolicy": "s", "fsGroup": "l", "sysctls": "[Sysctl]",
    "fsGroupChangePolicy": "s", "seccompProfile": "SeccompProfile",
    "appArmorProfile": "AppArmorProfile", "seLinuxChangePolicy": "s"})
d("PodDNSConfigOption", "PodDNSConfigOption defines DNS resolver options of a pod.",
  {"name": "s", "value": "s"})
d("PodDNSConfig", "PodDNSConfig defines the DNS parameters of a pod.", {
    "nameservers": "[s]", "searches": "[s]", "options": "[PodDNSConfigOption]"})
d("HostAlias", "HostAlias holds the mapping between IP and hostnames.",
  {"ip": "s!", "hostnames": "[s]"})
d("PodReadinessGate", "PodReadinessGate contains the reference to a pod condition",
  {"conditionType": "s!"})
d("PodOS", "PodOS defines the OS parameters of a pod.", {"name": "s!"})
d("PodSchedulingGate", "PodSchedulingGate is associated to a Pod to guard its scheduling.",
  {"name": "s!"})
d("PodSpec", "PodSpec is a description of a pod.", {
    "volumes": ("[Volume]@name+retainKeys", "List of volumes that can be mounted by containers "
                "belonging to the pod."),
    "initContainers": ("[Container]@name", "List of initialization containers belonging to "
                       "the pod."),
    "containers": ("[Container]@name!", "List of containers belonging to the pod."),
    "ephemeralContainers": "[*]@name",
    "restartPolicy": ("s", "Restart policy for all containers within the pod. One of Always, "
                      "OnFailure, Never."),
    "terminationGracePeriodSeconds": ("l", "Optional duration in seconds the pod needs to "
                                      "terminate gracefully."),
    "activeDeadlineSeconds": "l",
    "dnsPolicy": "s",
    "nodeSelector": ("{s}", "NodeSelector is a selector which must be true for the pod to fit "
                     "on a node."),
    "serviceAccountName": "s", "serviceAccount": "s", "automountServiceAccountToken": "b",
    "nodeName": ("s", "NodeName indicates in which node this pod is scheduled."),
    "hostNetwork": "b", "hostPID": "b", "hostIPC": "b", "shareProcessNamespace": "b",
    "securityContext": "PodSecurityContext",
    "imagePullSecrets": "[LocalObjectReference]@name",
    "hostname": "s", "subdomain": "s",
    "affinity": ("*", "If specified, the pod's scheduling constraints"),
    "schedulerName": "s",
    "tolerations": ("[Toleration]", "If specified, the pod's tolerations."),
    "hostAliases": "[HostAlias]@ip",
    "priorityClassName": "s", "priority": "i",
    "dnsConfig": "PodDNSConfig",
    "readinessGates": "[PodReadinessGate]",
    "runtimeClassName": "s", "enableServiceLinks": "b", "preemptionPolicy": "s",
    "overhead": "{q}",
    "topologySpreadConstraints": "[*]@topologyKey",
    "setHostnameAsFQDN": "b", "os": "PodOS", "hostUsers": "b",
    "schedulingGates": "[PodSchedulingGate]@name",
    "resourceClaims": "[*]@name+retainKeys",
    "resources": "ResourceRequirements"})
d("PodCondition", "PodCondition contains details for the current condition of this pod.", {
    "type": "s!", "observedGeneration": "l", "status": "s!", "lastProbeTime": "t",
    "lastTransitionTime": "t", "reason": "s", "message": "s"})
d("ContainerStateWaiting", "ContainerStateWaiting is a waiting state of a container.",
  {"reason": "s", "message": "s"})
d("ContainerStateRunning", "ContainerStateRunning is a running state of a container.",
  {"startedAt": "t"})
d("ContainerStateTerminated", "ContainerStateTerminated is a terminated state of a container.", {
    "exitCode": "i!", "signal": "i", "reason": "s", "message": "s", "startedAt": "t",
    "finishedAt": "t", "containerID": "s"})
d("ContainerState", "ContainerState holds a possible state of container.", {
    "waiting": "ContainerStateWaiting", "running": "ContainerStateRunning",
    "terminated": "ContainerStateTerminated"})
d("ContainerStatus", "ContainerStatus contains details for the current status of this "
  "container.", {
      "name": "s!", "state": "ContainerState", "lastState": "ContainerState", "ready": "b!",
      "restartCount": "i!", "image": "s!", "imageID": "s!", "containerID": "s", "started": "b",
      "allocatedResources": "{q}", "resources": "ResourceRequirements",
      "volumeMounts": "[*]", "user": "*", "allocatedResourcesStatus": "[*]",
      "stopSignal": "s"})
d("PodIP", "PodIP represents a single IP address allocated to the pod.", {"ip": "s!"})
d("HostIP", "HostIP represents a single IP address allocated to the host.", {"ip": "s!"})
d("PodStatus", "PodStatus represents information about the status of a pod.", {
    "observedGeneration": "l",
    "phase": ("s", "The phase of a Pod: Pending, Running, Succeeded, Failed or Unknown."),
    "conditions": ("[PodCondition]@type", "Current service state of pod."),
    "message": "s", "reason": "s", "nominatedNodeName": "s",
    "hostIP": "s", "hostIPs": "[HostIP]@ip", "podIP": "s", "podIPs": "[PodIP]@ip",
    "startTime": "t", "initContainerStatuses": "[ContainerStatus]",
    "containerStatuses": "[ContainerStatus]", "qosClass": "s",
    "ephemeralContainerStatuses": "[ContainerStatus]", "resize": "s",
    "resourceClaimStatuses": "[*]@name+retainKeys"})
d("Pod", "Pod is a collection of containers that can run on a host. This resource is created "
  "by clients and scheduled onto hosts.", {
      "apiVersion": ("s", "APIVersion defines the versioned schema of this representation of "
                     "an object."),
      "kind": ("s", "Kind is a string value representing the REST resource this object "
               "represents."),
      "metadata": ("ObjectMeta", "Standard object's metadata."),
      "spec": ("PodSpec", "Specification of the desired behavior of the pod."),
      "status": ("PodStatus", "Most recently observed status of the pod.")}, "Pod")
d("PodTemplateSpec", "PodTemplateSpec describes the data a pod should have when created from a "
  "template", {"metadata": "ObjectMeta", "spec": "PodSpec"})
d("Binding", "Binding ties one object to another; for example, a pod is bound to a node by a "
  "scheduler.", {"apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
                 "target": "ObjectReference!"}, "Binding")
# nodes
d("Taint", "The node this Taint is attached to has the \"effect\" on any pod that does not "
  "tolerate the Taint.", {"key": "s!", "value": "s", "effect": "s!", "timeAdded": "t"})
d("NodeSpec", "NodeSpec describes the attributes that a node is created with.", {
    "podCIDR": "s", "podCIDRs": "[s]@", "providerID": "s",
    "unschedulable": ("b", "Unschedulable controls node schedulability of new pods."),
    "taints": ("[Taint]", "If specified, the node's taints."), "configSource": "*",
    "externalID": "s"})
d("NodeCondition", "NodeCondition contains condition information for a node.", {
    "type": "s!", "status": "s!", "lastHeartbeatTime": "t", "lastTransitionTime": "t",
    "reason": "s", "message": "s"})
d("NodeAddress", "NodeAddress contains information for the node's address.",
  {"type": "s!", "address": "s!"})
d("DaemonEndpoint", "DaemonEndpoint contains information about a single Daemon endpoint.",
  {"Port": "i!"})
d("NodeDaemonEndpoints", "NodeDaemonEndpoints lists ports opened by daemons running on the Node.",
  {"kubeletEndpoint": "DaemonEndpoint"})
d("NodeSystemInfo", "NodeSystemInfo is a set of ids/uuids to uniquely identify the node.", {
    "machineID": "s!", "systemUUID": "s!", "bootID": "s!", "kernelVersion": "s!",
    "osImage": "s!", "containerRuntimeVersion": "s!", "kubeletVersion": "s!",
    "kubeProxyVersion": "s!", "operatingSystem": "s!", "architecture": "s!", "swap": "*"})
d("ContainerImage", "Describe a container image", {"names": "[s]", "sizeBytes": "l"})
d("NodeStatus", "NodeStatus is information about the current status of a node.", {
    "capacity": ("{q}", "Capacity represents the total resources of a node."),
    "allocatable": ("{q}", "Allocatable represents the resources of a node that are available "
                    "for scheduling."),
    "phase": "s",
    "conditions": ("[NodeCondition]@type", "Conditions is an array of current observed node "
                   "conditions."),
    "addresses": ("[NodeAddress]@type", "List of addresses reachable to the node."),
    "daemonEndpoints": "NodeDaemonEndpoints", "nodeInfo": "NodeSystemInfo",
    "images": "[ContainerImage]", "volumesInUse": "[s]", "volumesAttached": "[*]",
    "config": "*", "runtimeHandlers": "[*]", "features": "*"})
d("Node", "Node is a worker node in Kubernetes.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
    "spec": ("NodeSpec", "Spec defines the behavior of a node."),
    "status": ("NodeStatus", "Most recently observed status of the node.")}, "Node")
# services
d("ServicePort", "ServicePort contains information on service's port.", {
    "name": "s", "protocol": "s", "appProtocol": "s",
    "port": ("i!", "The port that will be exposed by this service."),
    "targetPort": ("ios", "Number or name of the port to access on the pods targeted by the "
                   "service."),
    "nodePort": "i"})
d("ServiceSpec", "ServiceSpec describes the attributes that a user creates on a service.", {
    "ports": ("[ServicePort]@port", "The list of ports that are exposed by this service."),
    "selector": ("{s}", "Route service traffic to pods with label keys and values matching "
                 "this selector."),
    "clusterIP": "s", "clusterIPs": "[s]",
    "type": ("s", "type determines how the Service is exposed: ExternalName, ClusterIP, "
             "NodePort, and LoadBalancer."),
    "externalIPs": "[s]", "sessionAffinity": "s", "loadBalancerIP": "s",
    "loadBalancerSourceRanges": "[s]", "externalName": "s", "externalTrafficPolicy": "s",
    "healthCheckNodePort": "i", "publishNotReadyAddresses": "b",
    "sessionAffinityConfig": "*", "ipFamilies": "[s]", "ipFamilyPolicy": "s",
    "allocateLoadBalancerNodePorts": "b", "loadBalancerClass": "s",
    "internalTrafficPolicy": "s", "trafficDistribution": "s"})
d("LoadBalancerStatus", "LoadBalancerStatus represents the status of a load-balancer.",
  {"ingress": "[*]"})
d("ServiceStatus", "ServiceStatus represents the current status of a service.", {
    "loadBalancer": "LoadBalancerStatus",
    "conditions": "[io.k8s.apimachinery.pkg.apis.meta.v1.Condition]@type"})
d("Service", "Service is a named abstraction of software service (for example, mysql) "
  "consisting of local port (for example 3306) that the proxy listens on, and the selector "
  "that determines which pods will answer requests sent through the proxy.", {
      "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
      "spec": ("ServiceSpec", "Spec defines the behavior of a service."),
      "status": "ServiceStatus"}, "Service")
d("EndpointAddress", "EndpointAddress is a tuple that describes single IP address.", {
    "ip": "s!", "hostname": "s", "nodeName": "s", "targetRef": "ObjectReference"})
d("EndpointPort", "EndpointPort is a tuple that describes a single port.", {
    "name": "s", "port": "i!", "protocol": "s", "appProtocol": "s"})
d("EndpointSubset", "EndpointSubset is a group of addresses with a common set of ports.", {
    "addresses": "[EndpointAddress]", "notReadyAddresses": "[EndpointAddress]",
    "ports": "[EndpointPort]"})
d("Endpoints", "Endpoints is a collection of endpoints that implement the actual service.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
    "subsets": ("[EndpointSubset]", "The set of all endpoints is the union of all subsets.")},
  "Endpoints")
# replication controllers
d("ReplicationControllerSpec", "ReplicationControllerSpec is the specification of a "
  "replication controller.", {
      "replicas": ("i", "Replicas is the number of desired replicas."),
      "minReadySeconds": "i",
      "selector": ("{s}", "Selector is a label query over pods that should match the Replicas "
                   "count."),
      "template": ("PodTemplateSpec", "Template is the object that describes the pod that "
                   "will be created if insufficient replicas are detected.")})
d("ReplicationControllerCondition", "ReplicationControllerCondition describes the state of a "
  "replication controller at a certain point.", {
      "type": "s!", "status": "s!", "lastTransitionTime": "t", "reason": "s", "message": "s"})
d("ReplicationControllerStatus", "ReplicationControllerStatus represents the current status of "
  "a replication controller.", {
      "replicas": "i!", "fullyLabeledReplicas": "i", "readyReplicas": "i",
      "availableReplicas": "i", "observedGeneration": "l",
      "conditions": "[ReplicationControllerCondition]@type"})
d("ReplicationController", "ReplicationController represents the configuration of a "
  "replication controller.", {
      "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
      "spec": "ReplicationControllerSpec", "status": "ReplicationControllerStatus"},
  "ReplicationController")
d("ServiceAccount", "ServiceAccount binds together: a name, understood by users, and perhaps "
  "by peripheral systems, for an identity; a principal that can be authenticated and "
  "authorized; a set of secrets", {
      "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
      "secrets": "[ObjectReference]@name", "imagePullSecrets": "[LocalObjectReference]",
      "automountServiceAccountToken": "b"}, "ServiceAccount")
d("Secret", "Secret holds secret data of a certain type.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
    "data": ("{bytes}", "Data contains the secret data, base64 encoded."),
    "stringData": "{s}", "type": "s", "immutable": "b"}, "Secret")
d("ConfigMap", "ConfigMap holds configuration data for pods to consume.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
    "data": ("{s}", "Data contains the configuration data."),
    "binaryData": "{bytes}", "immutable": "b"}, "ConfigMap")
d("ResourceQuotaSpec", "ResourceQuotaSpec defines the desired hard limits to enforce for "
  "Quota.", {"hard": ("{q}", "hard is the set of desired hard limits for each named "
                      "resource."),
             "scopes": "[s]", "scopeSelector": "*"})
d("ResourceQuotaStatus", "ResourceQuotaStatus defines the enforced hard limits and observed "
  "use.", {"hard": "{q}", "used": "{q}"})
d("ResourceQuota", "ResourceQuota sets aggregate quota restrictions enforced per namespace", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta", "spec": "ResourceQuotaSpec",
    "status": "ResourceQuotaStatus"}, "ResourceQuota")
d("LimitRangeItem", "LimitRangeItem defines a min/max usage limit for any resource that "
  "matches on kind.", {"type": "s!", "max": "{q}", "min": "{q}", "default": "{q}",
                       "defaultRequest": "{q}", "maxLimitRequestRatio": "{q}"})
d("LimitRangeSpec", "LimitRangeSpec defines a min/max usage limit for resources that match on "
  "kind.", {"limits": "[LimitRangeItem]!"})
d("LimitRange", "LimitRange sets resource usage limits for each kind of resource in a "
  "Namespace.", {"apiVersion": "s", "kind": "s", "metadata": "ObjectMeta",
                 "spec": "LimitRangeSpec"}, "LimitRange")
d("EventSource", "EventSource contains information for an event.", {"component": "s",
                                                                     "host": "s"})
d("EventSeries", "EventSeries contain information on series of events.",
  {"count": "i", "lastObservedTime": "mt"})
d("Event", "Event is a report of an event somewhere in the cluster.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta!",
    "involvedObject": ("ObjectReference!", "The object that this event is about."),
    "reason": "s", "message": "s", "source": "EventSource", "firstTimestamp": "t",
    "lastTimestamp": "t", "count": "i", "type": "s", "eventTime": "mt", "series": "EventSeries",
    "action": "s", "related": "ObjectReference", "reportingComponent": "s",
    "reportingInstance": "s"}, "Event")
d("NamespaceSpec", "NamespaceSpec describes the attributes on a Namespace.",
  {"finalizers": "[s]"})
d("NamespaceCondition", "NamespaceCondition contains details about state of namespace.", {
    "type": "s!", "status": "s!", "lastTransitionTime": "t", "reason": "s", "message": "s"})
d("NamespaceStatus", "NamespaceStatus is information about the current status of a Namespace.",
  {"phase": "s", "conditions": "[NamespaceCondition]@type"})
d("Namespace", "Namespace provides a scope for Names. Use of multiple namespaces is optional.", {
    "apiVersion": "s", "kind": "s", "metadata": "ObjectMeta", "spec": "NamespaceSpec",
    "status": "NamespaceStatus"}, "Namespace")
