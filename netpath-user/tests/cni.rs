//! The CNI plugin: run exactly as a runtime runs it (CNI_* environment, the network
//! configuration on stdin, the result on stdout), and under Debian's podman on its CNI
//! backend. Traffic is real: from the outside namespace through published ports, and
//! between containers.
mod common;

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use netpath_user::testing::{containerd::Containerd, podman::Podman};
use serde_json::{json, Value};

const CNI: &str = env!("CARGO_BIN_EXE_netpath-cni");

/// What the plugin printed and whether it succeeded.
fn cni(command: &str, id: &str, netns: &str, ifname: &str, conf: &Value) -> (bool, Value) {
    cni_args(command, id, netns, ifname, conf, "")
}

/// [`cni`] with `CNI_ARGS` (`K=V;K=V`), as Kubernetes' runtimes pass the pod's name.
fn cni_args(
    command: &str,
    id: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
    args: &str,
) -> (bool, Value) {
    let mut child = Command::new(CNI)
        .env_clear()
        .env("CNI_ARGS", args)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // As runtimes do (Go's os/exec), a plugin that exits without reading all of stdin is
    // not an error of the write.
    match child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("{e}"),
        _ => {}
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (out.status.success(), v)
}

fn conf(t: &Topo, network: &str, runtime: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": network,
        "type": "netpath-cni",
        "socket": t.socket(),
        "runtimeConfig": runtime,
    })
}

/// What the web server at `to` says is the address of a request from container `from`.
fn client_address_seen_by(p: &Podman, from: &str, to: &str) -> String {
    let get = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {to} 80");
    p.podman(&["exec", from, "sh", "-c", &get]).unwrap()
}

#[test]
fn the_plugin_does_what_a_runtime_asks() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.40.0.0/24", "front"]);
    t.ok(&["network", "create", "--subnet", "10.41.0.0/24", "back"]);
    let c = Netns::new("cnic");
    let id = "c0ffee0000000000000000000000000000000000000000000000000000000001";
    let front = conf(
        &t,
        "front",
        json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "ips": ["10.40.0.50/24"],
            "mac": "02:00:00:00:00:50",
        }),
    );

    let (ok, v) = cni("VERSION", "", "", "", &json!({}));
    assert!(ok, "{v}");
    assert!(v["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    let (ok, res) = cni("ADD", id, &c.path(), "eth0", &front);
    assert!(ok, "{res}");
    assert_eq!(res["cniVersion"], "1.0.0");
    assert_eq!(res["ips"][0]["address"], "10.40.0.50/24");
    assert_eq!(res["ips"][0]["gateway"], "10.40.0.1");
    assert_eq!(res["interfaces"][0]["name"], "eth0");
    assert_eq!(res["interfaces"][0]["mac"], "02:00:00:00:00:50");
    assert_eq!(res["interfaces"][0]["sandbox"], c.path());
    assert_eq!(res["routes"][0]["gw"], "10.40.0.1");
    assert_eq!(res["dns"]["nameservers"][0], "10.40.0.1");
    let inside = c.ip(&["-o", "addr", "show", "eth0"]);
    assert!(inside.contains("10.40.0.50/24"), "{inside}");

    // Published, with the client's address kept.
    tcp_server(&c, 80);
    let said = tcp_request(&t.outside, HOST, 8080, "hi").unwrap();
    assert!(said.starts_with(&format!("{OUTSIDE}:")), "{said}");

    // A second network: the same endpoint, another interface.
    let back = conf(&t, "back", json!({}));
    let (ok, res) = cni("ADD", id, &c.path(), "net1", &back);
    assert!(ok, "{res}");
    assert_eq!(res["interfaces"][0]["name"], "net1");
    assert!(c.ip(&["-o", "addr", "show", "net1"]).contains("10.41.0."));
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]).lines().count(), 1);

    // CHECK holds while nothing changed, and says when something did.
    let mut checked = front.clone();
    checked["prevResult"] = json!({"ips": [{"address": "10.40.0.50/24"}]});
    let (ok, v) = cni("CHECK", id, &c.path(), "eth0", &checked);
    assert!(ok, "{v}");
    checked["prevResult"] = json!({"ips": [{"address": "10.40.0.99/24"}]});
    let (ok, v) = cni("CHECK", id, &c.path(), "eth0", &checked);
    assert!(
        !ok && v["msg"].as_str().unwrap().contains("10.40.0.99"),
        "{v}"
    );
    let (ok, v) = cni("CHECK", "nobody", &c.path(), "eth0", &front);
    assert!(!ok && v["code"] == 3, "{v}");

    // DEL: one network, then the other; again is fine.
    let (ok, v) = cni("DEL", id, &c.path(), "net1", &back);
    assert!(ok, "{v}");
    assert!(c.ip(&["-o", "link"]).lines().all(|l| !l.contains("net1")));
    let (ok, v) = cni("DEL", id, &c.path(), "eth0", &front);
    assert!(ok, "{v}");
    let (ok, v) = cni("DEL", id, &c.path(), "eth0", &front);
    assert!(ok, "DEL twice: {v}");
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]), "");
    assert!(tcp_request(&t.outside, HOST, 8080, "hi").is_err());
}

#[test]
fn a_dual_stack_network_gives_both_families_in_the_result() {
    let t = Topo::new();
    t.ok(&common::words(
        "network create dual --ipv6 --subnet 10.42.0.0/24 --subnet fd00:42::/64",
    ));
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let ida = "d0a1000000000000000000000000000000000000000000000000000000000001";
    let idb = "d0b2000000000000000000000000000000000000000000000000000000000002";
    let static6 = conf(
        &t,
        "dual",
        json!({"ips": ["fd00:42::50/64", "10.42.0.50/24"]}),
    );
    let (ok, res) = cni("ADD", ida, &a.path(), "eth0", &static6);
    assert!(ok, "{res}");
    assert_eq!(res["ips"][0]["address"], "10.42.0.50/24");
    assert_eq!(res["ips"][1]["address"], "fd00:42::50/64");
    assert_eq!(res["ips"][1]["gateway"], "fd00:42::1");
    let routes = res["routes"].as_array().unwrap();
    assert!(
        routes.contains(&json!({"dst": "::/0", "gw": "fd00:42::1"})),
        "{res}"
    );
    assert!(a
        .ip(&["-o", "addr", "show", "eth0"])
        .contains("fd00:42::50/64"));
    // Allocated when not asked for; the two reach each other over IPv6.
    let (ok, res) = cni("ADD", idb, &b.path(), "eth0", &conf(&t, "dual", json!({})));
    assert!(ok, "{res}");
    let b6 = res["ips"][1]["address"].as_str().unwrap().to_string();
    assert!(b6.starts_with("fd00:42::") && b6.ends_with("/64"), "{res}");
    let b6: std::net::Ipv6Addr = b6.split('/').next().unwrap().parse().unwrap();
    assert!(common::ping(&a, b6), "a reaches b over IPv6");
    // Two addresses of one family: refused, nothing made.
    let two = conf(
        &t,
        "dual",
        json!({"ips": ["fd00:42::60/64", "fd00:42::61/64"]}),
    );
    let c = Netns::new("cnic");
    let (ok, v) = cni("ADD", "d0a13", &c.path(), "eth0", &two);
    assert!(
        !ok && v["msg"].as_str().unwrap().contains("at most one"),
        "{v}"
    );
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]).lines().count(), 2);
    for (id, ns) in [(ida, &a), (idb, &b)] {
        let (ok, v) = cni("DEL", id, &ns.path(), "eth0", &static6);
        assert!(ok, "{v}");
    }

    // A network of IPv6 alone: the result holds its IPv6 address and route alone, and CHECK
    // agrees with it.
    t.ok(&common::words(
        "network create six --ipv4=false --ipv6 --subnet fd00:43::/64",
    ));
    let d = Netns::new("cnid");
    let idd = "d0d4000000000000000000000000000000000000000000000000000000000004";
    let six = conf(&t, "six", json!({}));
    let (ok, res) = cni("ADD", idd, &d.path(), "eth0", &six);
    assert!(ok, "{res}");
    let ips = res["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{res}");
    assert_eq!(ips[0]["address"], "fd00:43::2/64");
    assert_eq!(ips[0]["gateway"], "fd00:43::1");
    assert_eq!(res["routes"], json!([{"dst": "::/0", "gw": "fd00:43::1"}]));
    assert!(d
        .ip(&["-4", "-o", "addr", "show", "eth0"])
        .trim()
        .is_empty());
    let mut checked = six.clone();
    checked["prevResult"] = res.clone();
    let (ok, v) = cni("CHECK", idd, &d.path(), "eth0", &checked);
    assert!(ok, "{v}");
    let (ok, v) = cni("DEL", idd, &d.path(), "eth0", &six);
    assert!(ok, "{v}");
}

#[test]
fn a_kubernetes_runtime_gives_the_pod_its_namespace_which_policies_select() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.43.0.0/24", "pods"]);
    let c = Netns::new("cnik");
    let id = "k8s0000000000000000000000000000000000000000000000000000000000001";
    let net = conf(
        &t,
        "pods",
        json!({"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]}),
    );
    // What containerd's CRI plugin passes for a pod.
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID={id}"
    );
    let (ok, res) = cni_args("ADD", id, &c.path(), "eth0", &net, &args);
    assert!(ok, "{res}");
    assert_eq!(
        t.ok(&["endpoint", "inspect", "web-0", "--format", "{{.Namespace}}"])
            .trim(),
        "shop"
    );
    tcp_server(&c, 80);
    assert!(tcp_request(&t.outside, HOST, 8081, "hi").is_ok());
    // A policy of its namespace selects it: ingress denied, from outside too.
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n",
    );
    assert!(tcp_request(&t.outside, HOST, 8081, "hi").is_err());
    let (ok, v) = cni_args("DEL", id, &c.path(), "eth0", &net, &args);
    assert!(ok, "{v}");
}

#[test]
fn refusals_are_cni_errors_and_change_nothing() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.42.0.0/24", "net"]);
    let c = Netns::new("cnir");
    let id = "bad0000000000000000000000000000000000000000000000000000000000001";
    // A version it does not speak.
    let mut old = conf(&t, "net", json!({}));
    old["cniVersion"] = "0.2.0".into();
    let (ok, v) = cni("ADD", id, &c.path(), "eth0", &old);
    assert!(!ok && v["code"] == 1, "{v}");
    // A busy host port: the agent's one line, as the message.
    tcp_server(&t.host, 2222);
    let busy = conf(
        &t,
        "net",
        json!({"portMappings": [{"hostPort": 2222, "containerPort": 80, "protocol": "tcp"}]}),
    );
    let (ok, v) = cni("ADD", id, &c.path(), "eth0", &busy);
    assert!(!ok && v["code"] == 100, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("2222"), "{v}");
    // No such network.
    let (ok, v) = cni(
        "ADD",
        id,
        &c.path(),
        "eth0",
        &conf(&t, "nowhere", json!({})),
    );
    assert!(!ok && v["msg"].as_str().unwrap().contains("nowhere"), "{v}");
    // Garbage on stdin.
    let (ok, v) = cni("ADD", id, &c.path(), "eth0", &json!("not a config"));
    assert!(!ok && v["code"] == 6, "{v}");
    // No agent: try again later.
    let mut gone = conf(&t, "net", json!({}));
    gone["socket"] = "/nonexistent/netpath.sock".into();
    let (ok, v) = cni("ADD", id, &c.path(), "eth0", &gone);
    assert!(!ok && v["code"] == 11, "{v}");
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]), "");
    assert!(c.ip(&["-o", "link"]).lines().all(|l| !l.contains("eth0")));
}

#[test]
fn gc_removes_what_the_runtime_forgot() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.43.0.0/24", "net"]);
    let (a, b) = (Netns::new("cnia"), Netns::new("cnib"));
    let net = conf(&t, "net", json!({}));
    assert!(cni("ADD", "keep", &a.path(), "eth0", &net).0);
    assert!(cni("ADD", "lose", &b.path(), "eth0", &net).0);
    let mut gc = net.clone();
    gc["cniVersion"] = "1.1.0".into();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let (ok, v) = cni("GC", "", "", "", &gc);
    assert!(ok, "{v}");
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]).lines().count(), 1);
    let (ok, v) = cni("STATUS", "", "", "", &gc);
    assert!(ok, "{v}");
}

#[test]
fn podman_runs_containers_on_a_netpath_network() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.44.0.0/24", "pods"]);
    let plugins = std::env::temp_dir().join(format!("netpath-cni-bin-{}", unique()));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(CNI, plugins.join("netpath-cni")).unwrap();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [{
            "type": "netpath-cni",
            "socket": t.socket(),
            "capabilities": {"portMappings": true, "ips": true, "mac": true},
        }],
    })
    .to_string();
    let p = Podman::new(
        &t.host,
        &[plugins.as_path(), std::path::Path::new("/usr/lib/cni")],
        &[("pods", conflist)],
    )
    .expect("podman");
    let rootfs = p.rootfs().unwrap().display().to_string();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "-d",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--name",
            name,
            "--network",
            "pods",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--rootfs",
            &rootfs,
            "/bin/httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]);
        p.podman(&args).unwrap_or_else(|e| panic!("{e:#}"))
    };
    run("web", &["-p", "8080:80"]);
    run("peer", &["--ip", "10.44.0.77"]);
    // Its address, as podman was told by the plugin.
    let ip = p
        .podman(&[
            "inspect",
            "peer",
            "--format",
            "{{.NetworkSettings.Networks.pods.IPAddress}}",
        ])
        .unwrap();
    assert_eq!(ip, "10.44.0.77");
    wait_until("the pod's server", Duration::from_secs(15), || {
        tcp_request(&t.outside, HOST, 8080, "GET /cgi-bin/ip HTTP/1.0\r\n\r\n").is_ok()
    });
    let said = tcp_request(&t.outside, HOST, 8080, "GET /cgi-bin/ip HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        said.contains(&OUTSIDE.to_string()),
        "the client's address: {said}"
    );
    // Container to container.
    let said = client_address_seen_by(&p, "peer", "10.44.0.2");
    assert!(said.contains("10.44.0.77"), "{said}");
    // Endpoints are named after the containers; the result's DNS is netpath's, on the
    // gateway, and podman hands it to the container.
    assert_eq!(
        t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]),
        "peer\nweb\n"
    );
    let resolv = p
        .podman(&["exec", "peer", "cat", "/etc/resolv.conf"])
        .unwrap();
    assert!(resolv.starts_with("nameserver 10.44.0.1\n"), "{resolv}");
    let said = client_address_seen_by(&p, "peer", "web");
    assert!(said.contains("10.44.0.77"), "by name: {said}");
    // podman rm takes it all away.
    p.podman(&["rm", "-f", "-t", "0", "web", "peer"]).unwrap();
    assert_eq!(t.ok(&["endpoint", "ls", "-q"]), "");
    assert!(tcp_request(&t.outside, HOST, 8080, "x").is_err());
    // Cleanup: already gone is as good as removed.
    let _ = std::fs::remove_dir_all(&plugins);
}

#[test]
fn containerd_runs_containers_on_a_netpath_network_with_ctr_cni() {
    let t = Topo::new();
    t.ok(&["network", "create", "--subnet", "10.45.0.0/24", "pods"]);
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [{"type": "netpath-cni", "socket": t.socket()}],
    })
    .to_string();
    let c = Containerd::start(
        &t.host,
        &[("netpath-cni", std::path::Path::new(CNI))],
        &[("10-pods", conflist)],
    )
    .expect("containerd");
    c.run("web", &["/bin/httpd", "-f", "-p", "80", "-h", "/www"])
        .expect("ctr run --cni");
    // The endpoint containerd's CNI call made, on the network, serving.
    let ip = t.ok(&["endpoint", "ls", "--format", "{{.IPAddress}}"]);
    let ip: Ipv4Addr = ip.trim().parse().expect("one endpoint, with an address");
    assert!(ip.octets()[..3] == [10, 45, 0], "{ip}");
    let client = t.endpoint("client", &["--network", "pods"]);
    assert!(common::tcp_reachable(
        &client,
        ip,
        80,
        Duration::from_secs(3)
    ));
    // Policy selects it like any endpoint (namespace default, every endpoint of it).
    t.apply_policies(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n",
    );
    assert!(!common::tcp_reachable(
        &client,
        ip,
        80,
        Duration::from_millis(500)
    ));
    // Removed by containerd, the endpoint goes too. ctr (1.6, Debian's) runs no CNI DEL for a
    // container it ran detached: the agent removes an endpoint whose namespace is gone, once
    // the kernel has freed it (asynchronously, after the last process left it).
    c.remove("web").expect("ctr task kill, rm");
    wait_until(
        "only the client's endpoint to be left",
        Duration::from_secs(10),
        || t.ok(&["endpoint", "ls", "-q"]).lines().count() == 1,
    );
    assert_eq!(
        t.ok(&["endpoint", "ls", "--format", "{{.Name}}"]).trim(),
        "client"
    );
}
