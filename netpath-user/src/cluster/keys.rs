//! The keys of one prefix, and what a key is.
use std::net::Ipv4Addr;

/// The keys of one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Where the nodes are registered (a prefix: ends with `/`).
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}{name}", self.nodes())
    }

    /// Every key of the prefix (a prefix).
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// Where overlay networks are (a prefix).
    pub fn networks(&self) -> String {
        format!("{}/networks/", self.prefix)
    }

    pub fn network(&self, name: &str) -> String {
        format!("{}{name}", self.networks())
    }

    /// Where addresses on overlay networks are taken (a prefix).
    pub fn endpoints(&self) -> String {
        format!("{}/endpoints/", self.prefix)
    }

    /// The addresses taken on one network (a prefix).
    pub fn endpoints_of(&self, network: &str) -> String {
        format!("{}{network}/", self.endpoints())
    }

    pub fn endpoint(&self, network: &str, ip: Ipv4Addr) -> String {
        format!("{}{ip}", self.endpoints_of(network))
    }

    /// Where network policies are (a prefix).
    pub fn policies(&self) -> String {
        format!("{}/policies/", self.prefix)
    }

    /// A policy by `NAMESPACE/NAME`.
    pub fn policy(&self, key: &str) -> String {
        format!("{}{key}", self.policies())
    }

    /// Where namespaces' labels are (a prefix).
    pub fn namespaces(&self) -> String {
        format!("{}/namespaces/", self.prefix)
    }

    pub fn namespace(&self, name: &str) -> String {
        format!("{}{name}", self.namespaces())
    }
}

/// What one key of the prefix is.
pub(super) enum Entry<'a> {
    Node(&'a str),
    Network(&'a str),
    Endpoint(&'a str),
    /// A policy by `NAMESPACE/NAME`.
    Policy(&'a str),
    Namespace(&'a str),
    Other,
}

impl Keys {
    pub(super) fn entry<'a>(&self, key: &'a str) -> Entry<'a> {
        let Some(rest) = key.strip_prefix(self.root().as_str()) else {
            return Entry::Other;
        };
        if let Some(n) = rest.strip_prefix("nodes/") {
            Entry::Node(n)
        } else if let Some(n) = rest.strip_prefix("networks/") {
            Entry::Network(n)
        } else if let Some(e) = rest.strip_prefix("endpoints/") {
            Entry::Endpoint(e)
        } else if let Some(p) = rest.strip_prefix("policies/") {
            Entry::Policy(p)
        } else if let Some(n) = rest.strip_prefix("namespaces/") {
            Entry::Namespace(n)
        } else {
            Entry::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("/netpath/");
        assert_eq!(k.nodes(), "/netpath/nodes/");
        assert_eq!(k.node("n1"), "/netpath/nodes/n1");
        assert_eq!(k.network("web"), "/netpath/networks/web");
        assert_eq!(
            k.endpoint("web", Ipv4Addr::new(10, 0, 0, 2)),
            "/netpath/endpoints/web/10.0.0.2"
        );
        assert!(matches!(
            k.entry("/netpath/endpoints/web/10.0.0.2"),
            Entry::Endpoint("web/10.0.0.2")
        ));
        assert!(matches!(k.entry("/netpath/nodes/n1"), Entry::Node("n1")));
        assert_eq!(k.policy("shop/db"), "/netpath/policies/shop/db");
        assert!(matches!(
            k.entry("/netpath/policies/shop/db"),
            Entry::Policy("shop/db")
        ));
        assert!(matches!(
            k.entry(&k.namespace("shop")),
            Entry::Namespace("shop")
        ));
        assert!(matches!(k.entry("/other/nodes/n1"), Entry::Other));
    }
}
