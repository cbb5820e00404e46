//! The CNI plugin (`netpath-cni`): the CNI 1.0/1.1 commands as requests to the agent's API,
//! so a runtime that speaks CNI (Podman's CNI backend, containerd and nerdctl, Kubernetes)
//! puts its containers on netpath networks, with the same datapath as the CLI and Docker.
//!
//! A container is one netpath endpoint; each CNI network it joins is one of its attachments
//! (the first `ADD` creates the endpoint in `CNI_NETNS`, later ones connect it), named
//! `CNI_IFNAME`. The network configuration names the netpath network (`network`, else the
//! configuration's `name`) and the agent's socket (`socket`). Runtime capabilities:
//! `portMappings` (published ports), `ips` (a static address), `mac`.
mod add;
mod conf;
mod lifecycle;

pub use conf::{codes, Attachment, CniError, Env, NetConf, PortMapping, RuntimeConfig};

use serde_json::{json, Value};

use crate::api::client::{Client, ClientError, DEFAULT_SOCKET};

/// The CNI versions this plugin speaks.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The label holding an endpoint's CNI container id.
pub const CONTAINER_LABEL: &str = "cni.containerid";

/// Runs one CNI command; `Ok(Some(result))` is printed on stdout.
pub async fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}),
        ));
    }
    let conf: NetConf = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(codes::DECODE, format!("network configuration: {e}")))?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            codes::INCOMPATIBLE_VERSION,
            format!(
                "netpath-cni speaks CNI {}, not {}",
                SUPPORTED.join(", "),
                conf.cni_version
            ),
        ));
    }
    let client = Client::new(conf.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into()));
    let cni = Cni {
        env,
        conf: &conf,
        client,
    };
    match env.command.as_str() {
        "ADD" => cni.add().await.map(Some),
        "DEL" => cni.del().await.map(|()| None),
        "CHECK" => cni.check().await.map(|()| None),
        "GC" => cni.gc().await.map(|()| None),
        "STATUS" => cni.status().await.map(|()| None),
        "" => Err(CniError::new(codes::INVALID_ENV, "CNI_COMMAND is not set")),
        other => Err(CniError::new(
            codes::INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

struct Cni<'a> {
    env: &'a Env,
    conf: &'a NetConf,
    client: Client,
}

fn from_client(e: ClientError) -> CniError {
    match e {
        ClientError::Connect(..) => CniError::new(codes::TRY_AGAIN, e.to_string()),
        ClientError::Refused(m) => CniError::new(codes::REFUSED, m),
        other => CniError::new(codes::IO, other.to_string()),
    }
}

/// The plugin's `main`: reads the environment and stdin, prints the result or the error,
/// and says by the exit status which it was.
pub fn main() -> std::process::ExitCode {
    use std::io::{IsTerminal, Read};
    let env = Env::from_process();
    let mut stdin = Vec::new();
    let version = |stdin: &[u8]| {
        serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| "1.0.0".into())
    };
    // Runtimes hand every command, VERSION too, its configuration on stdin; only someone
    // asking VERSION by hand at a terminal is not waited for.
    let res = if env.command == "VERSION" && std::io::stdin().is_terminal() {
        Ok(())
    } else {
        std::io::stdin()
            .read_to_end(&mut stdin)
            .map(drop)
            .map_err(|e| CniError::new(codes::IO, format!("reading stdin: {e}")))
    }
    .and_then(|()| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::new(codes::IO, e.to_string()))
    })
    .and_then(|rt| rt.block_on(run(&env, &stdin)));
    match res {
        Ok(Some(out)) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version(&stdin)));
            std::process::ExitCode::FAILURE
        }
    }
}
