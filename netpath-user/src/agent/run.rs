//! `netpath agent`: the start-up order (lock, host record, state, datapath, reconcile, serve,
//! notify), serving, and shutdown.
use std::{net::IpAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{bail, Context as _};
use tokio::net::UnixListener;
use tracing::info;

use crate::{
    api::server,
    datapath::{Datapath, DatapathOps as _},
    netlink::{self, Netlink},
};

use super::{
    host,
    host::{HostRecord, StateLock},
    memory, metrics, monitor, netns_files, reserved, tasks, Agent, AgentConfig, HostHooks, Shared,
    StateFile, StateStore, GATEWAY_LINK, VXLAN_LINK,
};

/// Runs the agent until SIGINT or SIGTERM. Nothing on the host changes before the state
/// directory is locked and the state read; the sysctls change only once the datapath is up.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    let v = crate::api::VersionView::current();
    info!(
        version = %v.version,
        commit = %v.git_commit,
        ebpf_sha256 = %v.ebpf_sha256,
        features = %v.features.join(","),
        "netpath agent starting"
    );
    let _lock = StateLock::take(&cfg.state_dir)?;
    let mut record = HostRecord::load(&cfg.state_dir)?;
    let netlink = Netlink {
        bridge: GATEWAY_LINK.to_string(),
    };
    let uplinks = if cfg.uplinks.is_empty() {
        vec![netlink::default_route_interface()?
            .context("no default route: name the uplink with --uplink IFACE")?]
    } else {
        cfg.uplinks.clone()
    };
    // Checked before anything is written: a refused flag changes nothing.
    let docker_socket = crate::docker::engine::socket_of(&cfg.docker_host)?.to_path_buf();
    let cluster =
        cluster_config(&cfg, &uplinks)?.map(|c| Arc::new(crate::cluster::Cluster::new(c)));
    let mut store = StateFile::in_dir(&cfg.state_dir);
    let mut state = super::store::load_state(&mut store, &netlink, &cfg)?;
    if let Some(list) = cfg
        .published_from
        .clone()
        .filter(|l| *l != state.published_from)
    {
        info!(published_from = %list, "published ports' firewall from the configuration");
        state.published_from = list;
        store.save(&state)?;
    }
    // Found early, bound late: the socket answers only once the agent serves (readiness).
    refuse_if_served(&cfg.socket)?;
    host::ensure_bpffs(&cfg.bpffs, &mut record)?;
    let _pins = host::PinLock::take(&cfg.bpffs)?;
    // Endpoints' hosts and resolv.conf files go under /etc/netns: made here when the host has
    // none, and recorded, so that uninstall takes it back.
    record.create_dir(netns_files::NetnsFiles::default().root())?;
    record.save(&cfg.state_dir)?;
    let mut dp = Datapath::open(
        Some(&cfg.bpffs),
        cfg.sizes(),
        cfg.reset_flows,
        cfg.ebpf_log.map_or(0, |l| l.aya_log()),
    )
    .context("loading the datapath")?;
    dp.set_new_flow_rate(cfg.new_flows_per_cpu)
        .context("setting the rate of new flows")?;
    let cgroup = match &cfg.cgroup {
        Some(c) => c.clone(),
        None => host::cgroup_root(&cfg.state_dir, &mut record)?,
    };
    record.save(&cfg.state_dir)?;
    let overlay = match &cluster {
        Some(c) => Some(overlay_device(&uplinks[0], c.underlay())?),
        None => None,
    };
    let hooks = HostHooks {
        uplinks: uplinks.iter().map(|u| (u.clone(), cfg.xdp)).collect(),
        cgroup: Some(cgroup),
        netns_cookie: host::netns_cookie()?,
        overlay,
    };
    let events = dp.take_events();
    let kernel_log = dp.take_kernel_log();
    let resolv = Arc::new(crate::dns::upstream::HostResolv::new(
        "/etc/resolv.conf",
        cfg.dns.clone(),
    ));
    let mut agent =
        Agent::new(state, dp, netlink, store, hooks).with_dns(resolv.clone(), cfg.dns_fast_path);
    // The uplinks' addresses first: which ports are one to one depends on them, and a
    // reconcile that did not know them would turn every such port to kept flows and back.
    // Again after: the reconcile may have added the networks' gateways.
    agent.sync_host_addrs()?;
    agent.reconcile()?;
    agent.sync_host_addrs()?;
    let listener = bind_socket(&cfg.socket, cfg.socket_group.as_deref(), &mut record)?;
    let plugin_socket = cfg
        .docker_plugin
        .as_deref()
        .map(|name| crate::docker::socket_path(&cfg.docker_plugin_dir, name));
    let plugin_listener = match &plugin_socket {
        Some(path) => {
            record.add_socket(path);
            Some(bind_socket(path, None, &mut record)?)
        }
        None => None,
    };
    let pools = crate::docker::ipam::Pools::load(&cfg.state_dir)
        .context("reading the Docker IPAM pools")?;
    record.save(&cfg.state_dir)?;
    let metrics_listener = match cfg.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    record.set_sysctl(&cfg.state_dir, host::IP_FORWARD, "1")?;
    // From here on the record is the reserved ports' alone.
    agent
        .reserve_ports(reserved::ReservedPorts::new(&cfg.state_dir, record))
        .map_err(|e| anyhow::anyhow!("holding the published ports: {}", e))?;
    let (mut shared, hub, mut flags) = Shared::new(agent).with_monitor();
    let dns = crate::dns::server::DnsServer::new(
        shared.state_handle(),
        resolv,
        &crate::dns::server::DnsOptions {
            rate_limit: cfg.dns_rate_limit,
        },
    );
    dns.sync_listeners(&shared.state());
    shared.set_dns(dns);
    if let Some(c) = &cluster {
        c.seed(&shared.state());
        shared.set_cluster(c.clone());
    }
    let agent = Arc::new(shared);
    // What the start read and parsed (the object and the kernel's BTF, the pinned maps read
    // whole, the links dumped) is freed by now: given back before anyone is answered, so the
    // agent serves at the size it keeps.
    memory::give_back();
    memory::release_object(crate::datapath::EBPF_OBJECT);
    info!(socket = %cfg.socket.display(), "serving the API");
    host::notify(&format!(
        "READY=1\nSTATUS=serving on {}",
        cfg.socket.display()
    ));

    if let Some(path) = &plugin_socket {
        info!(socket = %path.display(), "serving Docker's network and IPAM plugin");
    }
    let background = [
        tokio::spawn({
            let cluster = cluster.clone();
            async move {
                if let Some(c) = cluster {
                    c.run().await;
                }
            }
        }),
        match cluster {
            Some(c) => tasks::supervise("cluster follower", {
                let agent = agent.clone();
                move || agent.clone().follow_cluster(c.clone())
            }),
            None => tokio::spawn(async {}),
        },
        tokio::spawn({
            let plugin = Arc::new(crate::docker::Plugin::new(agent.clone(), pools));
            async move {
                if let Some(l) = plugin_listener {
                    // What Docker changed while nobody answered it, before anyone is answered.
                    crate::docker::engine::reconcile_then_name(plugin.clone(), &docker_socket)
                        .await;
                    tokio::spawn(crate::docker::engine::keep_naming(
                        plugin.clone(),
                        docker_socket,
                    ));
                    crate::docker::serve(l, plugin, std::future::pending()).await;
                }
            }
        }),
        tasks::supervise_with("host watch", &agent, Shared::watch_host),
        tasks::supervise_with("memory", &agent, memory::keep_giving_back),
        tasks::supervise_with("flow expiry", &agent, Shared::expire_flows),
        tasks::supervise_with("drift repair", &agent, Shared::check_drift),
        // What monitors ask of the kernel follows who listens.
        tokio::spawn({
            let agent = agent.clone();
            async move {
                while flags.changed().await.is_ok() {
                    let f = *flags.borrow_and_update();
                    let agent = agent.clone();
                    let res =
                        tokio::task::spawn_blocking(move || agent.write(|a| a.dp.set_monitor(f)))
                            .await;
                    if let Ok(Err(e)) = res {
                        tracing::warn!("setting the monitor flags: {e}");
                    }
                }
            }
        }),
        tokio::spawn({
            let agent = agent.clone();
            async move {
                if let Some(l) = metrics_listener {
                    if let Ok(addr) = l.local_addr() {
                        info!(address = %addr, "serving metrics");
                    }
                    let registry = Arc::new(metrics::registry(agent.clone()));
                    server::serve_connections(
                        l,
                        move |req| metrics::handle(agent.clone(), registry.clone(), req),
                        std::future::pending(),
                    )
                    .await;
                }
            }
        }),
        tokio::spawn(async move {
            if let Some(log) = kernel_log {
                if let Err(e) = crate::datapath::kernel_log::read(log).await {
                    tracing::error!("reading the kernel programs' log stopped: {e}");
                }
            }
        }),
        tokio::spawn(async move {
            if let Some(ring) = events {
                if let Err(e) = monitor::read_events(ring, hub).await {
                    tracing::error!("reading the datapath's events stopped: {e:#}");
                }
            }
        }),
    ];
    server::serve(listener, agent.clone(), shutdown_signal()?).await;
    host::notify("STOPPING=1");
    info!("shutting down; the datapath keeps running (netpath uninstall removes it)");
    for task in background {
        task.abort();
    }
    // The sockets go with the agent; already gone is what was wanted.
    let _ = std::fs::remove_file(&cfg.socket);
    if let Some(path) = &plugin_socket {
        // Cleanup: already gone is as good as removed.
        let _ = std::fs::remove_file(path);
    }
    drop(agent);
    Ok(())
}

/// This node's VXLAN device, made if missing; overlay endpoints' MTU leaves room for the
/// encapsulation on `uplink` over `underlay`'s family.
fn overlay_device(uplink: &str, underlay: IpAddr) -> anyhow::Result<super::OverlayDevice> {
    let underlay_mtu = netlink::link_mtu(uplink)?.unwrap_or(1500);
    let overhead = match underlay {
        IpAddr::V4(_) => netpath_common::VXLAN_OVERHEAD,
        IpAddr::V6(_) => netpath_common::VXLAN6_OVERHEAD,
    };
    let mtu = underlay_mtu.saturating_sub(overhead);
    let ifindex = netlink::ensure_vxlan(VXLAN_LINK, netpath_common::VXLAN_PORT, mtu)
        .context("the VXLAN device of overlay networks")?;
    Ok(super::OverlayDevice {
        name: VXLAN_LINK.to_string(),
        ifindex,
        mtu,
        underlay,
    })
}

/// How this node joins others through etcd (none without `--etcd`): its name (default the
/// host name) and underlay address (the first uplink's IPv4 address, else its global IPv6
/// one), checked now.
fn cluster_config(
    cfg: &AgentConfig,
    uplinks: &[String],
) -> anyhow::Result<Option<crate::cluster::ClusterConfig>> {
    if cfg.etcd.is_empty() {
        return Ok(None);
    }
    let uplink = uplinks.first().context("no uplink")?;
    let underlay = match netlink::link_ipv4(uplink)? {
        Some((_, v4)) => IpAddr::V4(v4),
        None => IpAddr::V6(netlink::link_ipv6(uplink)?.map(|(_, v6)| v6).with_context(|| {
            format!("uplink {uplink}: no such interface, or no IPv4 or global IPv6 address on it (other nodes reach this one through it)")
        })?),
    };
    let node_name = match &cfg.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name (name the node with --node-name)")?
            .to_string_lossy()
            .into_owned(),
    };
    let c = crate::cluster::ClusterConfig {
        endpoints: cfg.etcd.clone(),
        node_name,
        prefix: cfg.etcd_prefix.clone(),
        underlay,
        tls: crate::cluster::TlsFiles {
            ca: cfg.etcd_ca.clone(),
            cert: cfg.etcd_cert.clone(),
            key: cfg.etcd_key.clone(),
        },
    };
    c.check().map_err(anyhow::Error::msg)?;
    Ok(Some(c))
}

/// Completes on SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    })
}

/// Fails when another agent answers on `path`.
fn refuse_if_served(path: &Path) -> anyhow::Result<()> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another agent is serving {}", path.display());
    }
    Ok(())
}

/// Binds the API socket: owned by root, mode 0600, or 0660 with group `group`.
fn bind_socket(
    path: &Path,
    group: Option<&str>,
    record: &mut HostRecord,
) -> anyhow::Result<UnixListener> {
    let gid = match group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .with_context(|| format!("looking up group {g}"))?
                .with_context(|| format!("no such group: {g}"))?
                .gid,
        ),
        None => None,
    };
    if let Some(dir) = path.parent() {
        record.create_dir(dir)?;
    }
    if path.exists() {
        refuse_if_served(path)?;
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    match gid {
        Some(gid) => {
            nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
                .with_context(|| format!("giving {} to its group", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?,
    }
    Ok(listener)
}
