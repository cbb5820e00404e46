//! The configuration file against the flags: parsing, merging, defaults, refusals.
use super::*;

fn p(text: &str) -> Result<Partial, ConfigError> {
    parse(Path::new("/etc/netpath/netpath.toml"), text)
}

#[test]
fn every_flag_has_a_key_and_the_command_line_wins() {
    let file = p(r#"
uplinks = ["eth0", "eth1"]
socket = "/run/np.sock"
socket-group = "netpath"
state-dir = "/srv/np"
bpffs = "/sys/fs/bpf/np"
xdp = "native"
max-flows = 1000
max-ports = 2000
cgroup = "/sys/fs/cgroup/np"
reset-flows = false
log-level = "debug"
log-format = "json"
metrics = "127.0.0.1:9142"
published_from = ["10.0.0.0/8", "192.168.1.7"]
"#)
    .unwrap();
    let cli = Partial {
        xdp: Some(XdpMode::Generic),
        max_flows: Some(7),
        ..Partial::default()
    };
    let c = cli.over(file).resolve();
    assert_eq!(c.uplinks, ["eth0", "eth1"]);
    assert_eq!(c.xdp, XdpMode::Generic, "the command line wins");
    assert_eq!(c.max_flows, 7);
    assert_eq!(c.max_ports, 2000);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.metrics, Some("127.0.0.1:9142".parse().unwrap()));
    assert_eq!(
        c.published_from,
        Some("10.0.0.0/8,192.168.1.7/32".parse().unwrap())
    );
    // What --print-config prints reads back as the same settings.
    let again = p(&c.to_toml()).unwrap().resolve();
    assert_eq!(again, c);
}

#[test]
fn defaults() {
    let c = Partial::default().resolve();
    assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
    assert_eq!(c.state_dir, Path::new(DEFAULT_STATE_DIR));
    assert_eq!(c.xdp, XdpMode::Off);
    assert!(!c.reset_flows);
}

#[test]
fn unknown_keys_and_bad_values_name_file_line_and_key() {
    let err = p("xdp = \"off\"\n\nuplnks = [\"eth0\"]\n").unwrap_err();
    match &err {
        ConfigError::Invalid {
            line, key, message, ..
        } => {
            assert_eq!((*line, key.as_str()), (3, "uplnks"));
            assert!(message.contains("unknown field"), "{message}");
        }
        e => panic!("{e}"),
    }
    assert!(err
        .to_string()
        .starts_with("/etc/netpath/netpath.toml:3: uplnks: "));
    let err = p("max-flows = 10\nxdp = \"fast\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/etc/netpath/netpath.toml:2: xdp: "),
        "{err}"
    );
    let err = p("max-flows = -1\n").unwrap_err().to_string();
    assert!(err.contains(":1: max-flows: "), "{err}");
    let err = p("metrics = \"nowhere\"\n").unwrap_err().to_string();
    assert!(err.contains(":1: metrics: "), "{err}");
    let err = p("published-from = [\"10.0.0.1/8\"]").unwrap_err();
    assert!(err
        .to_string()
        .contains(":1: published-from: invalid subnet"));
}
