//! Selecting by labels, as Kubernetes does: label selectors (matchLabels, matchExpressions),
//! the syntax of label keys and values, names and namespaces (DNS labels) and port names,
//! and the labels every namespace has.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels: key → value.
pub type Labels = BTreeMap<String, String>;

/// A label selector: every label of `labels` and every expression must hold. Empty: every
/// set of labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub labels: Labels,
    pub exprs: Vec<Expr>,
}

/// One `matchExpressions` requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|e| {
                let v = labels.get(&e.key);
                match e.op {
                    Op::In => v.is_some_and(|v| e.values.contains(v)),
                    Op::NotIn => v.is_none_or(|v| !e.values.contains(v)),
                    Op::Exists => v.is_some(),
                    Op::DoesNotExist => v.is_none(),
                }
            })
    }
}

/// A field of a manifest that cannot be used: where, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

pub(super) fn bad<T>(
    field: impl Into<String>,
    message: impl Into<String>,
) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// At most `max` of `[a-z0-9-]`, at least one, a hyphen at neither end.
fn lower_alnum_hyphen(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    (1..=max).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 label: what namespaces and names are.
pub fn valid_dns_label(s: &str) -> bool {
    lower_alnum_hyphen(s, 63)
}

/// A label's name part or value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn valid_label_part(s: &str, empty_ok: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return empty_ok;
    }
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    valid_label_part(name, false)
        && prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(valid_dns_label))
}

/// Labels as a manifest or a flag gives them, each key and value checked.
pub fn check_labels(field: &str, labels: &Labels) -> Result<(), FieldError> {
    for (k, v) in labels {
        if !valid_label_key(k) {
            return bad(format!("{field}.{k}"), "not a valid label key");
        }
        if !valid_label_part(v, true) {
            return bad(
                format!("{field}.{k}"),
                format!("{v:?} is not a valid label value"),
            );
        }
    }
    Ok(())
}

pub(super) fn selector(field: &str, s: &LabelSelector) -> Result<Selector, FieldError> {
    let labels = s.match_labels.clone().unwrap_or_default();
    check_labels(&format!("{field}.matchLabels"), &labels)?;
    let mut exprs = Vec::new();
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if !valid_label_key(&e.key) {
            return bad(
                format!("{at}.key"),
                format!("{:?} is not a valid label key", e.key),
            );
        }
        let op = match e.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            o => {
                return bad(
                    format!("{at}.operator"),
                    format!("{o:?} is not one of In, NotIn, Exists, DoesNotExist"),
                )
            }
        };
        let values = e.values.clone().unwrap_or_default();
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                return bad(format!("{at}.values"), "must be non-empty for In and NotIn")
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                return bad(
                    format!("{at}.values"),
                    "must be empty for Exists and DoesNotExist",
                )
            }
            _ => {}
        }
        if let Some(v) = values.iter().find(|v| !valid_label_part(v, true)) {
            return bad(
                format!("{at}.values"),
                format!("{v:?} is not a valid label value"),
            );
        }
        exprs.push(Expr {
            key: e.key.clone(),
            op,
            values,
        });
    }
    Ok(Selector { labels, exprs })
}

/// An IANA service name: what a named port is.
pub fn valid_port_name(s: &str) -> bool {
    lower_alnum_hyphen(s, 15) && s.bytes().any(|c| c.is_ascii_lowercase()) && !s.contains("--")
}

/// The labels every namespace has: its name under `kubernetes.io/metadata.name`, over
/// what its manifest gave.
pub fn namespace_labels(name: &str, given: Option<&Labels>) -> Labels {
    let mut l = given.cloned().unwrap_or_default();
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    l
}

/// Namespace → its labels (from `Namespace` manifests).
pub type Namespaces = BTreeMap<String, Labels>;
