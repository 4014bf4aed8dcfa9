//! `target`: which pod (or workload) the process runs as if inside.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

/// Which pod the local process runs as if it were inside, and in which namespace.
///
/// Written as a string (`"pod/api"`, `"deployment/api/container/app"`, `"targetless"`) or as an
/// object `{ "path": ..., "namespace": ... }`, as in mirrord.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// The target: `pod/NAME`, `pod/NAME/container/CONTAINER`, `deployment/NAME`,
    /// `statefulset/NAME`, `rollout/NAME` (each with an optional `/container/C`), or `targetless`.
    /// Also accepted as an object such as `{ "deployment": "api", "container": "app" }`.
    ///
    /// Unset: the IDE asks with a pod picker; the CLI runs targetless.
    /// Env: `TETHER_TARGET` (or `MIRRORD_IMPERSONATED_TARGET`).
    pub path: Option<Target>,

    /// Namespace of the target. Unset: the kube context's namespace.
    /// Env: `TETHER_TARGET_NAMESPACE` (or `MIRRORD_TARGET_NAMESPACE`).
    pub namespace: Option<String>,
}

/// A parsed target path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// No pod: outgoing traffic, DNS and files go through an agent in the namespace, and incoming
    /// traffic cannot be stolen.
    Targetless,
    /// A pod, or the first ready pod of a workload.
    Resource {
        /// The kind of object named.
        kind: TargetType,
        /// Object name.
        name: String,
        /// Container inside the pod; unset means the first container.
        container: Option<String>,
    },
}

/// Kinds of target tether can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// No target pod.
    Targetless,
    /// A pod.
    Pod,
    /// A Deployment (one of its pods).
    Deployment,
    /// A StatefulSet (one of its pods).
    #[serde(rename = "statefulset")]
    StatefulSet,
    /// An Argo Rollout (one of its pods), where the CRD exists.
    Rollout,
}

impl TargetType {
    /// Every target type, in picker order.
    pub const ALL: [TargetType; 5] = [
        TargetType::Targetless,
        TargetType::Pod,
        TargetType::Deployment,
        TargetType::StatefulSet,
        TargetType::Rollout,
    ];

    /// The name used in target strings.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Targetless => "targetless",
            TargetType::Pod => "pod",
            TargetType::Deployment => "deployment",
            TargetType::StatefulSet => "statefulset",
            TargetType::Rollout => "rollout",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "pod" => TargetType::Pod,
            "deployment" => TargetType::Deployment,
            "statefulset" => TargetType::StatefulSet,
            "rollout" => TargetType::Rollout,
            _ => return None,
        })
    }
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// mirrord target kinds that only its operator can serve.
pub(crate) const OPERATOR_TARGET_KINDS: &[&str] =
    &["job", "cronjob", "service", "replicaset", "workflow"];

/// Why a target string or object is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    /// One lowercase line.
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
}

pub(crate) const TARGET_FORMS: &str = "expected `targetless`, `pod/NAME`, `pod/NAME/container/CONTAINER`, \
     `deployment/NAME`, `statefulset/NAME` or `rollout/NAME`";

impl Target {
    /// The kind of target.
    pub fn target_type(&self) -> TargetType {
        match self {
            Target::Targetless => TargetType::Targetless,
            Target::Resource { kind, .. } => *kind,
        }
    }

    /// The object name, unless targetless.
    pub fn name(&self) -> Option<&str> {
        match self {
            Target::Targetless => None,
            Target::Resource { name, .. } => Some(name),
        }
    }

    /// The container, when one is named.
    pub fn container(&self) -> Option<&str> {
        match self {
            Target::Targetless => None,
            Target::Resource { container, .. } => container.as_deref(),
        }
    }

    pub(crate) fn resource(
        kind_name: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<Self, TargetError> {
        let Some(kind) = TargetType::from_name(kind_name) else {
            return Err(unknown_kind(kind_name));
        };
        check_name(kind.as_str(), name)?;
        if let Some(c) = container {
            check_name("container", c)?;
        }
        Ok(Target::Resource {
            kind,
            name: name.to_owned(),
            container: container.map(str::to_owned),
        })
    }
}

fn unknown_kind(kind: &str) -> TargetError {
    if OPERATOR_TARGET_KINDS.contains(&kind) {
        return TargetError {
            message: format!(
                "`{kind}` targets need the mirrord operator, which tether does not have"
            ),
            help: Some("target a pod, deployment, statefulset or rollout instead".into()),
        };
    }
    let names = ["pod", "deployment", "statefulset", "rollout", "targetless"];
    TargetError {
        message: format!("unknown target type `{kind}`"),
        help: Some(match crate::suggest::closest(kind, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => TARGET_FORMS.to_owned(),
        }),
    }
}

/// Kubernetes names: lowercase letters, digits, `-` and `.`, at most 253 characters.
fn check_name(what: &str, name: &str) -> Result<(), TargetError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(TargetError {
            message: format!("invalid {what} name `{name}`"),
            help: Some(
                "Kubernetes names are lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit".into(),
            ),
        })
    }
}

impl FromStr for Target {
    type Err = TargetError;

    /// Parses `targetless` or `KIND/NAME[/container/CONTAINER]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "targetless" {
            return Ok(Target::Targetless);
        }
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [kind, name] => Target::resource(kind, name, None),
            [kind, name, "container", container] => Target::resource(kind, name, Some(container)),
            [kind, ..] if TargetType::from_name(kind).is_none() && parts.len() > 1 => {
                Err(unknown_kind(kind))
            }
            _ => Err(TargetError {
                message: format!("invalid target `{s}`"),
                help: Some(TARGET_FORMS.to_owned()),
            }),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Targetless => f.write_str("targetless"),
            Target::Resource {
                kind,
                name,
                container,
            } => {
                write!(f, "{kind}/{name}")?;
                if let Some(c) = container {
                    write!(f, "/container/{c}")?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Target {
    fn schema_name() -> Cow<'static, str> {
        "Target".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`targetless`, `KIND/NAME` or `KIND/NAME/container/CONTAINER` (KIND is pod, deployment, statefulset or rollout), or an object naming one kind and optionally a container.",
            "anyOf": [
                { "type": "string", "pattern": TARGET_PATTERN },
                {
                    "type": "object",
                    "properties": {
                        "pod": { "type": "string", "description": "Pod name." },
                        "deployment": { "type": "string", "description": "Deployment name." },
                        "statefulset": { "type": "string", "description": "StatefulSet name." },
                        "rollout": { "type": "string", "description": "Argo Rollout name." },
                        "container": { "type": "string", "description": "Container name; unset means the first container." }
                    },
                    "additionalProperties": false,
                    "minProperties": 1
                }
            ]
        })
    }
}

const TARGET_PATTERN: &str = "^(targetless|(pod|deployment|statefulset|rollout)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/container/[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?)$";

/// Schema of the string form only (what `target` itself accepts besides `{path, namespace}`).
pub(crate) struct TargetString;

impl JsonSchema for TargetString {
    fn schema_name() -> Cow<'static, str> {
        "TargetString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`targetless`, `KIND/NAME` or `KIND/NAME/container/CONTAINER`, where KIND is pod, deployment, statefulset or rollout.",
            "type": "string",
            "pattern": TARGET_PATTERN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_target_strings() {
        for s in [
            "targetless",
            "pod/api",
            "pod/api-7d9f/container/app",
            "deployment/api",
            "statefulset/db/container/pg",
            "rollout/web",
        ] {
            let t: Target = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        let t: Target = "deployment/api/container/app".parse().unwrap();
        assert_eq!(t.target_type(), TargetType::Deployment);
        assert_eq!(t.name(), Some("api"));
        assert_eq!(t.container(), Some("app"));
    }

    #[test]
    fn rejects_bad_target_strings() {
        let e = "pods/api".parse::<Target>().unwrap_err();
        assert_eq!(e.message, "unknown target type `pods`");
        assert_eq!(e.help.as_deref(), Some("did you mean `pod`?"));
        let e = "job/x".parse::<Target>().unwrap_err();
        assert_eq!(
            e.message,
            "`job` targets need the mirrord operator, which tether does not have"
        );
        let e = "pod/Api".parse::<Target>().unwrap_err();
        assert_eq!(e.message, "invalid pod name `Api`");
        assert!("pod/a/cont/b".parse::<Target>().is_err());
        assert!("pod/".parse::<Target>().is_err());
        assert!("api".parse::<Target>().is_err());
    }
}
