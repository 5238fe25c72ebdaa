"""Schemas of meta.k8s.io/v1 types shared by every kind."""
from kcore.api.schema import define

M = "io.k8s.apimachinery.pkg.apis.meta.v1"

define(M, "OwnerReference", "OwnerReference contains enough information to let you identify an "
       "owning object.", {
           "apiVersion": ("s!", "API version of the referent."),
           "kind": ("s!", "Kind of the referent."),
           "name": ("s!", "Name of the referent."),
           "uid": ("s!", "UID of the referent."),
           "controller": ("b", "If true, this reference points to the managing controller."),
           "blockOwnerDeletion": "b"})
define(M, "ManagedFieldsEntry", "ManagedFieldsEntry is a workflow-id, a FieldSet and the group "
       "version of the resource that the fieldset applies to.", {
           "apiVersion": "s", "fieldsType": "s", "fieldsV1": "*", "manager": "s",
           "operation": "s", "subresource": "s", "time": "t"})
define(M, "ObjectMeta", "ObjectMeta is metadata that all persisted resources must have, which "
       "includes all objects users must create.", {
           "name": ("s", "Name must be unique within a namespace."),
           "generateName": ("s", "An optional prefix, used by the server, to generate a unique "
                            "name ONLY IF the Name field has not been provided."),
           "namespace": ("s", "Namespace defines the space within which each name must be "
                         "unique."),
           "selfLink": "s",
           "uid": ("s", "UID is the unique in time and space value for this object."),
           "resourceVersion": ("s", "An opaque value that represents the internal version of "
                               "this object."),
           "generation": ("l", "A sequence number representing a specific generation of the "
                          "desired state."),
           "creationTimestamp": ("t", "CreationTimestamp is a timestamp representing the server "
                                 "time when this object was created."),
           "deletionTimestamp": ("t", "DeletionTimestamp is RFC 3339 date and time at which "
                                 "this resource will be deleted."),
           "deletionGracePeriodSeconds": "l",
           "labels": ("{s}", "Map of string keys and values that can be used to organize and "
                      "categorize (scope and select) objects."),
           "annotations": ("{s}", "Annotations is an unstructured key value map stored with a "
                           "resource."),
           "ownerReferences": ("[OwnerReference]@uid", "List of objects depended by this "
                               "object."),
           "finalizers": ("[s]@", "Must be empty before the object is deleted from the "
                          "registry."),
           "managedFields": "[ManagedFieldsEntry]"})
define(M, "ListMeta", "ListMeta describes metadata that synthetic resources must have.", {
    "selfLink": "s", "resourceVersion": "s", "continue": "s", "remainingItemCount": "l"})
define(M, "LabelSelectorRequirement", "A label selector requirement.", {
    "key": "s!", "operator": "s!", "values": "[s]"})
define(M, "LabelSelector", "A label selector is a label query over a set of resources.", {
    "matchLabels": "{s}", "matchExpressions": "[LabelSelectorRequirement]"})
define(M, "Condition", "Condition contains details for one aspect of the current state.", {
    "type": "s!", "status": "s!", "observedGeneration": "l", "lastTransitionTime": "t!",
    "reason": "s!", "message": "s!"})
define(M, "Preconditions", "Preconditions must be fulfilled before an operation is carried out.",
       {"uid": "s", "resourceVersion": "s"})
define(M, "DeleteOptions", "DeleteOptions may be provided when deleting an API object.", {
    "kind": "s", "apiVersion": "s", "gracePeriodSeconds": "l", "preconditions": "Preconditions",
    "orphanDependents": "b", "propagationPolicy": "s", "dryRun": "[s]",
    "ignoreStoreReadErrorWithClusterBreakingPotential": "b"}, gvk=("", "v1", "DeleteOptions"))
define(M, "StatusCause", "StatusCause provides more information about an api.Status failure.", {
    "reason": "s", "message": "s", "field": "s"})
define(M, "StatusDetails", "StatusDetails is a set of additional properties.", {
    "name": "s", "group": "s", "kind": "s", "uid": "s", "causes": "[StatusCause]",
    "retryAfterSeconds": "i"})
define(M, "Status", "Status is a return value for calls that don't return other objects.", {
    "kind": "s", "apiVersion": "s", "metadata": "ListMeta", "status": "s", "message": "s",
    "reason": "s", "details": "StatusDetails", "code": "i"}, gvk=("", "v1", "Status"))
define(M, "WatchEvent", "Event represents a single event to a watched resource.", {
    "type": "s!", "object": "raw!"}, gvk=("", "v1", "WatchEvent"))
define(M, "APIResource", "APIResource specifies the name of a resource.", {
    "name": "s!", "singularName": "s!", "namespaced": "b!", "group": "s", "version": "s",
    "kind": "s!", "verbs": "[s]!", "shortNames": "[s]", "categories": "[s]"})
define(M, "APIResourceList", "APIResourceList is a list of APIResource.", {
    "kind": "s", "apiVersion": "s", "groupVersion": "s!", "resources": "[APIResource]!"})
