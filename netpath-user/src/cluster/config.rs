//! How a node joins the others: etcd's URLs, the node's name and underlay address, TLS;
//! checked before any connection.
use std::{net::IpAddr, path::PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};

use super::ClusterError;

/// How this node joins the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// This node's name (unique among the nodes).
    pub node_name: String,
    /// Every key lives under this prefix.
    pub prefix: String,
    /// The address other nodes reach this one at (IPv4 or IPv6).
    pub underlay: IpAddr,
    pub tls: TlsFiles,
}

/// TLS for etcd: the CA that signed its certificate, and this node's own certificate and
/// key when etcd asks clients for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClusterConfig {
    /// Refuses what cannot work before any connection: no endpoint, a name that is no name,
    /// TLS files unreadable or half given.
    pub fn check(&self) -> Result<(), String> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--etcd needs at least one URL".into());
        }
        if !crate::model::valid_name(&self.node_name) {
            return Err(format!(
                "invalid node name {:?}: letters, digits, '.', '_' and '-', up to 64",
                self.node_name
            ));
        }
        tls_options(&self.tls)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// TLS options from the files given (none when no file is).
pub(super) fn tls_options(files: &TlsFiles) -> Result<Option<TlsOptions>, ClusterError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| ClusterError::Read(p.clone(), e));
    if files.ca.is_none() && files.cert.is_none() && files.key.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => return Err(ClusterError::HalfIdentity),
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_are_checked_before_any_connection() {
        let half = TlsFiles {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            tls_options(&half),
            Err(ClusterError::HalfIdentity)
        ));
        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = tls_options(&missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(tls_options(&TlsFiles::default()).unwrap().is_none());
    }
}
