//! [`Validate`] for every kind the API serves.

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Secret, Service,
};

use super::{FieldError, Validate};

macro_rules! no_checks_yet {
    ($($kind:ty),*) => {$(
        impl Validate for $kind {
            fn validate(&self) -> Vec<FieldError> {
                Vec::new()
            }
        }
    )*};
}

no_checks_yet!(
    Pod, Node, Service, Endpoints, Namespace, ReplicationController, Event, ConfigMap, Secret,
    PersistentVolume, PersistentVolumeClaim, ReplicaSet, Deployment, DaemonSet, StatefulSet,
    ControllerRevision, Job, CronJob, Lease
);
