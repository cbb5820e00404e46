//! kubectl-style manifests: YAML or JSON, several documents to a file, of kinds
//! `NetworkPolicy` (networking.k8s.io/v1) and `Namespace` (v1), read with k8s-openapi's
//! types. A file is taken whole or not at all: the first bad document is named with its
//! field, and nothing of the file is applied.
use k8s_openapi::api::{core::v1::Namespace, networking::v1::NetworkPolicy};
use serde::Deserialize;

use super::{
    select::{check_labels, valid_dns_label, Labels},
    spec::Policy,
};

/// One document of a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    /// A policy, and its manifest as it is kept (its namespace filled in).
    Policy {
        policy: Policy,
        manifest: serde_json::Value,
    },
    /// A namespace's labels.
    Namespace { name: String, labels: Labels },
}

/// Why a file of manifests was refused, in one line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

/// The namespace of a manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

fn text<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_yaml::Value::as_str)
}

/// Reads a typed object, refusing fields the type does not have (k8s-openapi's types
/// skip them; kubectl's server-side validation refuses them).
fn typed<T: for<'de> Deserialize<'de>>(
    value: serde_yaml::Value,
    what: &str,
) -> Result<T, ManifestError> {
    let mut unknown = Vec::new();
    let t = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
        .map_err(|e| ManifestError(format!("{what}: {e}")))?;
    match unknown.first() {
        Some(path) => Err(ManifestError(format!(
            "{what}: {}: unknown field",
            path.replace("?.", "")
        ))),
        None => Ok(t),
    }
}

/// Every document of `text`, in order; empty documents are skipped.
pub fn parse(text_in: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text_in).enumerate() {
        let n = i + 1;
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| ManifestError(format!("document {n}: {e}")))?;
        if value.is_null() {
            continue;
        }
        let kind = text(&value, "kind").unwrap_or_default().to_string();
        let api = text(&value, "apiVersion").unwrap_or_default().to_string();
        let meta = value.get("metadata");
        let name = meta.and_then(|m| text(m, "name")).unwrap_or_default();
        let what = format!("document {n} ({kind} {name:?})");
        match (kind.as_str(), api.as_str()) {
            ("NetworkPolicy", "networking.k8s.io/v1") => {
                let mut np: NetworkPolicy = typed(value, &what)?;
                let ns = np
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
                let policy = Policy::from_k8s(&np, &ns)
                    .map_err(|e| ManifestError(format!("{what}: {}: {}", e.field, e.message)))?;
                np.metadata.namespace = Some(ns);
                let manifest = serde_json::to_value(&np)
                    .map_err(|e| ManifestError(format!("{what}: {e}")))?;
                out.push(Manifest::Policy { policy, manifest });
            }
            ("Namespace", "v1") => {
                let ns: Namespace = typed(value, &what)?;
                let name = ns.metadata.name.clone().unwrap_or_default();
                if !valid_dns_label(&name) {
                    return Err(ManifestError(format!(
                        "{what}: metadata.name: {name:?} is not a valid namespace (a DNS label)"
                    )));
                }
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                check_labels("metadata.labels", &labels)
                    .map_err(|e| ManifestError(format!("{what}: {}: {}", e.field, e.message)))?;
                out.push(Manifest::Namespace { name, labels });
            }
            ("NetworkPolicy", _) | ("Namespace", _) => {
                let want = if kind == "Namespace" { "v1" } else { "networking.k8s.io/v1" };
                return Err(ManifestError(format!(
                    "{what}: apiVersion: {api:?} is not {want}"
                )));
            }
            _ => {
                return Err(ManifestError(format!(
                    "{what}: kind: {kind:?}: netpath applies NetworkPolicy (networking.k8s.io/v1) and Namespace (v1)"
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(ManifestError("no manifests in the input".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        select::Op,
        spec::{Peer, PortRef},
    };

    const GOOD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: db}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [test]}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchLabels: {team: web}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 5432}
    - {protocol: UDP, port: 8000, endPort: 8010}
    - {port: metrics}
---
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "deny-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
"#;

    #[test]
    fn reads_the_whole_v1_spec_in_yaml_and_json() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.len(), 3);
        let Manifest::Namespace { name, labels } = &m[0] else {
            panic!()
        };
        assert_eq!((name.as_str(), labels["team"].as_str()), ("shop", "web"));
        let Manifest::Policy { policy, manifest } = &m[1] else {
            panic!()
        };
        assert_eq!(policy.key(), "shop/db");
        assert_eq!(policy.pods.exprs[0].op, Op::NotIn);
        assert!(policy.egress.is_none(), "no egress rules: Ingress only");
        let rule = &policy.ingress.as_ref().unwrap()[0];
        assert!(matches!(
            &rule.peers[0],
            Peer::Pods {
                pods: Some(_),
                namespaces: Some(_)
            }
        ));
        assert!(matches!(&rule.peers[1], Peer::Block { except, .. } if except.len() == 1));
        assert_eq!(rule.ports[1].end, Some(8010));
        assert_eq!(rule.ports[2].port, Some(PortRef::Name("metrics".into())));
        assert_eq!(manifest["metadata"]["namespace"], "shop");
        let Manifest::Policy { policy, .. } = &m[2] else {
            panic!()
        };
        assert_eq!(policy.key(), "default/deny-egress");
        assert_eq!(policy.ingress, None);
        assert_eq!(policy.egress, Some(Vec::new()), "egress denied");
    }

    #[test]
    fn bad_documents_are_named_with_their_field() {
        let np = |spec: &str| {
            format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec: {spec}\n")
        };
        for (input, want) in [
            ("kind: Pod\napiVersion: v1\nmetadata: {name: x}\n".to_string(), r#"document 1 (Pod "x"): kind: "Pod""#),
            ("apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\n".into(), "apiVersion: \"networking.k8s.io/v1beta1\" is not networking.k8s.io/v1"),
            (np("{podSelector: {}, ingres: []}"), "ingres: unknown field"),
            (np("{podSelector: {matchExpressions: [{key: a, operator: Has}]}}"), "spec.podSelector.matchExpressions[0].operator"),
            (np("{podSelector: {matchExpressions: [{key: a, operator: In}]}}"), "must be non-empty"),
            (np("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]}"), "spec.ingress[0].from[0].ipBlock.cidr"),
            (np("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]}"), "is not inside the block 10.0.0.0/8"),
            (np("{podSelector: {}, ingress: [{from: [{}]}]}"), "must name podSelector"),
            (np("{podSelector: {}, ingress: [{ports: [{port: 70000}]}]}"), "70000 is not a port"),
            (np("{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}"), "spec.ingress[0].ports[0].endPort"),
            (np("{podSelector: {}, ingress: [{ports: [{protocol: SCTP, port: 90}]}]}"), "SCTP is not supported"),
            (np("{podSelector: {}, policyTypes: [Inbound]}"), "spec.policyTypes"),
            ("".into(), "no manifests"),
        ] {
            let err = parse(&input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
