//! The core's errors: what went wrong with a request the agent carried out or refused, said by
//! what kind of failure it is, never by how a transport says it. The agent returns
//! [`AgentError`]; the HTTP API maps each [`Kind`] to a status (`api/mod.rs`), Docker's plugin
//! and the CNI plugin to theirs. Every message is one line and repeats at most `ECHO_MAX`
//! characters of what was refused ([`crate::model::echo`]).
use crate::{
    cluster::OverlayError,
    datapath::DatapathError,
    model::ModelError,
    netlink::{netns::NetnsError, NetError},
};

/// What kind of failure an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// What the request names does not exist.
    NotFound,
    /// The request clashes with what exists (a name, an address, a use).
    Conflict,
    /// The request itself is wrong.
    Invalid,
    /// Something the request needs is away for now (etcd): the same request may pass later.
    Unavailable,
    /// The agent or the kernel failed.
    Internal,
}

/// Why the agent refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// The request is wrong in a way planning does not see (the agent's own namespace, an
    /// overlay network asked of a node on its own).
    #[error("{0}")]
    Invalid(String),
    /// This node is on its own and the request is about the cluster.
    #[error("this node is on its own: start the agent with --etcd URL to join others")]
    NotInCluster,
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// A request wrong in a way planning does not see, said in one line.
    pub fn invalid(msg: impl Into<String>) -> AgentError {
        AgentError::Invalid(msg.into())
    }

    /// An internal failure, said in one line.
    pub fn internal(msg: impl std::fmt::Display) -> AgentError {
        AgentError::Internal(msg.to_string())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            AgentError::Model(e) => match e {
                ModelError::NoEndpoint(_)
                | ModelError::NoNetwork(_)
                | ModelError::NoPolicy(_)
                | ModelError::NoLabel(..) => Kind::NotFound,
                ModelError::EndpointExists(_)
                | ModelError::NetnsInUse(..)
                | ModelError::Alloc(_)
                | ModelError::NetworkExists(_)
                | ModelError::Overlap(..)
                | ModelError::NetworkInUse(..)
                | ModelError::AlreadyConnected(..) => Kind::Conflict,
                _ => Kind::Invalid,
            },
            AgentError::Overlay(e) => match e {
                OverlayError::Unreachable(_) | OverlayError::Etcd(_) => Kind::Unavailable,
                OverlayError::Gone(_) => Kind::NotFound,
                _ => Kind::Conflict,
            },
            AgentError::Netns(NetnsError::Missing(_)) => Kind::NotFound,
            AgentError::Netns(NetnsError::NotNetns(..)) | AgentError::Invalid(_) => Kind::Invalid,
            AgentError::NotInCluster => Kind::Conflict,
            AgentError::Net(_) | AgentError::Datapath(_) | AgentError::Internal(_) => {
                Kind::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_says_its_kind() {
        assert_eq!(
            AgentError::from(ModelError::NoNetwork("n".into())).kind(),
            Kind::NotFound
        );
        assert_eq!(
            AgentError::from(ModelError::NetworkExists("n".into())).kind(),
            Kind::Conflict
        );
        assert_eq!(
            AgentError::from(OverlayError::Unreachable("x".into())).kind(),
            Kind::Unavailable
        );
        assert_eq!(AgentError::internal("boom").kind(), Kind::Internal);
        assert_eq!(AgentError::NotInCluster.kind(), Kind::Conflict);
    }
}
